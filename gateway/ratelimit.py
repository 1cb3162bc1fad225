"""Token buckets (and the nonce memory) in Redis: one atomic Lua round trip per request.

A bucket holds up to `capacity` tokens and refills at `rate` tokens per second; each
request takes one. State is a Redis hash (tokens, timestamp) that expires when full again.
Redis time is used, not the gateway's, so replicas agree. Errors propagate: the caller
fails closed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

# KEYS[1] is a nonce to remember for ARGV[1] seconds (ARGV[1] = 0: none, and KEYS[1] is
# only a key of the same Redis Cluster slot, untouched), then KEYS[2..] are buckets with
# (capacity, rate) pairs in ARGV[2..]. Nothing is taken for a replayed nonce; buckets are
# taken in order and the first empty one ends the check (the later ones keep their
# tokens). Returns {fresh, n, allowed_1, tokens_1, ..., allowed_n, tokens_n}.
CHECK_SCRIPT = """
local fresh = 1
if tonumber(ARGV[1]) > 0 then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then
    return {0, 0}
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {fresh, 0}
for i = 2, #KEYS do
  local capacity = tonumber(ARGV[2 * i - 2])
  local rate = tonumber(ARGV[2 * i - 1])
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tokens = tonumber(state[1]) or capacity
  local ts = tonumber(state[2]) or now
  tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
  local allowed = 0
  if tokens >= 1 then
    tokens = tokens - 1
    allowed = 1
  end
  redis.call('HSET', KEYS[i], 'tokens', tokens, 'ts', now)
  redis.call('PEXPIRE', KEYS[i], math.ceil((capacity - tokens) / rate * 1000) + 1000)
  out[2] = i - 1
  out[#out + 1] = allowed
  out[#out + 1] = tostring(tokens)
  if allowed == 0 then
    break
  end
end
return out
"""


def nonce_key(prefix: str, account: str, nonce: str) -> str:
    """Where a signed request's nonce is remembered: `{account}` is the hash tag its
    buckets carry too, so one check's keys are one slot on Redis Cluster."""
    return f"{prefix}nonce:{{{account}}}:{nonce}"


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


@dataclass(frozen=True)
class Check:
    """What one round trip decided: was the nonce new, and each bucket taken in order
    (the last one is the refusal, if any)."""

    fresh: bool
    decisions: tuple[Decision, ...]


class RateLimiter:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(CHECK_SCRIPT)

    def _key(self, bucket: Bucket, subject: str) -> str:
        # The limits are part of the key: replicas configured alike share a bucket, and a
        # changed limit starts from a full bucket instead of another limit's state.
        # `{subject}` is a hash tag: an account's buckets and nonces (`nonce:{account}:…`,
        # gateway.security) are one slot on Redis Cluster, as its multi-key script needs.
        return f"{self._prefix}bucket:{bucket.name}:{bucket.capacity}:{bucket.rate:g}:{{{subject}}}"

    def keys(self, buckets: Sequence[tuple[Bucket, str]], nonce_key: str = "") -> list[str]:
        """The script's keys: the nonce's (or, without one, the first bucket's again, so
        every key is in the slot of the subject's hash tag), then each bucket's."""
        bucket_keys = [self._key(b, subject) for b, subject in buckets]
        return [nonce_key or (bucket_keys[0] if bucket_keys else ""), *bucket_keys]

    async def check(
        self,
        buckets: Sequence[tuple[Bucket, str]],
        *,
        nonce_key: str = "",
        nonce_ttl_s: int = 1,
    ) -> Check:
        """Remember the nonce (if any) and take one token from each (bucket, subject), in
        one atomic round trip."""
        keys = self.keys(buckets, nonce_key)
        args: list[float] = [max(1, nonce_ttl_s) if nonce_key else 0]
        for bucket, _ in buckets:
            args += [bucket.capacity, bucket.rate]
        reply = await self._script(keys=keys, args=args)
        fresh, taken = bool(reply[0]), int(reply[1])
        decisions = []
        for (bucket, _), allowed, tokens_text in zip(
            buckets[:taken], reply[2::2], reply[3::2], strict=True
        ):
            tokens = float(tokens_text)
            retry = 0 if allowed else max(1, math.ceil(max(0.0, 1 - tokens) / bucket.rate))
            decisions.append(Decision(bucket, bool(allowed), int(tokens), retry))
        return Check(fresh, tuple(decisions))

    async def take(self, bucket: Bucket, subject: str) -> Decision:
        (decision,) = (await self.check([(bucket, subject)])).decisions
        return decision
