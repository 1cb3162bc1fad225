"""SQL of the audit service: the chain, its head and its checkpoints."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from contracts.audit import AuditAgent, AuditEvent, AuditQuery, StoredAuditEvent
from contracts.base import Role
from mesh import db
from mesh.db import Database

COLUMNS = (
    "seq, event_id, type, action, outcome, recorded, account_id, role, address, source, "
    "patient_id, entity_type, entity_id, purpose_of_use, detail, trace_id, prev_hash, hash"
)
SORTABLE = {"seq", "recorded", "account_id", "patient_id", "action", "outcome", "type"}


def _event(row: tuple[Any, ...]) -> AuditEvent:
    return AuditEvent(
        event_id=row[1],
        type=row[2],
        action=row[3],
        outcome=row[4],
        recorded=row[5].replace(tzinfo=UTC),
        agent=AuditAgent(account_id=row[6], role=Role(row[7]) if row[7] else None, address=row[8]),
        source=row[9],
        patient_id=row[10],
        entity_type=row[11],
        entity_id=row[12],
        purpose_of_use=row[13],
        detail=row[14],
        trace_id=row[15],
    )


def stored(row: tuple[Any, ...]) -> StoredAuditEvent:
    return StoredAuditEvent(seq=int(row[0]), event=_event(row))


async def exists(conn: Any, event_id: str) -> bool:
    return (
        await db.fetchone(conn, "SELECT 1 FROM audit_log WHERE event_id = %s", (event_id,))
        is not None
    )


async def lock_head(conn: Any) -> tuple[int, bytes]:
    row = await db.fetchone(conn, "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
    assert row is not None
    return int(row[0]), bytes(row[1])


async def append(conn: Any, seq: int, event: AuditEvent, prev_hash: bytes, hash: bytes) -> None:
    agent = event.agent
    await db.execute(
        conn,
        f"INSERT INTO audit_log ({COLUMNS}) VALUES "  # noqa: S608
        "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            seq,
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
            prev_hash,
            hash,
        ),
    )
    await db.execute(conn, "UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1", (seq, hash))


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


async def chain(database: Database, after_seq: int, limit: int) -> list[tuple[Any, ...]]:
    sql = f"SELECT {COLUMNS} FROM audit_log WHERE seq > %s ORDER BY seq LIMIT %s"  # noqa: S608
    return await database.fetchall(sql, (after_seq, limit))


def _where(query: AuditQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("account_id", query.account_id),
        ("patient_id", query.patient_id),
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
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


async def search(database: Database, query: AuditQuery) -> tuple[list[StoredAuditEvent], int]:
    """A page of entries matching `query`, and how many match in all."""
    where, args = _where(query)
    sort = query.sort.value
    assert sort in SORTABLE  # an enum from the contract, never user text
    direction = "DESC" if query.descending else "ASC"
    order = f"{sort} {direction}, seq {direction}"
    sql = f"SELECT {COLUMNS} FROM audit_log{where} ORDER BY {order} LIMIT %s OFFSET %s"  # noqa: S608
    rows = await database.fetchall(sql, (*args, query.limit, query.offset))
    total = await database.fetchone(f"SELECT COUNT(*) FROM audit_log{where}", args)  # noqa: S608
    return [stored(r) for r in rows], int(total[0]) if total else 0
