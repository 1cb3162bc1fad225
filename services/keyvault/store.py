"""SQL of the keyvault: metadata, wrapped keys and nonce-counter leases, the key lifecycle
(rewrap runs, ceremonies) and bulk-export sessions."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mesh import db
from mesh.db import Database, Sql


@dataclass(frozen=True)
class VaultMeta:
    threshold: int
    shares: int
    set_id: bytes
    check_value: bytes
    """Check value of what the shares rebuild (the root key, or the unseal key)."""
    wrapped_root: bytes | None = None
    """The root key wrapped under the unseal key the shares rebuild; None while the shares
    rebuild the root key itself (as initialised, before any rekey)."""
    generation: int = 0
    min_keys: dict[str, int] = field(default_factory=dict)
    """Per purpose, the smallest key id that still decrypts or verifies."""
    min_field_version: int = 1


@dataclass(frozen=True)
class StoredKey:
    key_id: int
    purpose: str
    state: str
    wrapped: bytes | None
    nonce_prefix: bytes
    use_count: int
    retired_at: datetime | None = None


PURPOSES = ("data", "integrity", "blind_index")
_META = (
    "threshold, shares, set_id, check_value, wrapped_root, generation, min_data_key, "
    "min_integrity_key, min_blind_index_key, min_field_version"
)


def _meta(row: Sequence[Any]) -> VaultMeta:
    return VaultMeta(
        int(row[0]),
        int(row[1]),
        bytes(row[2]),
        bytes(row[3]),
        None if row[4] is None else bytes(row[4]),
        int(row[5]),
        {"data": int(row[6]), "integrity": int(row[7]), "blind_index": int(row[8])},
        int(row[9]),
    )


async def load_meta(database: Database) -> VaultMeta | None:
    row = await database.fetchone(f"SELECT {_META} FROM vault_meta WHERE id = 1")  # noqa: S608
    return None if row is None else _meta(row)


async def lock_meta(conn: Sql) -> VaultMeta:
    """The metadata row, locked for this transaction (lifecycle steps serialise on it)."""
    row = await db.fetchone(conn, f"SELECT {_META} FROM vault_meta WHERE id = 1 FOR UPDATE")  # noqa: S608
    if row is None:
        raise LookupError("the keyvault is not initialised")
    return _meta(row)


async def save_initialisation(database: Database, meta: VaultMeta, keys: list[StoredKey]) -> None:
    """Store the metadata and the first keys in one transaction (a second init fails)."""
    async for attempt in database.transactions():
        async with attempt as conn:
            await db.execute(
                conn,
                "INSERT INTO vault_meta (id, threshold, shares, set_id, check_value, wrapped_root) "
                "VALUES (1, %s, %s, %s, %s, %s)",
                (meta.threshold, meta.shares, meta.set_id, meta.check_value, meta.wrapped_root),
            )
            await insert_keys(conn, keys)


async def insert_keys(conn: Sql, keys: list[StoredKey]) -> None:
    for key in keys:
        await db.execute(
            conn,
            "INSERT INTO vault_keys (key_id, purpose, state, wrapped, nonce_prefix) "
            "VALUES (%s, %s, %s, %s, %s)",
            (key.key_id, key.purpose, key.state, key.wrapped, key.nonce_prefix),
        )


async def add_keys(
    database: Database,
    build: Callable[[int], list[StoredKey]],
    retire_purpose: str | None,
    generation: int,
) -> tuple[list[StoredKey], list[int]]:
    """New keys (`build(first free id)`, wrapped under the root key of `generation`:
    refused if the root key rotated meanwhile, they would not unwrap), and every older
    active key of `retire_purpose` retired, in one transaction serialised on the
    metadata row (so two rotations never pick the same ids)."""
    async for attempt in database.transactions():
        async with attempt as conn:
            meta = await lock_meta(conn)
            if meta.generation != generation:
                raise StaleRoot(meta.generation)
            row = await db.fetchone(conn, "SELECT COALESCE(MAX(key_id), 0) FROM vault_keys")
            keys = build((int(row[0]) if row else 0) + 1)
            retired: list[int] = []
            if retire_purpose is not None:
                found = await db.fetchall(
                    conn,
                    "SELECT key_id FROM vault_keys WHERE purpose = %s AND state = 'active' "
                    "ORDER BY key_id",
                    (retire_purpose,),
                )
                retired = [int(r[0]) for r in found]
            await insert_keys(conn, keys)
            for key_id in retired:
                await db.execute(
                    conn,
                    "UPDATE vault_keys SET state = 'retired', retired_at = NOW(6) "
                    "WHERE key_id = %s",
                    (key_id,),
                )
    return keys, retired


class StaleRoot(Exception):
    """The root key rotated since this replica unsealed (or adopted it)."""

    def __init__(self, generation: int) -> None:
        super().__init__(f"the root key is now of generation {generation}")
        self.generation = generation


_KEYS = (
    "SELECT key_id, purpose, state, wrapped, nonce_prefix, use_count, retired_at FROM vault_keys"
)


def _stored(r: Sequence[Any]) -> StoredKey:
    return StoredKey(
        int(r[0]),
        str(r[1]),
        str(r[2]),
        None if r[3] is None else bytes(r[3]),
        bytes(r[4]),
        int(r[5]),
        None if r[6] is None else r[6].replace(tzinfo=UTC),
    )


async def load_keys(database: Any, key_id: int | None = None) -> list[StoredKey]:
    sql = _KEYS
    args: tuple[int, ...] = ()
    if key_id is not None:
        sql += " WHERE key_id = %s"
        args = (key_id,)
    rows = await db.fetchall(database, sql + " ORDER BY key_id", args)
    return [_stored(r) for r in rows]


async def max_key_id(database: Database) -> int:
    row = await database.fetchone("SELECT COALESCE(MAX(key_id), 0) FROM vault_keys")
    return int(row[0]) if row else 0


async def lease_counters(database: Database, key_id: int, size: int, instance: str) -> int:
    """Reserve `size` nonce counters of `key_id` for this replica; returns the first.

    One atomic UPDATE moves the key's high-water mark, committed before any counter of
    the block is used: a crash abandons the rest of the block, and no other replica can
    ever lease an overlapping one.

    On a Galera cluster two replicas may lease at once on different nodes, where the row
    lock of one node does not stop the other: both read the same mark. Both write sets
    then update the same `vault_keys` row (its primary key), so certification lets only
    the first to commit through and rolls the other back with a deadlock error (1213) at
    its COMMIT, before this function returns a counter; `transactions()` then leases
    again from the moved mark. `nonce_leases` has its start as part of its primary key,
    a second line of defence against one block leased twice.
    """
    async for attempt in database.transactions():
        async with attempt as conn:
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
    async for attempt in database.transactions():
        async with attempt as conn:
            for key_id, count in counts.items():
                await db.execute(
                    conn,
                    "UPDATE vault_keys SET use_count = use_count + %s WHERE key_id = %s",
                    (count, key_id),
                )


async def administrator_registered(database: Database) -> bool:
    row = await database.fetchone("SELECT 1 FROM registered_administrators LIMIT 1")
    return row is not None


async def record_administrator(database: Database, account_id: str) -> None:
    await database.execute(
        "INSERT IGNORE INTO registered_administrators (account_id) VALUES (%s)", (account_id,)
    )


# ---------------------------------------------------------------------------- lifecycle


def _utc(value: Any) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


async def set_min_versions(
    database: Database, min_keys: dict[str, int], min_field_version: int
) -> None:
    await database.execute(
        "UPDATE vault_meta SET min_data_key = %s, min_integrity_key = %s, "
        "min_blind_index_key = %s, min_field_version = %s WHERE id = 1",
        (
            min_keys.get("data", 0),
            min_keys.get("integrity", 0),
            min_keys.get("blind_index", 0),
            min_field_version,
        ),
    )


async def destroy_key(database: Database, key_id: int) -> bool:
    """Drop the wrapped copy of a retired key for good (the row stays: ids are never
    reused, and the nonce leases of the key stay on record)."""
    changed = await database.execute(
        "UPDATE vault_keys SET state = 'destroyed', wrapped = NULL, destroyed_at = NOW(6) "
        "WHERE key_id = %s AND state = 'retired'",
        (key_id,),
    )
    return changed == 1


# ---------------------------------------------------------------------------- rewrap runs


@dataclass(frozen=True)
class RewrapRun:
    run_id: str
    state: str
    reindex: bool
    batch_rows: int
    rows_per_second: int
    lease_seconds: float
    started_by: str
    started_at: datetime | None
    finished_at: datetime | None
    blind_index_key: int | None


_RUN = (
    "SELECT run_id, state, reindex, batch_rows, rows_per_second, lease_seconds, started_by, "
    "started_at, finished_at, blind_index_key FROM rewrap_runs"
)


def _run(r: Sequence[Any]) -> RewrapRun:
    return RewrapRun(
        str(r[0]),
        str(r[1]),
        bool(r[2]),
        int(r[3]),
        int(r[4]),
        float(r[5]),
        str(r[6]),
        _utc(r[7]),
        _utc(r[8]),
        None if r[9] is None else int(r[9]),
    )


async def start_run(
    database: Database,
    reindex: bool,
    batch_rows: int,
    rows_per_second: int,
    lease_seconds: float,
    started_by: str,
    blind_index_key: int | None,
) -> str | None:
    """A new running rewrap, or None if one is running already (one at a time)."""
    run_id = str(uuid.uuid4())
    try:
        await database.execute(
            "INSERT INTO rewrap_runs (run_id, state, running, reindex, batch_rows, "
            "rows_per_second, lease_seconds, started_by, blind_index_key) "
            "VALUES (%s, 'running', 1, %s, %s, %s, %s, %s, %s)",
            (
                run_id,
                reindex,
                batch_rows,
                rows_per_second,
                lease_seconds,
                started_by,
                blind_index_key,
            ),
        )
    except Exception as exc:
        if db.is_duplicate_key(exc):
            return None
        raise
    return run_id


async def current_run(database: Database) -> RewrapRun | None:
    row = await database.fetchone(_RUN + " WHERE running = 1")
    return None if row is None else _run(row)


async def latest_run(database: Database, state: str | None = None) -> RewrapRun | None:
    where, args = (" WHERE state = %s", (state,)) if state else ("", ())
    row = await database.fetchone(_RUN + where + " ORDER BY started_at DESC LIMIT 1", args)
    return None if row is None else _run(row)


async def last_complete_run(database: Database, *, reindex: bool = False) -> RewrapRun | None:
    """The most recent complete run (that recomputed the blind indexes, if `reindex`)."""
    sql = _RUN + " WHERE state = 'complete'" + (" AND reindex = 1" if reindex else "")
    row = await database.fetchone(sql + " ORDER BY started_at DESC LIMIT 1")
    return None if row is None else _run(row)


async def finish_run(database: Database, run_id: str, state: str) -> bool:
    changed = await database.execute(
        "UPDATE rewrap_runs SET state = %s, running = NULL, finished_at = NOW(6) "
        "WHERE run_id = %s AND state = 'running'",
        (state, run_id),
    )
    return changed == 1


async def run_state(database: Database, run_id: str) -> str | None:
    """The state of rewrap run `run_id` (None: there is no such run)."""
    row = await database.fetchone("SELECT state FROM rewrap_runs WHERE run_id = %s", (run_id,))
    return None if row is None else str(row[0])


async def save_reports(
    database: Database, run_id: str, service: str, reports: Sequence[tuple[str, str, bool]]
) -> None:
    """Each (table, report JSON, done) of one service for one run."""
    async for attempt in database.transactions():
        async with attempt as conn:
            for table, report, done in reports:
                await db.execute(
                    conn,
                    "INSERT INTO rewrap_tables (run_id, service, table_name, report, done) "
                    "VALUES (%s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE report = VALUES(report), "
                    "done = VALUES(done)",
                    (run_id, service, table, report, done),
                )


async def mark_service_done(database: Database, run_id: str, service: str, failures: str) -> None:
    await database.execute(
        "INSERT INTO rewrap_services (run_id, service, failures) VALUES (%s, %s, %s) "
        "ON DUPLICATE KEY UPDATE failures = VALUES(failures)",
        (run_id, service, failures),
    )


async def services_done(database: Database, run_id: str) -> dict[str, str]:
    """Service -> its failures (JSON) for the services that finished `run_id`."""
    rows = await database.fetchall(
        "SELECT service, failures FROM rewrap_services WHERE run_id = %s", (run_id,)
    )
    return {str(r[0]): str(r[1]) for r in rows}


async def reports(database: Database, run_id: str) -> list[tuple[str, str, str, datetime | None]]:
    """(service, table, report JSON, updated_at) of every table of `run_id`."""
    rows = await database.fetchall(
        "SELECT service, table_name, report, updated_at FROM rewrap_tables WHERE run_id = %s "
        "ORDER BY service, table_name",
        (run_id,),
    )
    return [(str(r[0]), str(r[1]), str(r[2]), _utc(r[3])) for r in rows]


# ---------------------------------------------------------------------------- ceremonies


@dataclass(frozen=True)
class Ceremony:
    ceremony_id: str
    kind: str
    state: str
    threshold: int
    shares: int
    recipient_public_key: str
    coordinator: str
    coordinator_key: str
    started_by: str
    progress: int
    sealed_shares: list[str]
    shares_digest: bytes | None
    started_at: datetime | None


_CEREMONY = (
    "SELECT ceremony_id, kind, state, threshold, shares, recipient_public_key, coordinator, "
    "coordinator_key, started_by, progress, sealed_shares, shares_digest, started_at "
    "FROM vault_ceremonies"
)


def _ceremony(r: Sequence[Any]) -> Ceremony:
    return Ceremony(
        str(r[0]),
        str(r[1]),
        str(r[2]),
        int(r[3]),
        int(r[4]),
        str(r[5]),
        str(r[6]),
        str(r[7]),
        str(r[8]),
        int(r[9]),
        list(json.loads(r[10])) if r[10] else [],
        None if r[11] is None else bytes(r[11]),
        _utc(r[12]),
    )


async def start_ceremony(
    database: Database,
    kind: str,
    threshold: int,
    shares: int,
    recipient_public_key: str,
    coordinator: str,
    coordinator_key: str,
    started_by: str,
) -> str | None:
    """A new pending ceremony, or None while another one is pending."""
    ceremony_id = str(uuid.uuid4())
    try:
        await database.execute(
            "INSERT INTO vault_ceremonies (ceremony_id, kind, state, pending, threshold, shares, "
            "recipient_public_key, coordinator, coordinator_key, started_by) "
            "VALUES (%s, %s, 'collecting', 1, %s, %s, %s, %s, %s, %s)",
            (
                ceremony_id,
                kind,
                threshold,
                shares,
                recipient_public_key,
                coordinator,
                coordinator_key,
                started_by,
            ),
        )
    except Exception as exc:
        if db.is_duplicate_key(exc):
            return None
        raise
    return ceremony_id


async def pending_ceremony(database: Any) -> Ceremony | None:
    row = await db.fetchone(database, _CEREMONY + " WHERE pending = 1")
    return None if row is None else _ceremony(row)


async def latest_ceremony(database: Database) -> Ceremony | None:
    row = await database.fetchone(_CEREMONY + " ORDER BY started_at DESC LIMIT 1")
    return None if row is None else _ceremony(row)


async def get_ceremony(conn: Sql, ceremony_id: str, *, lock: bool = False) -> Ceremony | None:
    sql = _CEREMONY + " WHERE ceremony_id = %s" + (" FOR UPDATE" if lock else "")
    row = await db.fetchone(conn, sql, (ceremony_id,))
    return None if row is None else _ceremony(row)


async def ceremony_progress(database: Database, ceremony_id: str, progress: int) -> None:
    await database.execute(
        "UPDATE vault_ceremonies SET progress = %s WHERE ceremony_id = %s AND state = 'collecting'",
        (progress, ceremony_id),
    )


async def prepare_ceremony(
    database: Database, ceremony_id: str, sealed_shares: list[str], digest: bytes
) -> bool:
    changed = await database.execute(
        "UPDATE vault_ceremonies SET state = 'prepared', sealed_shares = %s, shares_digest = %s "
        "WHERE ceremony_id = %s AND state = 'collecting'",
        (json.dumps(sealed_shares), digest, ceremony_id),
    )
    return changed == 1


async def end_ceremony(conn: Sql, ceremony_id: str, state: str) -> bool:
    """Committed or cancelled: the sealed new shares and their digest are dropped."""
    changed = await db.execute(
        conn,
        "UPDATE vault_ceremonies SET state = %s, pending = NULL, sealed_shares = NULL, "
        "shares_digest = NULL, finished_at = NOW(6) WHERE ceremony_id = %s "
        "AND state IN ('collecting', 'prepared')",
        (state, ceremony_id),
    )
    return changed == 1


async def replace_root(
    conn: Sql,
    meta: VaultMeta,
    rewrapped: Sequence[tuple[int, bytes]],
) -> None:
    """The new share secret's metadata (and, for a root rotation, every key rewrapped),
    in the caller's transaction (which holds the metadata row)."""
    for key_id, wrapped in rewrapped:
        await db.execute(
            conn, "UPDATE vault_keys SET wrapped = %s WHERE key_id = %s", (wrapped, key_id)
        )
    await db.execute(
        conn,
        "UPDATE vault_meta SET threshold = %s, shares = %s, set_id = %s, check_value = %s, "
        "wrapped_root = %s, generation = %s WHERE id = 1",
        (
            meta.threshold,
            meta.shares,
            meta.set_id,
            meta.check_value,
            meta.wrapped_root,
            meta.generation,
        ),
    )


