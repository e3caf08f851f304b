"""Token buckets in Redis, shared by every API process: one atomic Lua script per hit.

The script reads the bucket, refills it by the time elapsed on Redis's own clock (so API
machines with skewed clocks agree), takes a token and writes it back, all in one step.
A bucket expires once it would be full again, so idle keys cost nothing.

If Redis cannot be reached the request is let through (and logged): rate limiting
protects the service, and taking the whole API down with Redis would defeat it.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from imgpipe.domain.ratelimit import Decision, Rate, decision

log = logging.getLogger(__name__)

_SCRIPT = """
local capacity = tonumber(ARGV[1])
local period_ms = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local stamp = tonumber(state[2])
if tokens == nil or stamp == nil then
  tokens = capacity
  stamp = now
end
local per_ms = capacity / period_ms
local elapsed = math.max(now - stamp, 0)
tokens = math.min(capacity, tokens + elapsed * per_ms)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / per_ms) + 1000)
return {allowed, tostring(tokens)}
"""


class RedisLimiter:
    def __init__(self, url: str, prefix: str) -> None:
        self._client: Any = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._script = self._client.register_script(_SCRIPT)
        self._prefix = prefix

    def hit(self, bucket: str, rate: Rate) -> Decision:
        key = f"{self._prefix}:ratelimit:{bucket}:{rate.tokens}/{rate.period_s:g}"
        try:
            allowed, tokens = self._script(
                keys=[key], args=[rate.tokens, int(rate.period_s * 1000)]
            )
        except redis.RedisError:
            log.warning("rate limiter: Redis unreachable, letting the request through")
            return decision(True, float(rate.tokens), rate)
        return decision(bool(allowed), float(tokens), rate)
