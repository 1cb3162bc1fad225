"""SQL of the audit service: the chain, its head and its checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contracts.audit import AuditAgent, AuditEvent, AuditQuery, StoredAuditEvent
from contracts.base import Role
from mesh import db
from mesh.db import Connection, Database, Sql

COLUMNS = (
    "seq, event_id, type, action, outcome, recorded, account_id, role, address, source, "
    "patient_id, entity_type, entity_id, purpose_of_use, detail, trace_id, prev_hash, hash, "
    "publisher"
)
SORTABLE = {"seq", "recorded", "account_id", "patient_id", "action", "outcome", "type"}


def _event(row: tuple[Any, ...], patients: Sequence[str] = ()) -> AuditEvent:
    return AuditEvent(
        event_id=row[1],
        type=row[2],
        action=row[3],
        outcome=row[4],
        recorded=row[5].replace(tzinfo=UTC),
        agent=AuditAgent(account_id=row[6], role=Role(row[7]) if row[7] else None, address=row[8]),
        source=row[9],
        patient_id=row[10],
        patients=list(patients),
        entity_type=row[11],
        entity_id=row[12],
        purpose_of_use=row[13],
        detail=row[14],
        trace_id=row[15],
    )


def stored(row: tuple[Any, ...], patients: Sequence[str] = ()) -> StoredAuditEvent:
    return StoredAuditEvent(seq=int(row[0]), event=_event(row, patients), publisher=row[18])


async def patients_of(target: Any, seqs: Sequence[int]) -> dict[int, list[str]]:
    """The patients of the entries that name several, by seq (in the order chained)."""
    if not seqs:
        return {}
    marks = ", ".join(["%s"] * len(seqs))
    rows = await db.fetchall(
        target,
        f"SELECT seq, patient_id FROM audit_patients WHERE seq IN ({marks}) "  # noqa: S608
        "ORDER BY seq, patient_id",
        list(seqs),
    )
    found: dict[int, list[str]] = {}
    for seq, patient_id in rows:
        found.setdefault(int(seq), []).append(str(patient_id))
    return found


async def with_patients(target: Any, rows: Sequence[tuple[Any, ...]]) -> list[StoredAuditEvent]:
    patients = await patients_of(target, [int(r[0]) for r in rows])
    return [stored(r, patients.get(int(r[0]), ())) for r in rows]


async def existing(conn: Sql, event_ids: Sequence[str]) -> set[str]:
    """Which of these events are in the chain already (a redelivery)."""
    if not event_ids:
        return set()
    marks = ", ".join(["%s"] * len(event_ids))
    rows = await db.fetchall(
        conn,
        f"SELECT event_id FROM audit_log WHERE event_id IN ({marks})",  # noqa: S608
        list(event_ids),
    )
    return {str(r[0]) for r in rows}


async def head_seq(conn: Sql) -> int:
    """The head's seq, read in `conn` (0 when there is no head row)."""
    row = await db.fetchone(conn, "SELECT seq FROM audit_head WHERE id = 1")
    return int(row[0]) if row else 0


async def lock_head(conn: Sql) -> tuple[int, bytes]:
    row = await db.fetchone(conn, "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
    assert row is not None
    return int(row[0]), bytes(row[1])


@dataclass(frozen=True)
class Entry:
    seq: int
    event: AuditEvent
    prev_hash: bytes
    hash: bytes
    publisher: str | None


def _values(entry: Entry) -> tuple[Any, ...]:
    event, agent = entry.event, entry.event.agent
    return (
        entry.seq,
        event.event_id,
        event.type,
        event.action.value,
        event.outcome.value,
        event.recorded.astimezone(UTC).replace(tzinfo=None),
        agent.account_id,
        agent.role.value if agent.role else None,
        agent.address,
        event.source,
        event.patient_id,
        event.entity_type,
        event.entity_id,
        event.purpose_of_use,
        event.detail,
        event.trace_id,
        entry.prev_hash,
        entry.hash,
        entry.publisher,
    )


async def append_many(conn: Connection, entries: Sequence[Entry]) -> None:
    """Append entries (consecutive seqs after the locked head) and move the head once."""
    if not entries:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            f"INSERT INTO audit_log ({COLUMNS}) VALUES "  # noqa: S608
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [_values(e) for e in entries],
        )
        named = [(p, e.seq) for e in entries for p in e.event.patients]
        if named:
            await cur.executemany(
                "INSERT INTO audit_patients (patient_id, seq) VALUES (%s, %s)", named
            )
    last = entries[-1]
    await db.execute(
        conn, "UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1", (last.seq, last.hash)
    )