# ---------------------------------------------------------------------------- export sessions


async def open_export_session(
    database: Database,
    job_id: str,
    requested_by: str,
    approved_by: str,
    group_id: str | None,
    opened_at: datetime,
    expires_at: datetime,
) -> None:
    """The job's export session, stored once (a second open keeps the first). Times are
    naive UTC."""
    await database.execute(
        "INSERT IGNORE INTO export_sessions (job_id, requested_by, approved_by, group_id, "
        "opened_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s)",
        (job_id, requested_by, approved_by, group_id, opened_at, expires_at),
    )


async def lock_export_session(conn: Sql, job_id: str) -> tuple[str | None, str, datetime] | None:
    """The job's session, locked for this transaction: (group id, floor, expires at,
    aware UTC), or None when no session was opened for it."""
    row = await db.fetchone(
        conn,
        "SELECT group_id, floor, expires_at FROM export_sessions WHERE job_id = %s FOR UPDATE",
        (job_id,),
    )
    if row is None:
        return None
    return row[0], str(row[1]), row[2].replace(tzinfo=UTC)


async def move_export_floor(conn: Sql, job_id: str, floor: str) -> None:
    await db.execute(
        conn, "UPDATE export_sessions SET floor = %s WHERE job_id = %s", (floor, job_id)
    )
