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
report never reads the records: a Lua script sums the counter hashes of the days asked into the
report's groups inside Redis (``_SUM``) and returns only those rows, so neither the records nor
the per-day fields cross the network (the first version sent every field of every day to
Python: 12× a SQL ``count(*)`` of a million records, against 0.35× now; notes/usage.md). Age:
``prune`` drops whole days before the cutoff's day, found in ``days``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

import redis as redis_client

from mitmrelay.core.ledger import COUNTERS, SUMS, UsageRecord, batch_counters, record_row
from mitmrelay.core.ledger_report import Group, ordered

from .ledger import where

PREFIX = "mitmrelay:usage:"
DAYS = PREFIX + "days"

# KEYS: the counter hashes of the days asked. ARGV[1]: the report's key columns (JSON list of
# day / provider / client_model / upstream_model); ARGV[2]: the day of each key (JSON list).
# Returns one string per group: its key (JSON list of the columns' values), a newline, and its
# counters as a JSON object (cjson keeps 14 significant digits: exact for token counts, far
# below a cent for costs). One string per group, not per counter: the Python client parses
# every returned value, so the answer is kept as short as the report. Group names are decoded
# once per day and field prefix. A field holds exactly one newline (JSON escapes any inside a
# name), found by a plain search: a pattern anchored at the end would rescan the field from
# every position.
_SUM = r"""
local want, days = cjson.decode(ARGV[1]), cjson.decode(ARGV[2])
local position = {provider = 1, client_model = 2, upstream_model = 3}
local sums, order = {}, {}
for i, hash in ipairs(KEYS) do
  local flat, keys = redis.call('HGETALL', hash), {}
  for j = 1, #flat, 2 do
    local field = flat[j]
    local cut = string.find(field, '\n', 1, true)
    local group = string.sub(field, 1, cut - 1)
    local key = keys[group]
    if key == nil then
      local names, parts = cjson.decode(group), {}
      for n, column in ipairs(want) do
        parts[n] = column == 'day' and days[i] or names[position[column]]
      end
      key = cjson.encode(parts)
      keys[group] = key
    end
    local counts = sums[key]
    if counts == nil then
      counts = {}
      sums[key] = counts
      order[#order + 1] = key
    end
    local counter = string.sub(field, cut + 1)
    counts[counter] = (counts[counter] or 0) + tonumber(flat[j + 1])
  end
end
local out = {}
for n, key in ipairs(order) do
  out[n] = key .. '\n' .. cjson.encode(sums[key])
end
return out
"""
_KEY_COLUMNS = frozenset({"day", "provider", "client_model", "upstream_model"})


def _key(kind: str, day: str) -> str:
    return f"{PREFIX}{kind}:{day}"


def _days(since: dt.date, until: dt.date) -> list[str]:
    return [(since + dt.timedelta(days=n)).isoformat() for n in range((until - since).days + 1)]


class RedisLedger:
    def __init__(self, url: str) -> None:
        try:
            self._redis = redis_client.Redis.from_url(url, socket_timeout=5)
        except ValueError as e:  # the URL may hold a password: name the server only
            raise ValueError(f"cannot use Redis at {where(url, Path())}: {e}") from None
        self._sum = self._redis.register_script(_SUM)

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
        if not set(columns) <= _KEY_COLUMNS or not columns:
            raise ValueError(f"report columns must be among {sorted(_KEY_COLUMNS)}")
        days = _days(since, until)
        groups = []
        for row in self._sum(
            keys=[_key("daily", day) for day in days],
            args=[json.dumps(list(columns)), json.dumps(days)],
        ):
            key, _, figures = row.decode().partition("\n")
            counts = dict.fromkeys(COUNTERS, 0)
            for name, value in json.loads(figures).items():
                counts[name] = value if name in SUMS else int(value)
            groups.append(Group(tuple(json.loads(key)), counts))
        return ordered(groups, columns)

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
