"""The gateway's one Redis round trip per signed request: nonce memory and token buckets
(real Redis, a key prefix of this test's own)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest_asyncio
from redis.asyncio import Redis
from redis.crc import key_slot

from gateway.ratelimit import Bucket, RateLimiter, nonce_key
from mesh.redis import create_redis
from mesh.settings import Settings


@pytest_asyncio.fixture
async def limiter(settings: Settings) -> AsyncIterator[tuple[RateLimiter, Redis, str]]:
    redis = create_redis(settings)
    prefix = f"{settings.redis_prefix}rl-{secrets.token_hex(3)}:"
    try:
        yield RateLimiter(redis, prefix), redis, prefix
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


GENERAL = Bucket("general", 3, 0.001)
PATIENT = Bucket("patient-data", 1, 0.001)


async def test_a_replayed_nonce_takes_no_token(
    limiter: tuple[RateLimiter, Redis, str],
) -> None:
    rl, redis, prefix = limiter
    nonce = f"{prefix}nonce:acc:n1"
    first = await rl.check([(GENERAL, "acc")], nonce_key=nonce, nonce_ttl_s=36)
    assert first.fresh and [d.remaining for d in first.decisions] == [2]
    assert 30 < await redis.ttl(nonce) <= 36
    again = await rl.check([(GENERAL, "acc")], nonce_key=nonce, nonce_ttl_s=36)
    assert not again.fresh and again.decisions == ()
    after = await rl.check([(GENERAL, "acc")], nonce_key=f"{prefix}nonce:acc:n2")
    assert [d.remaining for d in after.decisions] == [1]  # the replay cost nothing


async def test_buckets_in_order_and_the_first_empty_one_ends_the_check(
    limiter: tuple[RateLimiter, Redis, str],
) -> None:
    rl, _, _ = limiter
    both = [(GENERAL, "acc"), (PATIENT, "acc")]
    ok = await rl.check(both)
    assert [d.allowed for d in ok.decisions] == [True, True]
    refused = await rl.check(both)  # patient-data bucket is empty now
    assert [d.allowed for d in refused.decisions] == [True, False]
    assert refused.decisions[-1].retry_after_s >= 1
    assert refused.decisions[-1].headers()["Retry-After"] == str(
        refused.decisions[-1].retry_after_s
    )
    await rl.check([(GENERAL, "acc")])  # takes the last general token
    empty = await rl.check(both)
    assert [d.allowed for d in empty.decisions] == [False]  # patient bucket not even asked
    other = await rl.check(both, nonce_key="")
    assert [d.allowed for d in other.decisions] == [False]
    assert [d.allowed for d in (await rl.check([(GENERAL, "other")])).decisions] == [True]


def test_one_accounts_keys_share_a_redis_cluster_slot() -> None:
    """The script is multi-key: on Redis Cluster its keys must hash to one slot, which the
    `{account}` hash tag in the nonce and every bucket key gives (without a nonce too)."""
    rl = RateLimiter(Redis(), "medihaven:")  # never connects: only the key names
    account = "6f1c2a9e-0b7d-4c55-9a51-3f2e8d7c1b00"
    nonce = nonce_key("medihaven:", account, "n-1")
    both = [(GENERAL, account), (PATIENT, account)]
    for keys in (rl.keys(both, nonce), rl.keys(both), rl.keys([(GENERAL, account)])):
        assert len({key_slot(key.encode()) for key in keys}) == 1, keys
    other = rl.keys([(GENERAL, "another-account")])
    assert key_slot(other[0].encode()) != key_slot(rl.keys(both)[0].encode())
