"""Versioned SQL migrations with yoyo-migrations, applied at start-up.

Each service keeps `migrations/NNNN_name.sql` files in its folder; the shared runtime
adds its own tables (outbox, processed events, idempotency keys) from `mesh/migrations/`.
yoyo takes a lock table, so replicas starting together apply each migration once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote

import pymysql
from yoyo import get_backend, read_migrations

from mesh.settings import Settings

RUNTIME_MIGRATIONS = Path(__file__).with_name("migrations")


def _backend_uri(settings: Settings, database: str, address: tuple[str, int]) -> str:
    password = settings.db_password.get_secret_value()
    auth = quote(settings.db_user, safe="")
    if password:
        auth += ":" + quote(password, safe="")
    host, port = address
    return f"mysql://{auth}@{host}:{port}/{database}"


def apply_migrations_sync(settings: Settings, database: str, *folders: Path) -> list[str]:
    """Apply what is pending from the runtime's and the given folders; returns their ids.

    On a Galera cluster (several `db_hosts`) on the first node that takes them: DDL is
    replicated in total order, and yoyo's lock is a row with a primary key, which two
    nodes cannot both insert."""
    addresses = settings.db_addresses()
    for index, address in enumerate(addresses):
        try:
            return _apply(settings, database, address, folders)
        except pymysql.err.OperationalError:
            if index == len(addresses) - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _apply(
    settings: Settings, database: str, address: tuple[str, int], folders: tuple[Path, ...]
) -> list[str]:
    backend = get_backend(_backend_uri(settings, database, address))
    try:
        sources = [str(RUNTIME_MIGRATIONS), *(str(f) for f in folders if f.is_dir())]
        migrations = read_migrations(*sources)
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return [m.id for m in pending]
    finally:
        backend.connection.close()


async def apply_migrations(settings: Settings, database: str, *folders: Path) -> list[str]:
    return await asyncio.to_thread(apply_migrations_sync, settings, database, *folders)
