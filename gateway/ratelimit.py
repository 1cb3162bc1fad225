"""Token buckets in Redis: one atomic Lua round trip per check.

A bucket holds up to `capacity` tokens and refills at `rate` tokens per second; each
request takes one. State is a Redis hash (tokens, timestamp) that expires when full again.
Redis time is used, not the gateway's, so replicas agree. Errors propagate: the caller
fails closed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from redis.asyncio import Redis

BUCKET_SCRIPT = """
local key = KEYS[1]
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', key, 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', key, math.ceil((capacity - tokens) / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
"""


@dataclass(frozen=True)
class Bucket:
    name: str
    capacity: int
    rate: float

    @property
    def window_s(self) -> int:
        """Seconds to refill from empty (the IETF RateLimit-Policy window)."""
        return max(1, math.ceil(self.capacity / self.rate))


@dataclass(frozen=True)
class Decision:
    bucket: Bucket
    allowed: bool
    remaining: int
    retry_after_s: int

    def headers(self) -> dict[str, str]:
        """IETF RateLimit / RateLimit-Policy headers (and Retry-After when refused)."""
        b = self.bucket
        headers = {
            "RateLimit-Policy": f'"{b.name}";q={b.capacity};w={b.window_s}',
            "RateLimit": f'"{b.name}";r={self.remaining};t={self.retry_after_s}',
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


class RateLimiter:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(BUCKET_SCRIPT)

    async def take(self, bucket: Bucket, subject: str) -> Decision:
        # The limits are part of the key: replicas configured alike share a bucket, and a
        # changed limit starts from a full bucket instead of another limit's state.
        key = f"{self._prefix}bucket:{bucket.name}:{bucket.capacity}:{bucket.rate:g}:{subject}"
        allowed, tokens_text = await self._script(keys=[key], args=[bucket.capacity, bucket.rate])
        tokens = float(tokens_text)
        missing = max(0.0, 1 - tokens)
        retry = 0 if allowed else max(1, math.ceil(missing / bucket.rate))
        return Decision(bucket, bool(allowed), int(tokens), retry)
