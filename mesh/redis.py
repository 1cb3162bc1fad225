"""Redis client factory (the gateway keeps nonces and token buckets there)."""

from __future__ import annotations

from redis.asyncio import Redis

from mesh.settings import Settings


def create_redis(settings: Settings) -> Redis:
    """A client with short timeouts: callers fail closed rather than hang."""
    return Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=1.0,
        socket_timeout=1.0,
        health_check_interval=15,
    )
