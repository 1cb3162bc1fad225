"""SQL of the scheduling service: physicians, working hours, breaks, days off, absences,
appointments.

Times go in as naive UTC DATETIMEs and come out as aware UTC datetimes. `target` is
either the service's `Database` (autocommit reads) or a transaction's connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from mesh import db
from mesh.db import Sql
from services.scheduling.timeplan import AbsenceSpan, Plan

OCCUPYING = ("booked", "arrived", "in_progress", "completed", "no_show")
"""Statuses that hold their time: only a cancelled appointment frees it."""

APPOINTMENT_COLUMNS = (
    "appointment_id, physician_id, patient_id, start_at, end_at, status, reason_enc, "
    "cancel_reason_enc, booked_by, updated_by, created_at, updated_at, arrived_at, "
    "started_at, finished_at"
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
    arrived_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


def _naive(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(tzinfo=None)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def _maybe(value: datetime | None) -> datetime | None:
    return None if value is None else _aware(value)


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
        _maybe(r[12]),
        _maybe(r[13]),
        _maybe(r[14]),
    )


# ---------------------------------------------------------------- physicians and locking


async def create_physician(conn: Sql, physician_id: str) -> None:
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


async def lock_physician(conn: Sql, physician_id: str) -> int | None:
    """Lock the physician's row until the transaction ends; its version, None if absent."""
    row = await db.fetchone(
        conn, "SELECT version FROM physicians WHERE physician_id = %s FOR UPDATE", (physician_id,)
    )
    return None if row is None else int(row[0])


async def snapshot_version(conn: Sql, physician_id: str) -> int | None:
    """The version as this transaction's consistent snapshot sees it (a plain read)."""
    row = await db.fetchone(
        conn, "SELECT version FROM physicians WHERE physician_id = %s", (physician_id,)
    )
    return None if row is None else int(row[0])


async def plan(target: Any, physician_id: str, first: date, last: date) -> Plan:
    """The physician's working time that matters from `first` to `last` (local days):
    weekly hours and breaks, the days off among them, the absences that may overlap them
    (a day either side, for absences by time). In a transaction, read after the lock: the
    reads all see the snapshot that the version check vouched for."""
    weekly = await _weekly(target, "working_hours", physician_id)
    breaks = await _weekly(target, "breaks", physician_id)
    off = await days_off(target, physician_id, first, last)
    absences = await absence_rows(
        target,
        physician_id,
        first,
        last,
        datetime.combine(first - timedelta(days=1), datetime.min.time(), UTC),
        datetime.combine(last + timedelta(days=2), datetime.min.time(), UTC),
    )
    return Plan(weekly, breaks, frozenset(off), tuple(r.span for r in absences))


async def bump_version(conn: Sql, physician_id: str) -> None:
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


WEEKLY_TABLES = ("working_hours", "breaks")


async def _weekly(target: Any, table: str, physician_id: str) -> dict[int, list[tuple[int, int]]]:
    assert table in WEEKLY_TABLES
    rows = await db.fetchall(
        target,
        f"SELECT weekday, start_minute, end_minute FROM {table} "  # noqa: S608 - constant
        "WHERE physician_id = %s ORDER BY weekday, start_minute",
        (physician_id,),
    )
    weekly: dict[int, list[tuple[int, int]]] = {}
    for weekday, start, end in rows:
        weekly.setdefault(int(weekday), []).append((int(start), int(end)))
    return weekly


async def weekly_hours(target: Any, physician_id: str) -> dict[int, list[tuple[int, int]]]:
    return await _weekly(target, "working_hours", physician_id)


async def weekly_breaks(target: Any, physician_id: str) -> dict[int, list[tuple[int, int]]]:
    return await _weekly(target, "breaks", physician_id)


async def _replace_weekly(
    conn: Sql, table: str, physician_id: str, periods: Iterable[tuple[int, int, int]]
) -> None:
    assert table in WEEKLY_TABLES
    await db.execute(
        conn,
        f"DELETE FROM {table} WHERE physician_id = %s",  # noqa: S608 - constant table
        (physician_id,),
    )
    for weekday, start, end in periods:
        await db.execute(
            conn,
            f"INSERT INTO {table} (physician_id, weekday, start_minute, end_minute) "  # noqa: S608
            "VALUES (%s, %s, %s, %s)",
            (physician_id, weekday, start, end),
        )


async def replace_weekly_hours(
    conn: Sql, physician_id: str, periods: Iterable[tuple[int, int, int]]
) -> None:
    """Replace every working period: (weekday, start minute, end minute)."""
    await _replace_weekly(conn, "working_hours", physician_id, periods)


async def replace_weekly_breaks(
    conn: Sql, physician_id: str, periods: Iterable[tuple[int, int, int]]
) -> None:
    """Replace every weekly break: (weekday, start minute, end minute)."""
    await _replace_weekly(conn, "breaks", physician_id, periods)


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
    conn: Sql, physician_id: str, add: Iterable[date], remove: Iterable[date]
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


@dataclass(frozen=True)
class AbsenceRow:
    absence_id: str
    kind: str
    span: AbsenceSpan


ABSENCE_COLUMNS = "absence_id, kind, first_day, last_day, start_at, end_at"


def _absence(r: Sequence[Any]) -> AbsenceRow:
    kind = str(r[1])
    return AbsenceRow(str(r[0]), kind, AbsenceSpan(r[2], r[3], _maybe(r[4]), _maybe(r[5]), kind))