async def quarantine(conn: Sql, event: AuditEvent, publisher: str | None, reason: str) -> bool:
    """Keep an event apart from the chain (once); True if it was not kept before."""
    return (
        await db.execute(
            conn,
            "INSERT IGNORE INTO audit_quarantine (event_id, publisher, reason, payload) "
            "VALUES (%s, %s, %s, %s)",
            (event.event_id, publisher, reason[:300], event.model_dump_json()),
        )
        > 0
    )


async def head(database: Database) -> tuple[int, bytes]:
    row = await database.fetchone("SELECT seq, hash FROM audit_head WHERE id = 1")
    assert row is not None
    return int(row[0]), bytes(row[1])


async def last_checkpoint_seq(database: Database) -> int:
    row = await database.fetchone("SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints")
    return int(row[0]) if row else 0


async def add_checkpoint(database: Database, seq: int, hash: bytes, mac: str) -> None:
    await database.execute(
        "INSERT IGNORE INTO audit_checkpoints (seq, hash, mac) VALUES (%s, %s, %s)",
        (seq, hash, mac),
    )


async def checkpoints(database: Database) -> list[tuple[int, bytes, str]]:
    rows = await database.fetchall("SELECT seq, hash, mac FROM audit_checkpoints ORDER BY seq")
    return [(int(r[0]), bytes(r[1]), str(r[2])) for r in rows]


@dataclass(frozen=True)
class Link:
    """One stored entry of the chain, with the hashes stored beside it."""

    entry: StoredAuditEvent
    prev_hash: bytes
    hash: bytes


async def chain(database: Database, after_seq: int, limit: int) -> list[Link]:
    """A page of the chain after `after_seq`, in order."""
    sql = f"SELECT {COLUMNS} FROM audit_log WHERE seq > %s ORDER BY seq LIMIT %s"  # noqa: S608
    rows = await database.fetchall(sql, (after_seq, limit))
    entries = await with_patients(database, rows)
    return [Link(e, bytes(r[16]), bytes(r[17])) for e, r in zip(entries, rows, strict=True)]


async def entry_beyond_head(database: Database) -> int | None:
    """The seq of a committed entry just past the committed head, if there is one. One
    statement, so the head and the entry are read from one snapshot: read one after the
    other, an append committing in between (its entries and the head move together) looks
    like an entry inserted beyond the head."""
    row = await database.fetchone(
        "SELECT l.seq FROM audit_head h JOIN audit_log l ON l.seq = h.seq + 1 WHERE h.id = 1"
    )
    return None if row is None else int(row[0])


async def entry_hash_at(database: Database, seq: int) -> bytes | None:
    row = await database.fetchone("SELECT hash FROM audit_log WHERE seq = %s", (seq,))
    return None if row is None else bytes(row[0])


# ---------------------------------------------------------------------------- verification


async def last_mark(database: Database) -> tuple[int, bytes, str] | None:
    row = await database.fetchone(
        "SELECT seq, hash, mac FROM audit_verified ORDER BY seq DESC LIMIT 1"
    )
    return None if row is None else (int(row[0]), bytes(row[1]), str(row[2]))


async def add_mark(database: Database, seq: int, hash: bytes, mac: str) -> None:
    await database.execute(
        "INSERT IGNORE INTO audit_verified (seq, hash, mac) VALUES (%s, %s, %s)",
        (seq, hash, mac),
    )


WALK_COLUMNS = (
    "walk_id, state, total, checked, cursor_seq, cursor_hash, started_by, started_at, "
    "finished_at, first_bad_seq, problem"
)


async def latest_walk(database: Database) -> tuple[Any, ...] | None:
    return await database.fetchone(
        f"SELECT {WALK_COLUMNS} FROM audit_full_walks ORDER BY walk_id DESC LIMIT 1"  # noqa: S608
    )


async def start_walk(conn: Connection, total: int, started_by: str | None) -> int:
    async with conn.cursor() as cur:
        await cur.execute(
            "INSERT INTO audit_full_walks (state, total, cursor_hash, started_by) "
            "VALUES ('running', %s, %s, %s)",
            (total, bytes(32), started_by),
        )
        return int(cur.lastrowid)


async def get_walk(conn: Sql, walk_id: int) -> tuple[Any, ...] | None:
    return await db.fetchone(
        conn,
        f"SELECT {WALK_COLUMNS} FROM audit_full_walks WHERE walk_id = %s",  # noqa: S608
        (walk_id,),
    )


