"""Redis: the client factory (the gateway keeps nonces and token buckets there; a single
URL, or a master found through Redis Sentinel) and the keyvault's ledger of signed
requests already served."""

from __future__ import annotations

import asyncio

from pydantic import SecretStr
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from mesh.errors import Unavailable
from mesh.logging import get_logger
from mesh.settings import Settings

REDIS_UNAVAILABLE: tuple[type[BaseException], ...] = (RedisError, OSError, RuntimeError)
"""What a Redis command raises while its server (or the Sentinel master) is gone:
redis-py's errors, the socket's, and the event loop's RuntimeError for a write on a
transport that closed under the connection ("the handler is closed", uvloop), which a CI
run saw during a failover. Each is answered as Redis being unreachable (503), never 500."""


log = get_logger("mesh.redis")


MAX_CONNECTIONS = 64
POOL_WAIT_S = 2.0
TIMEOUTS = {"socket_connect_timeout": 1.0, "socket_timeout": 1.0}


def describe(exc: BaseException) -> str:
    """A Redis error for a log line: its kind and the start of its message (redis-py's
    "No master found" repeats the repr of every Sentinel client, kilobytes per refusal)."""
    return f"{type(exc).__name__}: {str(exc)[:160]}"


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's Sentinel pool (asks the Sentinels for the master before each new
    connection, drops connections to a demoted one) with the blocking pool's bound."""


class SentinelMaster(Redis):
    """The master's client; closing it also closes its connections to the Sentinels."""

    sentinels: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinels is not None:
            await self.sentinels.aclose()


def _secret(value: str | SecretStr) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def create_redis(
    settings: Settings,
    url: str | SecretStr | None = None,
    *,
    sentinel_master: str | None = None,
) -> Redis:
    """A client with short timeouts: callers fail closed rather than hang.

    Its pool holds at most MAX_CONNECTIONS, and a command beyond them waits up to
    POOL_WAIT_S for one to come free: redis-py's default pool instead raises "Too many
    connections" past 100 commands in flight, which made the gateway refuse requests
    (503) at 256 concurrent summaries (bench.records' hang check).

    With `redis_sentinels` set (and no explicit `url`), the master is found through
    Sentinel (redis-py's `Sentinel.master_for`): after a failover, new connections go to
    the promoted replica; while no master answers, commands raise `RedisError`, which
    every caller turns into a refusal."""
    sentinels = settings.sentinel_addresses
    if url is None and sentinels:
        return _sentinel_client(settings, sentinels, sentinel_master)
    pool = BlockingConnectionPool.from_url(
        _secret(url or settings.redis_url),
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_S,
        health_check_interval=15,
        **TIMEOUTS,
    )
    return Redis(connection_pool=pool)


def _sentinel_client(
    settings: Settings, sentinels: list[tuple[str, int]], master: str | None
) -> Redis:
    secret = settings.redis_sentinel_password
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        sentinels,
        # One try per Sentinel: discovery already asks each in turn. redis-py's default
        # (3 retries with backoff) made a refusal take 12 s with no Sentinel answering.
        sentinel_kwargs={
            **TIMEOUTS,
            "retry": Retry(NoBackoff(), 0),
            "password": secret.get_secret_value() if secret else None,
        },
        # One retry on the master, for connection errors only: a pooled connection to a
        # demoted or dead master fails, the retry asks the Sentinels again and reaches the
        # promoted one. Never on a timeout, whose command may have run: sent again, a
        # nonce's SET NX would find itself and refuse the request as a replay.
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        **TIMEOUTS,
    )
    password = settings.redis_password
    client = sentinel.master_for(
        master or settings.redis_sentinel_master,
        redis_class=SentinelMaster,
        connection_pool_class=_BlockingSentinelPool,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_S,
        health_check_interval=15,
        password=password.get_secret_value() if password else None,
    )
    assert isinstance(client, SentinelMaster)
    client.sentinels = sentinel
    return client


class RedisLedger:
    """Signed requests already served, in Redis under a prefix of their own (the
    keyvault's: one ledger across all its replicas). A claim lasts the signature window
    plus the clock skew, after which the signature is stale anyway. Redis unreachable:
    the claim raises `Unavailable`, so the request is refused (closed).

    Claims made while another is on its way are sent together, as one pipeline of
    `SET NX` commands (one round trip, a third of the client's CPU per claim under load);
    each claim still gets its own answer.

    With `acks` > 0 (a Sentinel set: `keyvault_ledger_acks`), the pipeline ends with
    `WAIT acks`, and a claim counts only once that many replicas hold it: Sentinel promotes
    the replica furthest along, so a claim then survives the loss of any one node (the
    master's asynchronous replication alone could lose it). Fewer acknowledgements within
    ACK_TIMEOUT_MS: refused (closed), as when Redis is unreachable."""

    ACK_TIMEOUT_MS = 500

    def __init__(self, redis: Redis, prefix: str, ttl_s: float, acks: int = 0) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_ms = max(int(ttl_s * 1000), 1)
        self._acks = acks
        self._waiting: list[tuple[str, asyncio.Future[bool]]] = []
        self._flushing = False
        self._task: asyncio.Task[None] | None = None

    async def claim(self, key: str) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((self._prefix + key, future))
        if not self._flushing:
            self._flushing = True
            self._task = asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for key, _ in batch:
                            pipe.set(key, b"1", nx=True, px=self._ttl_ms)
                        if self._acks:
                            pipe.execute_command("WAIT", self._acks, self.ACK_TIMEOUT_MS)
                        fresh = await pipe.execute()
                    if self._acks:
                        acked = int(fresh.pop())
                        if acked < self._acks:
                            raise RedisError(f"{acked} of {self._acks} replicas acknowledged")
                except REDIS_UNAVAILABLE as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(
                                Unavailable("the signed-request ledger is unreachable; refused")
                            )
                    log.error("ledger.unreachable", error=describe(exc))
                    continue
                for (_, future), answer in zip(batch, fresh, strict=True):
                    if not future.done():
                        future.set_result(bool(answer))
        finally:
            self._flushing = False