async def absence_rows(
    target: Any,
    physician_id: str,
    first: date,
    last: date,
    start: datetime,
    end: datetime,
) -> list[AbsenceRow]:
    rows = await db.fetchall(
        target,
        f"SELECT {ABSENCE_COLUMNS} FROM absences WHERE physician_id = %s AND ("  # noqa: S608
        "(first_day IS NOT NULL AND first_day <= %s AND last_day >= %s) "
        "OR (start_at IS NOT NULL AND start_at < %s AND end_at > %s)) "
        "ORDER BY COALESCE(first_day, DATE(start_at)), start_at, absence_id",
        (physician_id, last, first, _naive(end), _naive(start)),
    )
    return [_absence(r) for r in rows]


async def absences_from(
    target: Any, physician_id: str, today: date, now: datetime
) -> list[AbsenceRow]:
    """Absences that have not ended: whole days up to today or later, times after now."""
    rows = await db.fetchall(
        target,
        f"SELECT {ABSENCE_COLUMNS} FROM absences WHERE physician_id = %s AND ("  # noqa: S608
        "last_day >= %s OR end_at > %s) "
        "ORDER BY COALESCE(first_day, DATE(start_at)), start_at, absence_id",
        (physician_id, today, _naive(now)),
    )
    return [_absence(r) for r in rows]


async def add_absence(
    conn: Sql,
    absence_id: str,
    physician_id: str,
    kind: str,
    span: AbsenceSpan,
    by: str,
    now: datetime,
) -> None:
    await db.execute(
        conn,
        "INSERT INTO absences (absence_id, physician_id, kind, first_day, last_day, start_at, "
        "end_at, created_by, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            absence_id,
            physician_id,
            kind,
            span.first_day,
            span.last_day,
            None if span.start is None else _naive(span.start),
            None if span.end is None else _naive(span.end),
            by,
            _naive(now),
        ),
    )


async def remove_absences(conn: Sql, physician_id: str, absence_ids: Sequence[str]) -> set[str]:
    """Delete these absences of the physician; the ids that were not theirs (or not there)."""
    missing = set()
    for absence_id in absence_ids:
        deleted = await db.execute(
            conn,
            "DELETE FROM absences WHERE physician_id = %s AND absence_id = %s",
            (physician_id, absence_id),
        )
        if not deleted:
            missing.add(absence_id)
    return missing


# ---------------------------------------------------------------- appointments


async def first_overlap(
    conn: Sql,
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


async def insert_appointment(conn: Sql, a: AppointmentRow) -> None:
    await db.execute(
        conn,
        f"INSERT INTO appointments ({APPOINTMENT_COLUMNS}) "  # noqa: S608 - constant columns
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
            None if a.arrived_at is None else _naive(a.arrived_at),
            None if a.started_at is None else _naive(a.started_at),
            None if a.finished_at is None else _naive(a.finished_at),
        ),
    )


async def get_appointment(
    target: Any, appointment_id: str, *, lock: bool = False
) -> AppointmentRow | None:
    sql = f"SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE appointment_id = %s"  # noqa: S608
    row = await db.fetchone(target, sql + (" FOR UPDATE" if lock else ""), (appointment_id,))
    return None if row is None else _row(row)


async def move(
    conn: Sql, appointment_id: str, start: datetime, end: datetime, by: str, now: datetime
) -> None:
    await db.execute(
        conn,
        "UPDATE appointments SET start_at = %s, end_at = %s, updated_by = %s, updated_at = %s "
        "WHERE appointment_id = %s",
        (_naive(start), _naive(end), by, _naive(now), appointment_id),
    )


STAMPS = ("arrived_at", "started_at", "finished_at")


async def set_status(
    conn: Sql,
    appointment_id: str,
    status: str,
    by: str,
    now: datetime,
    cancel_reason_enc: str | None = None,
    stamp: str | None = None,
    clear_finished: bool = False,
) -> None:
    """Change the status; `stamp` names the column (`STAMPS`) that records when;
    `clear_finished` forgets a no-show's time (the patient came after all)."""
    assert stamp is None or stamp in STAMPS
    also = f", {stamp} = %s" if stamp else ""
    if clear_finished:
        also += ", finished_at = NULL"
    await db.execute(
        conn,
        "UPDATE appointments SET status = %s, cancel_reason_enc = COALESCE(%s, "  # noqa: S608
        f"cancel_reason_enc), updated_by = %s, updated_at = %s{also} WHERE appointment_id = %s",
        (
            status,
            cancel_reason_enc,
            by,
            _naive(now),
            *((_naive(now),) if stamp else ()),
            appointment_id,
        ),
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


async def appointments_of_all_between(
    target: Any, start: datetime, end: datetime, longest: timedelta, limit: int
) -> list[AppointmentRow]:
    """Every physician's appointments overlapping [start, end), every status, in time
    order; at most `limit`."""
    rows = await db.fetchall(
        target,
        f"SELECT {APPOINTMENT_COLUMNS} FROM appointments "  # noqa: S608 - constant columns
        "WHERE start_at < %s AND start_at > %s AND end_at > %s "
        "ORDER BY start_at, physician_id, appointment_id LIMIT %s",
        (_naive(end), _naive(start - longest), _naive(start), limit),
    )
    return [_row(r) for r in rows]


async def appointments_of_patients(
    target: Any, patient_ids: Sequence[str], since: datetime | None, limit: int
) -> list[AppointmentRow]:
    """Every appointment of these patients (changed after `since`, if given), in patient
    and time order; at most `limit` (a bulk export's page)."""
    if not patient_ids:
        return []
    marks = ", ".join(["%s"] * len(patient_ids))
    where = f"patient_id IN ({marks})" + (" AND updated_at > %s" if since else "")
    args: list[Any] = [*patient_ids, *([_naive(since)] if since else []), limit]
    rows = await db.fetchall(
        target,
        f"SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE {where} "  # noqa: S608
        "ORDER BY patient_id, start_at, appointment_id LIMIT %s",
        args,
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
