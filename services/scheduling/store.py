"""SQL of the scheduling service: physicians, working hours, days off, appointments.

Times go in as naive UTC DATETIMEs and come out as aware UTC datetimes. `target` is
either the service's `Database` (autocommit reads) or a transaction's connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from mesh import db

OCCUPYING = ("booked", "completed", "no_show")
"""Statuses that hold their time: only a cancelled appointment frees it."""

APPOINTMENT_COLUMNS = (
    "appointment_id, physician_id, patient_id, start_at, end_at, status, reason_enc, "
    "cancel_reason_enc, booked_by, updated_by, created_at, updated_at"
)


@dataclass(frozen=True)
class AppointmentRow:
    appointment_id: str
    physician_id: str
    patient_id: str
    start: datetime
    end: datetime
    status: str
    reason_enc: str
    cancel_reason_enc: str | None
    booked_by: str
    updated_by: str
    created_at: datetime
    updated_at: datetime


def _naive(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(tzinfo=None)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def _row(r: Sequence[Any]) -> AppointmentRow:
    return AppointmentRow(
        str(r[0]),
        str(r[1]),
        str(r[2]),
        _aware(r[3]),
        _aware(r[4]),
        str(r[5]),
        str(r[6]),
        None if r[7] is None else str(r[7]),
        str(r[8]),
        str(r[9]),
        _aware(r[10]),
        _aware(r[11]),
    )


# ---------------------------------------------------------------- physicians and locking


async def create_physician(conn: Any, physician_id: str) -> None:
    """Make sure the physician's row exists, and lock it.

    ON DUPLICATE KEY UPDATE takes an exclusive lock on an existing row; INSERT IGNORE
    would take a shared one, and two waiters upgrading theirs would deadlock.
    """
    await db.execute(
        conn,
        "INSERT INTO physicians (physician_id) VALUES (%s) "
        "ON DUPLICATE KEY UPDATE physician_id = physician_id",
        (physician_id,),
    )


async def lock_physician(conn: Any, physician_id: str) -> int | None:
    """Lock the physician's row until the transaction ends; its version, None if absent."""
    row = await db.fetchone(
        conn, "SELECT version FROM physicians WHERE physician_id = %s FOR UPDATE", (physician_id,)
    )
    return None if row is None else int(row[0])


async def snapshot_version(conn: Any, physician_id: str) -> int | None:
    """The version as this transaction's consistent snapshot sees it (a plain read)."""
    row = await db.fetchone(
        conn, "SELECT version FROM physicians WHERE physician_id = %s", (physician_id,)
    )
    return None if row is None else int(row[0])


@dataclass(frozen=True)
class DayPlan:
    """A physician's day as this transaction's snapshot sees it (one plain read)."""

    version: int
    periods: list[tuple[int, int]]
    off: bool


async def day_plan(conn: Any, physician_id: str, day: date) -> DayPlan | None:
    """The calendar's version, that weekday's working periods and whether `day` is off."""
    rows = await db.fetchall(
        conn,
        "SELECT p.version, w.start_minute, w.end_minute, EXISTS (SELECT 1 FROM days_off d "
        "WHERE d.physician_id = p.physician_id AND d.day = %s) FROM physicians p "
        "LEFT JOIN working_hours w ON w.physician_id = p.physician_id AND w.weekday = %s "
        "WHERE p.physician_id = %s ORDER BY w.start_minute",
        (day, day.weekday(), physician_id),
    )
    if not rows:
        return None
    periods = [(int(r[1]), int(r[2])) for r in rows if r[1] is not None]
    return DayPlan(int(rows[0][0]), periods, bool(rows[0][3]))


async def bump_version(conn: Any, physician_id: str) -> None:
    await db.execute(
        conn,
        "UPDATE physicians SET version = version + 1, updated_at = NOW(6) WHERE physician_id = %s",
        (physician_id,),
    )


async def has_calendar(target: Any, physician_id: str) -> bool:
    row = await db.fetchone(
        target, "SELECT 1 FROM physicians WHERE physician_id = %s", (physician_id,)
    )
    return row is not None


# ---------------------------------------------------------------- availability


async def weekly_hours(target: Any, physician_id: str) -> dict[int, list[tuple[int, int]]]:
    rows = await db.fetchall(
        target,
        "SELECT weekday, start_minute, end_minute FROM working_hours "
        "WHERE physician_id = %s ORDER BY weekday, start_minute",
        (physician_id,),
    )
    weekly: dict[int, list[tuple[int, int]]] = {}
    for weekday, start, end in rows:
        weekly.setdefault(int(weekday), []).append((int(start), int(end)))
    return weekly


async def replace_weekly_hours(
    conn: Any, physician_id: str, periods: Iterable[tuple[int, int, int]]
) -> None:
    """Replace every working period: (weekday, start minute, end minute)."""
    await db.execute(conn, "DELETE FROM working_hours WHERE physician_id = %s", (physician_id,))
    for weekday, start, end in periods:
        await db.execute(
            conn,
            "INSERT INTO working_hours (physician_id, weekday, start_minute, end_minute) "
            "VALUES (%s, %s, %s, %s)",
            (physician_id, weekday, start, end),
        )


async def days_off(target: Any, physician_id: str, first: date, last: date) -> set[date]:
    rows = await db.fetchall(
        target,
        "SELECT day FROM days_off WHERE physician_id = %s AND day BETWEEN %s AND %s",
        (physician_id, first, last),
    )
    return {r[0] for r in rows}


