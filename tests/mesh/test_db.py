"""mesh.db on a real MariaDB: transactions commit or roll back as a whole, a task inside a
transaction cannot starve its own pool, duplicates are recognised, and cleaning up drops
only the databases of its own prefix."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from asyncmy.errors import IntegrityError, OperationalError

from mesh import db
from mesh.db import Sql
from mesh.settings import Settings

TABLE = "CREATE TABLE items (id INT PRIMARY KEY, note VARCHAR(40)) ENGINE=InnoDB"


@pytest_asyncio.fixture
async def database(settings: Settings) -> AsyncIterator[db.Database]:
    name = f"{settings.db_prefix}dbtest_{uuid.uuid4().hex[:8]}"
    await db.ensure_database(settings, name)
    small = settings.model_copy(update={"db_pool_size": 2})
    database = await db.Database.connect(small, name)
    await database.execute(TABLE)
    try:
        yield database
    finally:
        await database.close()


async def notes(database: db.Database) -> list[str]:
    return [str(r[0]) for r in await database.fetchall("SELECT note FROM items ORDER BY id")]


async def test_a_transaction_commits_all_or_nothing(database: db.Database) -> None:
    async with database.transaction() as conn:
        await db.execute(conn, "INSERT INTO items VALUES (1, 'kept')")
        await db.execute(conn, "INSERT INTO items VALUES (2, 'kept too')")
    with pytest.raises(RuntimeError, match="on purpose"):
        async with database.transaction() as conn:
            await db.execute(conn, "INSERT INTO items VALUES (3, 'rolled back')")
            raise RuntimeError("on purpose")
    assert await notes(database) == ["kept", "kept too"]


async def test_a_duplicate_key_is_recognised_and_other_errors_are_not(
    database: db.Database,
) -> None:
    await database.execute("INSERT INTO items VALUES (1, 'first')")
    with pytest.raises(Exception) as duplicate:
        await database.execute("INSERT INTO items VALUES (1, 'again')")
    assert db.is_duplicate_key(duplicate.value)
    with pytest.raises(Exception) as other:
        await database.execute("INSERT INTO no_such_table VALUES (1)")
    assert not db.is_duplicate_key(other.value)
    assert not db.is_duplicate_key(ValueError("1062"))


async def test_a_second_connection_inside_a_transaction_is_refused(database: db.Database) -> None:
    """With pool size 2, two tasks each holding a transaction and asking for one more
    connection would wait for ever; each is told at once instead."""

    async def holds_and_asks(n: int) -> None:
        async with database.transaction() as conn:
            await db.execute(conn, "INSERT INTO items VALUES (%s, 'held')", (n,))
            await database.fetchone("SELECT 1")

    results = await asyncio.wait_for(
        asyncio.gather(holds_and_asks(1), holds_and_asks(2), return_exceptions=True), 10
    )
    assert all(isinstance(r, db.PoolStarvation) for r in results), results
    assert await notes(database) == []  # both rolled back
    # reading through the transaction's own connection is the way, and works
    async with database.transaction() as conn:
        await db.execute(conn, "INSERT INTO items VALUES (5, 'through tx')")
        assert await db.fetchone(conn, "SELECT note FROM items WHERE id = 5") == ("through tx",)


async def test_a_task_started_inside_a_transaction_is_held_to_the_same_rule(
    database: db.Database,
) -> None:
    async with database.transaction():
        with pytest.raises(db.PoolStarvation):
            await asyncio.create_task(database.fetchall("SELECT 1"))
    # after the transaction, the pool serves again
    assert await database.fetchone("SELECT 1") == (1,)


async def test_cleanup_drops_its_own_prefix_only(settings: Settings) -> None:
    mine = settings.model_copy(update={"db_prefix": f"{settings.db_prefix}drop_"})
    other = f"{settings.db_prefix}keep_dbtest"
    await db.ensure_database(mine, f"{mine.db_prefix}a")
    await db.ensure_database(mine, f"{mine.db_prefix}b")
    await db.ensure_database(settings, other)
    await db.ensure_database(settings, other)  # a second start finds it there
    dropped = await db.drop_databases(mine)
    assert sorted(dropped) == [f"{mine.db_prefix}a", f"{mine.db_prefix}b"]
    database = await db.Database.connect(settings, other)
    try:
        assert await database.fetchone("SELECT DATABASE()") == (other,)
    finally:
        await database.close()


async def test_a_deadlock_victim_is_run_again_as_a_whole(database: db.Database) -> None:
    """InnoDB's deadlock (the same error Galera gives a certification conflict): the
    victim's whole block runs again and both writers' effects are there, once each."""
    await database.execute("INSERT INTO items VALUES (1, 'a0'), (2, 'b0')")
    attempts: dict[str, int] = {"a": 0, "b": 0}
    first_rows = asyncio.Barrier(2)

    async def writer(name: str, first: int, second: int) -> None:
        async def work(conn: Sql) -> None:
            attempts[name] += 1
            await db.execute(conn, "UPDATE items SET note = %s WHERE id = %s", (name, first))
            if attempts[name] == 1:
                await first_rows.wait()  # each holds one row, then wants the other's
            await db.execute(conn, "UPDATE items SET note = %s WHERE id = %s", (name, second))
            await db.execute(conn, "INSERT INTO items VALUES (%s, %s)", (10 + first, name))

        await database.run(work)

    await asyncio.wait_for(asyncio.gather(writer("a", 1, 2), writer("b", 2, 1)), 30)
    assert sorted(attempts.values()) == [1, 2]
    rows = await database.fetchall("SELECT id, note FROM items WHERE id > 10 ORDER BY id")
    assert rows == [(11, "a"), (12, "b")]


async def test_retries_are_bounded_and_other_errors_are_not_retried(
    database: db.Database,
) -> None:
    settings = Settings(db_retry_attempts=3)
    bounded = db.Database(database.pool, database.name, settings)
    tries = 0

    async def always_conflicts(conn: Sql) -> None:
        nonlocal tries
        tries += 1
        raise OperationalError(db.DEADLOCK, "Deadlock found (on purpose)")

    with pytest.raises(OperationalError) as raised:
        await bounded.run(always_conflicts)
    assert tries == 3 and raised.value.args[0] == db.DEADLOCK

    tries = 0

    async def fails(conn: Sql) -> None:
        nonlocal tries
        tries += 1
        await db.execute(conn, "INSERT INTO items VALUES (1, 'x'), (1, 'x')")

    with pytest.raises(IntegrityError):
        await bounded.run(fails)
    assert tries == 1
    assert await notes(database) == []


def test_a_host_list_is_read_in_order() -> None:
    hosts = Settings(db_hosts="10.0.0.1:3307,galera-2,[::1]:3308", db_port=3306)
    assert hosts.db_addresses() == [("10.0.0.1", 3307), ("galera-2", 3306), ("::1", 3308)]
    assert Settings(db_host="db", db_port=3310).db_addresses() == [("db", 3310)]


def test_a_conflict_is_recognised_when_wrapped_unless_the_code_chose_its_own_answer() -> None:
    conflict = OperationalError(db.DEADLOCK, "Deadlock found")
    try:
        try:
            raise conflict
        except OperationalError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        assert db.is_retryable(wrapped)
    try:
        try:
            raise conflict
        except OperationalError:
            raise ValueError("a 409 of its own") from None
    except ValueError as chosen:
        assert not db.is_retryable(chosen)
    assert not db.is_retryable(OperationalError(2013, "Lost connection"))
    assert db.is_connection_lost(OperationalError(2013, "Lost connection"))
    assert db.is_connection_lost(OperationalError(db.NODE_NOT_READY, "WSREP"))
