"""The keyvault's ledger of signed requests already served (real Redis): each proof once,
concurrent claims batched but answered one by one, and closed when Redis is gone."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from mesh.errors import Unavailable
from mesh.redis import MAX_CONNECTIONS, RedisLedger, create_redis
from mesh.settings import Settings


async def test_a_key_is_claimed_once(settings: Settings) -> None:
    redis = create_redis(settings)
    try:
        ledger = RedisLedger(redis, f"{settings.redis_prefix}ledger-test:", ttl_s=5)
        key = str(uuid.uuid4())
        assert await ledger.claim(key) is True
        assert await ledger.claim(key) is False
        # another replica's ledger on the same Redis sees the same claim
        other = RedisLedger(redis, f"{settings.redis_prefix}ledger-test:", ttl_s=5)
        assert await other.claim(key) is False
    finally:
        await redis.aclose()


async def test_more_commands_in_flight_than_connections_wait_their_turn(
    settings: Settings,
) -> None:
    """Four times the pool's connections of commands at once: each waits for a connection
    and is answered (redis-py's default pool raised "Too many connections" past 100)."""
    redis = create_redis(settings)
    try:
        prefix = f"{settings.redis_prefix}pool-test:{uuid.uuid4()}:"
        many = 4 * MAX_CONNECTIONS
        done = await asyncio.gather(
            *(redis.set(f"{prefix}{i}", b"1", px=5000) for i in range(many))
        )
        assert done == [True] * many
    finally:
        await redis.aclose()


async def test_concurrent_claims_get_one_winner_per_key(settings: Settings) -> None:
    redis = create_redis(settings)
    try:
        ledger = RedisLedger(redis, f"{settings.redis_prefix}ledger-test:", ttl_s=5)
        keys = [str(uuid.uuid4()) for _ in range(20)]
        answers = await asyncio.gather(*(ledger.claim(k) for k in keys * 3))
        by_key = {k: [a for kk, a in zip(keys * 3, answers, strict=True) if kk == k] for k in keys}
        assert all(sorted(found) == [False, False, True] for found in by_key.values())
    finally:
        await redis.aclose()


async def test_an_unreachable_ledger_refuses(settings: Settings) -> None:
    redis = create_redis(settings, "redis://127.0.0.1:1/0")  # nothing listens there
    try:
        ledger = RedisLedger(redis, "unreachable:", ttl_s=5)
        with pytest.raises(Unavailable):
            await ledger.claim(str(uuid.uuid4()))
    finally:
        await redis.aclose()
