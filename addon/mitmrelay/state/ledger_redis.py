"""The usage ledger in Redis (``relay_state=redis://…``), beside the conversation store.

Layout, all under ``mitmrelay:usage:`` (the conversation store's keys are ``mitmrelay:e:…``
and a few fixed names: state/redis.py):

- ``records:<day>``: a list of the day's records, JSON (core/ledger.py ``record_row``);
- ``daily:<day>``: a hash of the day's counters, field ``<group>\\n<counter>`` where
  ``<group>`` is the JSON array [provider, client model, upstream model] (JSON escapes
  every newline inside a name, so the last newline splits the field);
- ``failures:<day>``: a hash of upstream attempt failures, field the JSON array
  [provider, upstream model, cause];
- ``days``: a sorted set of the days written (score: the day's ordinal), for pruning.

A batch is one ``MULTI``/``EXEC`` (records, ``HINCRBY``/``HINCRBYFLOAT`` per group counter),
so the counters agree with the records across any number of relays writing at once. The
report reads one counter hash per day asked (``HGETALL``), never the records: its cost follows
days × groups. Age: ``prune`` drops whole days before the cutoff's day, found in ``days``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

import redis as redis_client

from mitmrelay.core.ledger import COUNTERS, SUMS, UsageRecord, batch_counters, record_row
from mitmrelay.core.ledger_report import Group, aggregate

PREFIX = "mitmrelay:usage:"
DAYS = PREFIX + "days"


def _key(kind: str, day: str) -> str:
    return f"{PREFIX}{kind}:{day}"


def _days(since: dt.date, until: dt.date) -> list[str]:
    return [(since + dt.timedelta(days=n)).isoformat() for n in range((until - since).days + 1)]


class RedisLedger:
    def __init__(self, url: str) -> None:
        try:
            self._redis = redis_client.Redis.from_url(url, socket_timeout=5)
        except ValueError as e:
            raise ValueError(f"cannot use Redis at {url}: {e}") from e

    def write(self, records: Sequence[UsageRecord]) -> None:
        groups, failures = batch_counters(records)
        pipe = self._redis.pipeline(transaction=True)
        days: set[str] = set()
        for record in records:
            days.add(record.day)
            pipe.rpush(_key("records", record.day), json.dumps(record_row(record)))
        for (day, provider, client_model, upstream_model), added in groups.items():
            group = json.dumps([provider, client_model, upstream_model])
            for name in COUNTERS:
                if not added[name]:
                    continue  # HGETALL returns only what was ever added; absent means 0
                field = f"{group}\n{name}"
                if name in SUMS:
                    pipe.hincrbyfloat(_key("daily", day), field, added[name])
                else:
                    pipe.hincrby(_key("daily", day), field, int(added[name]))
        for (day, provider, upstream_model, cause), count in failures.items():
            pipe.hincrby(
                _key("failures", day), json.dumps([provider, upstream_model, cause]), count
            )
        pipe.zadd(DAYS, {day: dt.date.fromisoformat(day).toordinal() for day in days})
        pipe.execute()

    def prune(self, before: float) -> int:
        cutoff = dt.datetime.fromtimestamp(before, dt.UTC).date().toordinal()
        old = [d.decode() for d in self._redis.zrangebyscore(DAYS, "-inf", f"({cutoff}")]
        if not old:
            return 0
        pipe = self._redis.pipeline(transaction=True)
        for day in old:
            pipe.llen(_key("records", day))
        counts = pipe.execute()
        pipe = self._redis.pipeline(transaction=True)
        for day in old:
            pipe.delete(_key("records", day), _key("daily", day), _key("failures", day))
        pipe.zrem(DAYS, *old)
        pipe.execute()
        return sum(counts)

    def _hashes(self, kind: str, since: dt.date, until: dt.date) -> list[dict[bytes, bytes]]:
        pipe = self._redis.pipeline(transaction=False)
        for day in _days(since, until):
            pipe.hgetall(_key(kind, day))
        return pipe.execute()

    def groups(self, since: dt.date, until: dt.date, columns: Sequence[str]) -> list[Group]:
        rows = []
        for day, counts in zip(
            _days(since, until), self._hashes("daily", since, until), strict=True
        ):
            per_group: dict[str, dict[str, float]] = {}
            for field, value in counts.items():
                group, _, name = field.decode().rpartition("\n")
                per_group.setdefault(group, dict.fromkeys(COUNTERS, 0))[name] = (
                    float(value) if name in SUMS else int(value)
                )
            for group, figures in per_group.items():
                provider, client_model, upstream_model = json.loads(group)
                key = {
                    "day": day,
                    "provider": provider,
                    "client_model": client_model,
                    "upstream_model": upstream_model,
                }
                rows.append((key, figures))
        return aggregate(rows, columns)

    def failures(self, since: dt.date, until: dt.date) -> list[tuple[str, str, str, int]]:
        return [
            (*json.loads(field), int(count))
            for counts in self._hashes("failures", since, until)
            for field, count in counts.items()
        ]

    def records(self, since: float, until: float) -> list[dict[str, object]]:
        """The records of ``since`` <= at < ``until`` (unix s), oldest first (tests, audits)."""
        first = dt.datetime.fromtimestamp(since, dt.UTC).date()
        last = dt.datetime.fromtimestamp(until, dt.UTC).date()
        pipe = self._redis.pipeline(transaction=False)
        for day in _days(first, last):
            pipe.lrange(_key("records", day), 0, -1)
        rows = [json.loads(raw) for day in pipe.execute() for raw in day]
        return sorted((r for r in rows if since <= r["at"] < until), key=lambda r: r["at"])

    def close(self) -> None:
        self._redis.close()
