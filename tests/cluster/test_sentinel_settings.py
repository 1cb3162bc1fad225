"""Redis through Sentinel, without a Sentinel set: the settings that name it, the client
`create_redis` makes from them, and that no reachable master means a refusal (closed)."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError
from redis.exceptions import RedisError

from gateway.ratelimit import Bucket, RateLimiter
from mesh.errors import Unavailable
from mesh.redis import RedisLedger, SentinelMaster, create_redis
from mesh.settings import Settings
from tests.processes import free_port


def test_sentinels_are_host_port_pairs_and_a_single_url_stays_the_default() -> None:
    assert Settings().sentinel_addresses == []
    settings = Settings(redis_sentinels=" 10.0.0.1:26379, sentinel-b:26380,[::1]:26381 ")
    assert settings.sentinel_addresses == [
        ("10.0.0.1", 26379),
        ("sentinel-b", 26380),
        ("::1", 26381),
    ]
    for bad in ("sentinel-a", "sentinel-a:port", "a:1/x", "user@a:1", ":26379"):
        with pytest.raises(ValidationError, match="is not host:port"):
            Settings(redis_sentinels=bad)
    with pytest.raises(ValidationError):
        Settings(redis_sentinel_master="two words")
    with pytest.raises(ValidationError):
        Settings(redis_prefix="medihaven:{tag}:")  # would steal the account's hash tag


async def test_with_sentinels_the_client_follows_the_named_master() -> None:
    settings = Settings(redis_sentinels="127.0.0.1:1,127.0.0.1:2", redis_sentinel_master="gw")
    client = create_redis(settings)
    assert isinstance(client, SentinelMaster)
    assert client.connection_pool.service_name == "gw"  # type: ignore[attr-defined]
    await client.aclose()
    # The keyvault's ledger: its own master name, or a URL of its own, which wins.
    ledger = create_redis(settings, sentinel_master="kv")
    assert ledger.connection_pool.service_name == "kv"  # type: ignore[attr-defined]
    await ledger.aclose()
    direct = create_redis(settings, "redis://127.0.0.1:6379/0")
    assert not isinstance(direct, SentinelMaster)
    await direct.aclose()


async def test_no_sentinel_answering_means_refused_never_passed() -> None:
    nowhere = ",".join(f"127.0.0.1:{free_port()}" for _ in range(3))
    client = create_redis(Settings(redis_sentinels=nowhere))
    try:
        limiter = RateLimiter(client, "mhtest:nowhere:")
        started = time.monotonic()
        with pytest.raises(RedisError, match="No master found"):
            await limiter.check([(Bucket("general", 3, 1.0), "acc")], nonce_key="n", nonce_ttl_s=5)
        # Refused at once, not after redis-py's default retries (12 s with 3 Sentinels).
        assert time.monotonic() - started < 3
        ledger = RedisLedger(client, "mhtest:nowhere:proof:", 5)
        with pytest.raises(Unavailable, match="unreachable; refused"):
            await ledger.claim("key:nonce:method")
    finally:
        await client.aclose()
