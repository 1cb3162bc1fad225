"""MariaDB access: one aiomysql pool per service, in the service's own database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiomysql
import pymysql

from mesh.settings import Settings

DUPLICATE_KEY = 1062
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    pymysql.err.OperationalError,
    pymysql.err.InterfaceError,
    ConnectionError,
)
"""Errors that mean the database cannot be reached or must be retried (restart, failover,
lock timeout): callers get `unavailable` (503), not an internal error."""


def is_duplicate_key(exc: BaseException) -> bool:
    """True for MariaDB's 'duplicate entry' error (a unique constraint refused a row)."""
    return isinstance(exc, pymysql.err.IntegrityError) and exc.args[:1] == (DUPLICATE_KEY,)


def _connect_kwargs(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.db_host,
        "port": settings.db_port,
        "user": settings.db_user,
        "password": settings.db_password.get_secret_value(),
        "charset": "utf8mb4",
    }


async def ensure_database(settings: Settings, database: str) -> None:
    """Create `database` if it does not exist yet (first start of a service)."""
    conn = await aiomysql.connect(**_connect_kwargs(settings))
    try:
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (database,)
            )
            if await cur.fetchone() is None:
                await cur.execute(
                    f"CREATE DATABASE IF NOT EXISTS `{database}` "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                )
    finally:
        conn.close()


async def drop_databases(settings: Settings) -> list[str]:
    """Drop every database named with `settings.db_prefix` (tests and benchmarks clean up
    after themselves with this; never point it at a production prefix)."""
    conn = await aiomysql.connect(**_connect_kwargs(settings))
    try:
        async with conn.cursor() as cur:
            pattern = settings.db_prefix.replace("_", "\\_") + "%"
            await cur.execute("SHOW DATABASES LIKE %s", (pattern,))
            names = [str(row[0]) for row in await cur.fetchall()]
            for name in names:
                await cur.execute(f"DROP DATABASE `{name}`")
        return names
    finally:
        conn.close()


class Database:
    """A pool on one database, with helpers for the common shapes of access."""

    def __init__(self, pool: aiomysql.Pool, name: str) -> None:
        self.pool = pool
        self.name = name

    @classmethod
    async def connect(cls, settings: Settings, database: str) -> Database:
        pool = await aiomysql.create_pool(
            **_connect_kwargs(settings),
            db=database,
            autocommit=True,
            minsize=1,
            maxsize=settings.db_pool_size,
            pool_recycle=300,
        )
        return cls(pool, database)

    async def close(self) -> None:
        self.pool.close()
        await self.pool.wait_closed()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiomysql.Connection]:
        """A connection inside BEGIN … COMMIT; rolled back if the block raises."""
        async with self.pool.acquire() as conn:
            await conn.begin()
            try:
                yield conn
            except BaseException:
                await conn.rollback()
                raise
            await conn.commit()

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(sql, args)
            return list(await cur.fetchall())

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(sql, args)
            row = await cur.fetchone()
            return tuple(row) if row is not None else None

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement in autocommit; returns the affected row count."""
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            return int(await cur.execute(sql, args))

    async def ping(self) -> None:
        await self.fetchone("SELECT 1")


async def execute(conn: Database | aiomysql.Connection, sql: str, args: Sequence[Any] = ()) -> int:
    """Run one statement on a transaction's connection (or, given a Database, in autocommit)."""
    if isinstance(conn, Database):
        return await conn.execute(sql, args)
    async with conn.cursor() as cur:
        return int(await cur.execute(sql, args))


async def fetchone(
    conn: Database | aiomysql.Connection, sql: str, args: Sequence[Any] = ()
) -> tuple[Any, ...] | None:
    if isinstance(conn, Database):
        return await conn.fetchone(sql, args)
    async with conn.cursor() as cur:
        await cur.execute(sql, args)
        row = await cur.fetchone()
        return tuple(row) if row is not None else None


async def fetchall(
    conn: Database | aiomysql.Connection, sql: str, args: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    if isinstance(conn, Database):
        return await conn.fetchall(sql, args)
    async with conn.cursor() as cur:
        await cur.execute(sql, args)
        return list(await cur.fetchall())
