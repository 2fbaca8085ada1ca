"""Redis: one store shared by several relay instances behind a load balancer.

Layout under the prefix ``mitmrelay:``: ``e:<key>`` holds the value (expiring with the age
bound), the sorted set ``lru`` ranks keys by last use, the hash ``size`` and the counter
``bytes`` track sizes. Writes and misses run as Lua scripts, so the bounds hold atomically
however many relays write at once; Redis's own ``maxmemory`` policy is not relied on (it is a
server-wide setting the relay may not own).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis as redis_client

from mitmrelay.core.body import LARGE_BODY, JsonBody, json_body
from mitmrelay.core.bounds import Limits

from . import display_url

PREFIX = "mitmrelay:"

# Forgets one key everywhere it is indexed; shared by both scripts.
_DROP = (
    """
local p = '"""
    + PREFIX
    + """'
local function drop(k)
  local size = redis.call('HGET', p .. 'size', k)
  if size then redis.call('DECRBY', p .. 'bytes', size) end
  redis.call('HDEL', p .. 'size', k)
  redis.call('HDEL', p .. 'stored', k)
  redis.call('ZREM', p .. 'lru', k)
  redis.call('DEL', p .. 'e:' .. k)
end
"""
)

# ARGV: key, value, size, now_ms, ttl_ms, max_entries, max_bytes, staged. With ``staged`` (a
# key the value was appended to a chunk at a time) the value is that key's, renamed into place.
_PUT = (
    _DROP
    + """
local key, size, now, ttl = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
drop(key)
if ARGV[8] ~= '' then
  redis.call('RENAME', ARGV[8], p .. 'e:' .. key)
  redis.call('PEXPIRE', p .. 'e:' .. key, ttl)
else
  redis.call('SET', p .. 'e:' .. key, ARGV[2], 'PX', ttl)
end
redis.call('HSET', p .. 'size', key, size)
redis.call('HSET', p .. 'stored', key, now)
redis.call('INCRBY', p .. 'bytes', size)
redis.call('ZADD', p .. 'lru', now, key)
local evicted = 0
for _, k in ipairs(redis.call('ZRANGEBYSCORE', p .. 'lru', '-inf', now - ttl)) do
  drop(k)
  evicted = evicted + 1
end
while redis.call('ZCARD', p .. 'lru') > tonumber(ARGV[6])
      or tonumber(redis.call('GET', p .. 'bytes') or '0') > tonumber(ARGV[7]) do
  local oldest = redis.call('ZRANGE', p .. 'lru', 0, 0)[1]
  if not oldest then break end
  drop(oldest)
  evicted = evicted + 1
end
if evicted > 0 then redis.call('INCRBY', p .. 'evictions', evicted) end
return evicted
"""
)

# ARGV: key, now_ms, ttl_ms. Returns the value and marks it used, or forgets an expired key.
# Age is checked against the caller's clock (the key's own PX expiry is the backstop).
_GET = (
    _DROP
    + """
local key, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local value = redis.call('GET', p .. 'e:' .. key)
local stored = tonumber(redis.call('HGET', p .. 'stored', key) or '0')
if value and now - stored <= ttl then
  redis.call('ZADD', p .. 'lru', 'XX', now, key)
  return value
end
drop(key)
return false
"""
)


class RedisStore:
    def __init__(self, url: str, limits: Limits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self._clock = clock
        try:
            # Timeouts bound how long a hung server holds a worker thread of the off-loop
            # wrapper (state/offloop.py), whose own deadline is what callers wait.
            self._redis = redis_client.Redis.from_url(
                url, socket_timeout=5, socket_connect_timeout=5
            )
            self._redis.ping()
        except (redis_client.RedisError, ValueError) as e:
            # One line, credentials out: open_store's caller shows it as it is.
            raise ValueError(f"cannot use Redis at {display_url(url)}: {e}") from None
        self._put = self._redis.register_script(_PUT)
        self._get = self._redis.register_script(_GET)

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self._get(args=[key, int(self._clock() * 1000), int(self.limits.ttl_s * 1000)])
        return json.loads(raw) if raw else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        # A record holding a long string (an image) is appended to a staging key a chunk at
        # a time and renamed into place: never a second copy of the string (core/body.py).
        raw = json_body(value, LARGE_BODY)
        if len(raw) > self.limits.max_bytes:
            return
        ttl_ms = int(self.limits.ttl_s * 1000)
        staged = ""
        if isinstance(raw, JsonBody):
            staged = f"{PREFIX}staged:{key}"
            self._redis.delete(staged)
            for chunk in raw.chunks():
                self._redis.append(staged, chunk)
            self._redis.pexpire(staged, ttl_ms)  # a write cut short leaves nothing for good
        self._put(
            args=[
                key,
                b"" if staged else raw,
                len(raw),
                int(self._clock() * 1000),
                ttl_ms,
                self.limits.max_entries,
                self.limits.max_bytes,
                staged,
            ]
        )

    def stats(self) -> dict[str, int]:
        entries, total, evictions = (
            self._redis.pipeline()
            .zcard(PREFIX + "lru")
            .get(PREFIX + "bytes")
            .get(PREFIX + "evictions")
            .execute()
        )
        return {"entries": int(entries), "bytes": int(total or 0), "evictions": int(evictions or 0)}

    def close(self) -> None:
        self._redis.close()
