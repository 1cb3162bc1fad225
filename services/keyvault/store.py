"""SQL of the keyvault: metadata, wrapped keys and nonce-counter leases."""

from __future__ import annotations

from dataclasses import dataclass

from mesh import db
from mesh.db import Database


@dataclass(frozen=True)
class VaultMeta:
    threshold: int
    shares: int
    set_id: bytes
    check_value: bytes


@dataclass(frozen=True)
class StoredKey:
    key_id: int
    purpose: str
    state: str
    wrapped: bytes
    nonce_prefix: bytes
    use_count: int


async def load_meta(database: Database) -> VaultMeta | None:
    row = await database.fetchone(
        "SELECT threshold, shares, set_id, check_value FROM vault_meta WHERE id = 1"
    )
    if row is None:
        return None
    return VaultMeta(int(row[0]), int(row[1]), bytes(row[2]), bytes(row[3]))


async def save_initialisation(database: Database, meta: VaultMeta, keys: list[StoredKey]) -> None:
    """Store the metadata and the first keys in one transaction (a second init fails)."""
    async with database.transaction() as conn:
        await db.execute(
            conn,
            "INSERT INTO vault_meta (id, threshold, shares, set_id, check_value) "
            "VALUES (1, %s, %s, %s, %s)",
            (meta.threshold, meta.shares, meta.set_id, meta.check_value),
        )
        await insert_keys(conn, keys)


async def insert_keys(conn: object, keys: list[StoredKey]) -> None:
    for key in keys:
        await db.execute(
            conn,
            "INSERT INTO vault_keys (key_id, purpose, state, wrapped, nonce_prefix) "
            "VALUES (%s, %s, %s, %s, %s)",
            (key.key_id, key.purpose, key.state, key.wrapped, key.nonce_prefix),
        )


async def add_keys(database: Database, keys: list[StoredKey], retire: list[int]) -> None:
    async with database.transaction() as conn:
        await insert_keys(conn, keys)
        for key_id in retire:
            await db.execute(
                conn,
                "UPDATE vault_keys SET state = 'retired', retired_at = NOW(6) WHERE key_id = %s",
                (key_id,),
            )


async def load_keys(database: Database, key_id: int | None = None) -> list[StoredKey]:
    sql = "SELECT key_id, purpose, state, wrapped, nonce_prefix, use_count FROM vault_keys"
    args: tuple[int, ...] = ()
    if key_id is not None:
        sql += " WHERE key_id = %s"
        args = (key_id,)
    rows = await database.fetchall(sql + " ORDER BY key_id", args)
    return [
        StoredKey(int(r[0]), str(r[1]), str(r[2]), bytes(r[3]), bytes(r[4]), int(r[5]))
        for r in rows
    ]


async def max_key_id(database: Database) -> int:
    row = await database.fetchone("SELECT COALESCE(MAX(key_id), 0) FROM vault_keys")
    return int(row[0]) if row else 0


async def lease_counters(database: Database, key_id: int, size: int, instance: str) -> int:
    """Reserve `size` nonce counters of `key_id` for this replica; returns the first.

    One atomic UPDATE moves the key's high-water mark, committed before any counter of
    the block is used: a crash abandons the rest of the block, and no other replica can
    ever lease an overlapping one.
    """
    async with database.transaction() as conn:
        changed = await db.execute(
            conn,
            "UPDATE vault_keys SET next_counter = LAST_INSERT_ID(next_counter + %s) "
            "WHERE key_id = %s",
            (size, key_id),
        )
        if changed != 1:
            raise LookupError(f"no key {key_id}")
        row = await db.fetchone(conn, "SELECT LAST_INSERT_ID()")
        assert row is not None
        end = int(row[0])
        await db.execute(
            conn,
            "INSERT INTO nonce_leases (key_id, start_counter, end_counter, instance) "
            "VALUES (%s, %s, %s, %s)",
            (key_id, end - size, end, instance),
        )
    return end - size


async def add_use_counts(database: Database, counts: dict[int, int]) -> None:
    async with database.transaction() as conn:
        for key_id, count in counts.items():
            await db.execute(
                conn,
                "UPDATE vault_keys SET use_count = use_count + %s WHERE key_id = %s",
                (count, key_id),
            )
