"""mesh.db when a node goes silent, on a real MariaDB: every connection the runtime uses
carries the kernel's bound on silence (`bound_stalls`: TCP_USER_TIMEOUT, keepalive), a
statement that is merely slow is not cut short by it, callers queued on a pool that
is replaced (the pool moved to another node) take the new pool at once, and a connect to
a server that accepts and never greets (hung, stopped, cut off mid-login) gives up within
`db_connect_timeout_s`, the pool's own connects included. (The silence
itself, a node behind a partition, is in tests/cluster/test_galera_partition.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from asyncmy.errors import OperationalError

from mesh import db
from mesh.settings import Settings
from tests.support.polling import until
from tests.support.silent import SilentProxy, mute_server

pytestmark = pytest.mark.timeout(60)
linux_only = pytest.mark.skipif(
    not hasattr(socket, "TCP_USER_TIMEOUT"), reason="TCP_USER_TIMEOUT is Linux's"
)


@pytest_asyncio.fixture
async def database(settings: Settings) -> AsyncIterator[db.Database]:
    name = f"{settings.db_prefix}dbstall_{uuid.uuid4().hex[:8]}"
    await db.ensure_database(settings, name)
    bounded = settings.model_copy(update={"db_stall_timeout_s": 1.0, "db_pool_size": 2})
    database = await db.Database.connect(bounded, name)
    try:
        yield database
    finally:
        await database.close()


def options(conn: Any) -> tuple[int, int, int]:
    raw = conn._transport.get_extra_info("socket")
    return (
        raw.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    )


@linux_only
async def test_every_pool_connection_is_bounded(database: db.Database) -> None:
    async with database._acquire() as first, database._acquire() as second:
        assert options(first) == options(second) == (1, 1, 1000)


@linux_only
async def test_a_probe_connection_is_bounded(settings: Settings) -> None:
    conn, _ = await db.connect_any(settings.model_copy(update={"db_stall_timeout_s": 4.0}))
    try:
        assert options(conn) == (1, 2, 4000)
    finally:
        conn.close()


async def test_a_slow_statement_is_not_cut_short(database: db.Database) -> None:
    """The server's kernel acknowledges keepalive probes while the statement runs: only
    silence ends a connection, never a long wait (here 3 s against a 1 s bound)."""
    started = time.monotonic()
    assert await database.fetchone("SELECT SLEEP(3)") == (0,)
    assert time.monotonic() - started >= 2.9
    assert await database.fetchone("SELECT 1") == (1,)  # the same pool, still whole


async def test_callers_waiting_on_a_replaced_pool_take_the_new_one_at_once(
    settings: Settings,
) -> None:
    """Before: a caller queued on the old pool waited for it (on a lost node, one
    connect timeout after another) although the database had moved."""
    name = f"{settings.db_prefix}dbmove_{uuid.uuid4().hex[:8]}"
    await db.ensure_database(settings, name)
    here = f"{settings.db_host}:{settings.db_port}"
    two = settings.model_copy(update={"db_hosts": f"{here},{here}", "db_pool_size": 1})
    database = await db.Database.connect(two, name)
    try:
        held = asyncio.Event()
        release = asyncio.Event()

        async def hold() -> None:
            async with database._acquire():
                held.set()
                await release.wait()

        holder = asyncio.ensure_future(hold())
        await held.wait()
        old = database.pool
        waiters = [asyncio.ensure_future(database.fetchone("SELECT 1")) for _ in range(3)]
        cancelled = asyncio.ensure_future(database.fetchone("SELECT 1"))
        await asyncio.sleep(0)  # (one turn: they are queued on the full pool)
        assert not any(w.done() for w in waiters)
        cancelled.cancel()
        await database._switch(two, 1)  # what a move does
        assert await asyncio.wait_for(asyncio.gather(*waiters), 5) == [(1,)] * 3
        assert not release.is_set() and old.size == 1  # the old pool's one is still held
        release.set()
        await holder
        assert database.pool is not old and database.pool.size == 1
        assert await database.fetchone("SELECT 1") == (1,)
    finally:
        await database.close()


class _ClosedAsAsked:
    """A pool replaced (and closed) while a caller was asking it for a connection: the
    move happens during the `acquire`, which then refuses, as the driver's closed pool
    does. (The real interleaving is the Galera partition test's.)"""

    freesize = 1

    def __init__(self, database: db.Database, successor: Any) -> None:
        self.database, self.successor = database, successor

    async def acquire(self) -> Any:
        if self.successor is not None:
            self.database.pool = self.successor
        raise RuntimeError("Cannot acquire connection after closing pool")


async def test_a_caller_refused_by_a_pool_replaced_meanwhile_takes_the_new_one(
    database: db.Database,
) -> None:
    """Before: "Cannot acquire connection after closing pool" reached the handler, a 500
    (four in one run of the Galera partition test, right after the pool moved)."""
    current = database.pool
    try:
        database.pool = _ClosedAsAsked(database, current)  # type: ignore[assignment]
        assert await database.fetchone("SELECT 1") == (1,)
        database.pool = _ClosedAsAsked(database, None)  # type: ignore[assignment]
        with pytest.raises(RuntimeError):  # not replaced: the error is the caller's
            await database.fetchone("SELECT 1")
    finally:
        database.pool = current


@contextlib.asynccontextmanager
async def behind_proxy(
    settings: Settings, **update: Any
) -> AsyncIterator[tuple[db.Database, SilentProxy]]:
    """A database whose first node is a `SilentProxy` in front of the machine's MariaDB
    (`update` may list the real server after it in `db_hosts`)."""
    name = f"{settings.db_prefix}dbmute_{uuid.uuid4().hex[:8]}"
    await db.ensure_database(settings, name)
    async with SilentProxy(settings.db_host, settings.db_port) as proxy:
        here = f"127.0.0.1:{proxy.port}"
        hosts = update.pop("db_hosts", "").format(proxy=here)
        chosen = settings.model_copy(
            update={
                "db_host": "127.0.0.1",
                "db_port": proxy.port,
                "db_hosts": hosts,
                "db_connect_timeout_s": 1.0,
                "db_pool_size": 2,
                **update,
            }
        )
        database = await db.Database.connect(chosen, name)
        try:
            assert await database.fetchone("SELECT 1") == (1,)
            yield database, proxy
        finally:
            await database.close()


async def _reconnect_through(database: db.Database, proxy: SilentProxy) -> None:
    """Freeze the proxy and drop the pool's idle connection: the next caller makes the
    pool connect again, to a server that accepts and never greets."""
    proxy.freeze()
    await asyncio.wait_for(database.pool.clear(), 5)  # (the QUIT is sent, then closed)
    assert database.pool.size == 0


async def test_a_pool_connecting_to_a_server_that_never_greets_gives_up_within_the_bound(
    settings: Settings,
) -> None:
    """Before: asyncmy's `connect_timeout` bounded the TCP connect only; the pool's
    connect waited for the greeting for ever, under the pool's lock, and every caller of
    the pool with it (here both would still be waiting at the 20 s guard)."""
    async with behind_proxy(settings) as (database, proxy):
        await _reconnect_through(database, proxy)
        started = time.monotonic()
        callers = [database.fetchone("SELECT 1"), database.fetchone("SELECT 1")]
        outcomes = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 20)
        assert time.monotonic() - started < 6  # one bound (1 s) each, one after the other
        for outcome in outcomes:
            assert isinstance(outcome, OperationalError), outcome
            assert db.is_connection_lost(outcome)  # a 503, and the cue to move node
            assert "initial communication packet" in str(outcome)


async def test_a_pool_whose_node_stops_greeting_moves_to_the_next_node(
    settings: Settings,
) -> None:
    real = f"{settings.db_host}:{settings.db_port}"
    async with behind_proxy(settings, db_hosts="{proxy}," + real) as (database, proxy):
        assert database.node == 0
        await _reconnect_through(database, proxy)
        with pytest.raises(OperationalError):
            await asyncio.wait_for(database.fetchone("SELECT 1"), 20)
        await until(lambda: database.node == 1, timeout=15)
        assert await database.fetchone("SELECT 1") == (1,)


async def test_a_probe_of_a_server_that_never_greets_fails_within_the_bound(
    settings: Settings,
) -> None:
    async with mute_server() as port:
        mute = settings.model_copy(
            update={"db_host": "127.0.0.1", "db_port": port, "db_connect_timeout_s": 1.0}
        )
        started = time.monotonic()
        with pytest.raises(OperationalError) as refused:
            await asyncio.wait_for(db.connect_any(mute), 20)
        assert time.monotonic() - started < 5
        assert db.is_connection_lost(refused.value)
