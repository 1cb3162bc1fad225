"""Care relationships recorded in records (encounters, break-glass grants), and the
break-glass grants themselves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mesh import db
from mesh.db import Sql
from services.records.store.common import aware, naive, opt_str


async def recorded_encounter(target: Any, patient_id: str, physician_id: str) -> bool:
    """The physician recorded a version of an encounter of the patient."""
    row = await db.fetchone(
        target,
        "SELECT 1 FROM encounter_versions WHERE patient_id = %s AND recorded_by = %s LIMIT 1",
        (patient_id, physician_id),
    )
    return row is not None


async def open_break_glass(target: Any, physician_id: str, patient_id: str, now: datetime) -> bool:
    """The physician holds a break-glass grant for the patient that expires after `now`."""
    row = await db.fetchone(
        target,
        "SELECT 1 FROM break_glass WHERE physician_id = %s AND patient_id = %s "
        "AND expires_at > %s LIMIT 1",
        (physician_id, patient_id, naive(now)),
    )
    return row is not None


@dataclass(frozen=True)
class BreakGlassRow:
    grant_id: str
    patient_id: str
    physician_id: str
    opened_at: datetime
    expires_at: datetime
    reason_enc: str
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    note: str | None


BREAK_GLASS_COLUMNS = (
    "grant_id, patient_id, physician_id, opened_at, expires_at, reason_enc, acknowledged_by, "
    "acknowledged_at, note"
)


def _break_glass(r: Sequence[Any]) -> BreakGlassRow:
    return BreakGlassRow(
        str(r[0]),
        str(r[1]),
        str(r[2]),
        aware(r[3]),
        aware(r[4]),
        str(r[5]),
        opt_str(r[6]),
        aware(r[7]) if r[7] else None,
        opt_str(r[8]),
    )


async def insert_break_glass(
    conn: Sql,
    grant_id: str,
    physician_id: str,
    patient_id: str,
    reason_enc: str,
    opened_at: datetime,
    expires_at: datetime,
) -> None:
    await db.execute(
        conn,
        "INSERT INTO break_glass (grant_id, physician_id, patient_id, reason_enc, opened_at, "
        "expires_at) VALUES (%s, %s, %s, %s, %s, %s)",
        (grant_id, physician_id, patient_id, reason_enc, naive(opened_at), naive(expires_at)),
    )


async def break_glass_grants(
    target: Any, limit: int, *, unacknowledged_only: bool = False
) -> list[BreakGlassRow]:
    """The most recently opened grants first (only those not acknowledged yet, if asked)."""
    where = " WHERE acknowledged_at IS NULL" if unacknowledged_only else ""
    rows = await db.fetchall(
        target,
        f"SELECT {BREAK_GLASS_COLUMNS} FROM break_glass{where} ORDER BY opened_at DESC LIMIT %s",  # noqa: S608
        (limit,),
    )
    return [_break_glass(r) for r in rows]


async def acknowledge_break_glass(
    conn: Sql, grant_id: str, by: str, at: datetime, note: str | None
) -> bool:
    """Record an administrator's review of the grant; False: there is no such grant."""
    changed = await db.execute(
        conn,
        "UPDATE break_glass SET acknowledged_by = %s, acknowledged_at = %s, note = %s "
        "WHERE grant_id = %s",
        (by, naive(at), note, grant_id),
    )
    return bool(changed)


async def break_glass_by_id(target: Any, grant_id: str) -> list[BreakGlassRow]:
    """The grant's row (a list: none when there is no such grant)."""
    sql = f"SELECT {BREAK_GLASS_COLUMNS} FROM break_glass WHERE grant_id = %s"  # noqa: S608
    return [_break_glass(r) for r in await db.fetchall(target, sql, (grant_id,))]