async def running_walk(conn: Sql) -> tuple[Any, ...] | None:
    return await db.fetchone(
        conn,
        f"SELECT {WALK_COLUMNS} FROM audit_full_walks WHERE state = 'running' "  # noqa: S608
        "ORDER BY walk_id LIMIT 1 FOR UPDATE",
    )


async def claimable_walk(
    conn: Sql, walker: str, now: datetime
) -> tuple[int, int, bytes, int] | None:
    """A running walk that `walker` holds, or nobody holds, or whose lease lapsed before
    `now`, locked (rows another transaction has locked are skipped): (walk id, cursor seq,
    cursor hash, checked)."""
    row = await db.fetchone(
        conn,
        "SELECT walk_id, cursor_seq, cursor_hash, checked FROM audit_full_walks "
        "WHERE state = 'running' AND (walker = %s OR walker IS NULL OR lease_until < %s) "
        "ORDER BY walk_id LIMIT 1 FOR UPDATE SKIP LOCKED",
        (walker, now),
    )
    return None if row is None else (int(row[0]), int(row[1]), bytes(row[2]), int(row[3]))


async def lease_walk(conn: Sql, walk_id: int, walker: str, until: datetime) -> None:
    await db.execute(
        conn,
        "UPDATE audit_full_walks SET walker = %s, lease_until = %s WHERE walk_id = %s",
        (walker, until, walk_id),
    )


async def walk_progress(
    database: Database, walk_id: int, checked: int, cursor_seq: int, cursor_hash: bytes
) -> None:
    await database.execute(
        "UPDATE audit_full_walks SET checked = %s, cursor_seq = %s, cursor_hash = %s "
        "WHERE walk_id = %s",
        (checked, cursor_seq, cursor_hash, walk_id),
    )


async def finish_walk(
    database: Database, walk_id: int, checked: int, bad_seq: int | None, problem: str | None
) -> None:
    await database.execute(
        "UPDATE audit_full_walks SET state = %s, checked = %s, finished_at = NOW(6), "
        "first_bad_seq = %s, problem = %s WHERE walk_id = %s",
        ("failed" if problem else "passed", checked, bad_seq, problem, walk_id),
    )


OF_PATIENT = (
    " JOIN (SELECT seq FROM audit_log WHERE patient_id = %s"
    " UNION SELECT seq FROM audit_patients WHERE patient_id = %s) AS of_patient USING (seq)"
)
"""A patient's entries: those naming them first (index `by_patient`) and those naming them
among several (`audit_patients`' primary key), as one small set joined by seq; an `OR`
of the two would make MariaDB walk the whole log."""


def _where(query: AuditQuery) -> tuple[str, list[Any]]:
    """The FROM clause's joins and the WHERE clause for `query`, with their arguments."""
    joins, clauses = "", []
    args: list[Any] = []
    if query.patient_id is not None:
        joins = OF_PATIENT
        args += [query.patient_id, query.patient_id]
    for column, value in (
        ("account_id", query.account_id),
        ("action", query.action.value if query.action else None),
        ("outcome", query.outcome.value if query.outcome else None),
        ("type", query.type),
    ):
        if value is not None:
            clauses.append(f"{column} = %s")
            args.append(value)
    if query.recorded_from is not None:
        clauses.append("recorded >= %s")
        args.append(query.recorded_from.astimezone(UTC).replace(tzinfo=None))
    if query.recorded_to is not None:
        clauses.append("recorded < %s")
        args.append(query.recorded_to.astimezone(UTC).replace(tzinfo=None))
    return joins + ((" WHERE " + " AND ".join(clauses)) if clauses else ""), args


async def search(database: Database, query: AuditQuery) -> tuple[list[StoredAuditEvent], int]:
    """A page of entries matching `query`, and how many match in all (unfiltered: the
    chain's head, as seqs run from 1 without gaps; no COUNT over the whole log)."""
    where, args = _where(query)
    sort = query.sort.value
    assert sort in SORTABLE  # an enum from the contract, never user text
    direction = "DESC" if query.descending else "ASC"
    order = f"{sort} {direction}, seq {direction}"
    sql = f"SELECT {COLUMNS} FROM audit_log{where} ORDER BY {order} LIMIT %s OFFSET %s"  # noqa: S608
    rows = await database.fetchall(sql, (*args, query.limit, query.offset))
    if where:
        total = await database.fetchone(f"SELECT COUNT(*) FROM audit_log{where}", args)  # noqa: S608
    else:
        total = await database.fetchone("SELECT seq FROM audit_head WHERE id = 1")
    return await with_patients(database, rows), int(total[0]) if total else 0
