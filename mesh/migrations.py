"""Versioned SQL migrations with yoyo-migrations, applied at start-up.

Each service keeps `migrations/NNNN_name.sql` files in its folder; the shared runtime
adds its own tables (outbox, processed events, idempotency keys) from `mesh/migrations/`.
yoyo takes a lock table, so replicas starting together apply each migration once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote

from yoyo import get_backend, read_migrations

from mesh.settings import Settings

RUNTIME_MIGRATIONS = Path(__file__).with_name("migrations")


def _backend_uri(settings: Settings, database: str) -> str:
    password = settings.db_password.get_secret_value()
    auth = quote(settings.db_user, safe="")
    if password:
        auth += ":" + quote(password, safe="")
    return f"mysql://{auth}@{settings.db_host}:{settings.db_port}/{database}"


def apply_migrations_sync(settings: Settings, database: str, *folders: Path) -> list[str]:
    """Apply what is pending from the runtime's and the given folders; returns their ids."""
    backend = get_backend(_backend_uri(settings, database))
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
