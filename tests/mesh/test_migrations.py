"""mesh/migrations.py on the real MariaDB (the session's database prefix): applying again
applies nothing, replicas starting together apply each migration once, and a migration
added later is the only one applied next time."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

from mesh import db
from mesh.db import ensure_database
from mesh.migrations import RUNTIME_MIGRATIONS, apply_migrations
from mesh.settings import Settings

SERVICE_MIGRATIONS = Path(__file__).with_name("migrations")


def ids_in(*folders: Path) -> set[str]:
    return {p.stem for folder in folders for p in folder.glob("*.sql")}


async def fresh_database(settings: Settings) -> str:
    name = settings.database(f"mig_{uuid.uuid4().hex[:8]}")
    await ensure_database(settings, name)
    return name


async def tables_of(settings: Settings, name: str) -> set[str]:
    database = await db.Database.connect(settings, name)
    try:
        return {row[0] for row in await database.fetchall("SHOW TABLES")}
    finally:
        await database.close()


async def test_applying_twice_applies_nothing_the_second_time(settings: Settings) -> None:
    name = await fresh_database(settings)
    first = await apply_migrations(settings, name, SERVICE_MIGRATIONS)
    assert set(first) == ids_in(RUNTIME_MIGRATIONS, SERVICE_MIGRATIONS)
    tables = await tables_of(settings, name)
    assert {"notes", "mesh_outbox", "mesh_idempotency"} <= tables
    assert await apply_migrations(settings, name, SERVICE_MIGRATIONS) == []
    assert await tables_of(settings, name) == tables


async def test_replicas_starting_together_apply_each_migration_once(settings: Settings) -> None:
    name = await fresh_database(settings)
    results = await asyncio.gather(
        *(apply_migrations(settings, name, SERVICE_MIGRATIONS) for _ in range(3))
    )
    applied = [m for result in results for m in result]
    assert sorted(applied) == sorted(ids_in(RUNTIME_MIGRATIONS, SERVICE_MIGRATIONS))


async def test_a_migration_added_later_is_the_only_one_applied(
    settings: Settings, tmp_path: Path
) -> None:
    name = await fresh_database(settings)
    folder = tmp_path / "migrations"
    shutil.copytree(SERVICE_MIGRATIONS, folder)
    await apply_migrations(settings, name, folder)
    (folder / "0002_tags.sql").write_text("CREATE TABLE tags (id INT PRIMARY KEY);\n")
    assert await apply_migrations(settings, name, folder) == ["0002_tags"]
    assert "tags" in await tables_of(settings, name)
    assert await apply_migrations(settings, name, folder) == []


async def test_a_service_without_a_migrations_folder_gets_the_runtimes_tables(
    settings: Settings, tmp_path: Path
) -> None:
    name = await fresh_database(settings)
    applied = await apply_migrations(settings, name, tmp_path / "absent")
    assert set(applied) == ids_in(RUNTIME_MIGRATIONS)
    assert "notes" not in await tables_of(settings, name)