async def days_off_from(target: Any, physician_id: str, first: date) -> list[date]:
    rows = await db.fetchall(
        target,
        "SELECT day FROM days_off WHERE physician_id = %s AND day >= %s ORDER BY day",
        (physician_id, first),
    )
    return [r[0] for r in rows]


async def change_days_off(
    conn: Any, physician_id: str, add: Iterable[date], remove: Iterable[date]
) -> None:
    for day in add:
        await db.execute(
            conn,
            "INSERT IGNORE INTO days_off (physician_id, day) VALUES (%s, %s)",
            (physician_id, day),
        )
    for day in remove:
        await db.execute(
            conn, "DELETE FROM days_off WHERE physician_id = %s AND day = %s", (physician_id, day)
        )


# ---------------------------------------------------------------- appointments


async def first_overlap(
    conn: Any,
    physician_id: str,
    start: datetime,
    end: datetime,
    longest: timedelta,
    exclude_id: str | None = None,
) -> AppointmentRow | None:
    """The earliest appointment holding time that overlaps [start, end).

    `longest` (the longest possible appointment) bounds the index range scanned.
    """
    row = await db.fetchone(
        conn,
        f"SELECT {APPOINTMENT_COLUMNS} FROM appointments "  # noqa: S608 - constant columns
        "WHERE physician_id = %s AND start_at < %s AND start_at > %s AND end_at > %s "
        "AND status IN %s AND appointment_id <> %s ORDER BY start_at LIMIT 1",
        (
            physician_id,
            _naive(end),
            _naive(start - longest),
            _naive(start),
            OCCUPYING,
            exclude_id or "",
        ),
    )
    return None if row is None else _row(row)


async def insert_appointment(conn: Any, a: AppointmentRow) -> None:
    await db.execute(
        conn,
        f"INSERT INTO appointments ({APPOINTMENT_COLUMNS}) "  # noqa: S608 - constant columns
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            a.appointment_id,
            a.physician_id,
            a.patient_id,
            _naive(a.start),
            _naive(a.end),
            a.status,
            a.reason_enc,
            a.cancel_reason_enc,
            a.booked_by,
            a.updated_by,
            _naive(a.created_at),
            _naive(a.updated_at),
        ),
    )


async def get_appointment(
    target: Any, appointment_id: str, *, lock: bool = False
) -> AppointmentRow | None:
    sql = f"SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE appointment_id = %s"  # noqa: S608
    row = await db.fetchone(target, sql + (" FOR UPDATE" if lock else ""), (appointment_id,))
    return None if row is None else _row(row)


async def move(
    conn: Any, appointment_id: str, start: datetime, end: datetime, by: str, now: datetime
) -> None:
    await db.execute(
        conn,
        "UPDATE appointments SET start_at = %s, end_at = %s, updated_by = %s, updated_at = %s "
        "WHERE appointment_id = %s",
        (_naive(start), _naive(end), by, _naive(now), appointment_id),
    )


async def set_status(
    conn: Any,
    appointment_id: str,
    status: str,
    by: str,
    now: datetime,
    cancel_reason_enc: str | None = None,
) -> None:
    await db.execute(
        conn,
        "UPDATE appointments SET status = %s, cancel_reason_enc = COALESCE(%s, "
        "cancel_reason_enc), updated_by = %s, updated_at = %s WHERE appointment_id = %s",
        (status, cancel_reason_enc, by, _naive(now), appointment_id),
    )


async def appointments_between(
    target: Any,
    physician_id: str,
    start: datetime,
    end: datetime,
    longest: timedelta,
    *,
    include_cancelled: bool,
) -> list[AppointmentRow]:
    """Appointments of the physician overlapping [start, end), in time order."""
    statuses = (*OCCUPYING, "cancelled") if include_cancelled else OCCUPYING
    rows = await db.fetchall(
        target,
        f"SELECT {APPOINTMENT_COLUMNS} FROM appointments "  # noqa: S608 - constant columns
        "WHERE physician_id = %s AND start_at < %s AND start_at > %s AND end_at > %s "
        "AND status IN %s ORDER BY start_at, appointment_id",
        (physician_id, _naive(end), _naive(start - longest), _naive(start), statuses),
    )
    return [_row(r) for r in rows]


async def booked_from(target: Any, physician_id: str, not_before: datetime) -> list[AppointmentRow]:
    """Booked appointments of the physician that start at or after `not_before`."""
    rows = await db.fetchall(
        target,
        f"SELECT {APPOINTMENT_COLUMNS} FROM appointments "  # noqa: S608 - constant columns
        "WHERE physician_id = %s AND start_at >= %s AND status = 'booked' ORDER BY start_at",
        (physician_id, _naive(not_before)),
    )
    return [_row(r) for r in rows]


async def has_care_window(
    target: Any,
    physician_id: str,
    patient_id: str,
    now: datetime,
    before_days: float,
    after_days: float,
) -> bool:
    """A not-cancelled appointment whose care window [start - before, start + after]
    contains `now`."""
    row = await db.fetchone(
        target,
        "SELECT 1 FROM appointments WHERE physician_id = %s AND patient_id = %s "
        "AND status <> 'cancelled' AND start_at <= %s AND start_at >= %s LIMIT 1",
        (
            physician_id,
            patient_id,
            _naive(now + timedelta(days=before_days)),
            _naive(now - timedelta(days=after_days)),
        ),
    )
    return row is not None
