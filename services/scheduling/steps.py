"""The steps scheduling's handlers share: the clinic's time zone and clock, the
calendar lock and the slot check under it, the reasons' encryption (bound to patient and
physician), the API's views of a row, and the refusals by status.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

from contracts import scheduling as sched
from contracts.audit import AuditAction, AuditType
from contracts.base import EventType
from mesh import auditing, keyvault, outbox
from mesh.context import CallContext
from mesh.db import Connection, Database, Sql
from mesh.errors import Conflict, NotFound, RpcError
from mesh.runtime import Runtime
from services.scheduling import access, rules, store, timeplan
from services.scheduling.store import AppointmentRow

ENTITY = "appointment"

EventT = TypeVar("EventT", bound=sched.AppointmentEvent)

TABLE = "appointments"
REASON = "reason"
CANCEL_REASON = "cancel_reason"


def tz(runtime: Runtime) -> ZoneInfo:
    return ZoneInfo(runtime.settings.clinic_timezone)


def now() -> datetime:
    return datetime.now(UTC)


def db(runtime: Runtime) -> Database:
    assert runtime.db is not None
    return runtime.db


async def lock(conn: Sql, physician_id: str) -> int | None:
    """Lock the physician's calendar for this transaction; its version, None if it has none.

    The checks that follow are plain reads of this transaction's snapshot, which must be
    taken after the lock (InnoDB takes it at the first plain read). If code before the
    lock ever read something, the snapshot would predate other bookings: refuse then.
    """
    version = await store.lock_physician(conn, physician_id)
    if version is not None and await store.snapshot_version(conn, physician_id) != version:
        raise Conflict("The calendar changed while this was being checked; please try again.")
    return version


async def lock_and_check_slot(
    conn: Sql,
    runtime: Runtime,
    physician_id: str,
    start: datetime,
    end: datetime,
    exclude_id: str | None = None,
) -> None:
    """Lock the physician's calendar, then: within working time (422) and free (409).

    As in `lock`, the snapshot the checks read must be newer than the lock. The working
    time is the same joined plan the slot finder offers slots from.
    """
    zone, who = tz(runtime), await access.physician_name(runtime, physician_id)
    today = timeplan.local_day(now(), zone)
    version = await lock(conn, physician_id)
    if version is None:
        raise rules.refuse(
            [rules.problem("physician_id", f"{who} has no working hours yet.", "no_hours")]
        )
    first, last = timeplan.booking_days(start, end, zone)
    plan = await store.plan(conn, physician_id, first, last)
    rules.require_available(start, end, plan, zone, who, today)
    clash = await store.first_overlap(conn, physician_id, start, end, rules.LONGEST, exclude_id)
    if clash is not None:
        raise Conflict(
            rules.conflict_text(who, clash.start, clash.end, zone, today),
            details={
                "conflict": {
                    "appointment_id": clash.appointment_id,
                    "start": clash.start.isoformat(),
                    "end": clash.end.isoformat(),
                }
            },
        )


def binding(patient_id: str, physician_id: str) -> dict[str, str]:
    """Whose an appointment's ciphertexts are: bound into their AAD by the keyvault, which
    decrypts them only for a signed request naming that physician (or that appointment)."""
    return {"patient": patient_id, "physician": physician_id}


async def encrypt(
    runtime: Runtime, row_id: str, fields: dict[str, str], binding: dict[str, str]
) -> dict[str, str]:
    return await keyvault.encrypt_row(runtime, TABLE, row_id, fields, **binding)


def reason_batch(rows: list[AppointmentRow]) -> keyvault.Batch:
    """Reason (and cancellation reason) of every row, bound to its patient and physician."""
    batch = keyvault.Batch()
    for r in rows:
        fields = {REASON: r.reason_enc, CANCEL_REASON: r.cancel_reason_enc or None}
        batch.add(TABLE, r.appointment_id, fields, **binding(r.patient_id, r.physician_id))
    return batch


async def decrypt(runtime: Runtime, rows: list[AppointmentRow]) -> list[dict[str, str]]:
    """Reason (and cancellation reason) of every row, in one keyvault batch ({} for a row
    whose ciphertext does not decrypt: shown without its reason, never with another's)."""
    return (await keyvault.decrypt(runtime, reason_batch(rows))).rows


def appointment(row: AppointmentRow, plain: dict[str, str] | None = None) -> sched.Appointment:
    plain = plain or {}
    return sched.Appointment(
        appointment_id=row.appointment_id,
        patient_id=row.patient_id,
        physician_id=row.physician_id,
        start=row.start,
        end=row.end,
        status=sched.AppointmentStatus(row.status),
        reason=plain.get(REASON),
        cancellation_reason=plain.get(CANCEL_REASON),
        booked_by=row.booked_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        arrived_at=row.arrived_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def slot(row: AppointmentRow) -> sched.AppointmentSlot:
    return sched.AppointmentSlot(appointment_id=row.appointment_id, start=row.start, end=row.end)


async def locked_appointment(conn: Sql, appointment_id: str) -> AppointmentRow:
    row = await store.get_appointment(conn, appointment_id, lock=True)
    if row is None:
        raise NotFound("unknown appointment", details={"appointment_id": appointment_id})
    return row


def audited_appointment(
    ctx: CallContext, type: AuditType, action: AuditAction, appointment_id: str
) -> AbstractAsyncContextManager[auditing.Subject]:
    """`auditing.audited`, for an action on one appointment."""
    return auditing.audited(ctx, type, action, ENTITY, entity_id=appointment_id)


async def locked_for(conn: Sql, subject: auditing.Subject, appointment_id: str) -> AppointmentRow:
    """The appointment, its row locked; the audit subject learns its patient."""
    row = await locked_appointment(conn, appointment_id)
    subject.patient_id = row.patient_id
    return row


async def add_event(
    conn: Connection,
    event: EventType[EventT],
    row: AppointmentRow,
    by: str,
    **changed: datetime,
) -> None:
    """The event of a change to an appointment: its ids and times (`changed` overrides the
    row's times, or adds the previous ones), in the outbox of the change's transaction."""
    fields: dict[str, object] = {
        "appointment_id": row.appointment_id,
        "physician_id": row.physician_id,
        "patient_id": row.patient_id,
        "start": row.start,
        "end": row.end,
        "by": by,
    }
    await outbox.add_event(conn, event, event.model.model_validate(fields | changed))


STATUS_WORDS = {
    "booked": "booked",
    "arrived": "checked in",
    "in_progress": "in progress",
    "completed": "completed",
    "no_show": "a no-show",
    "cancelled": "cancelled",
}


def refuse_status(row: AppointmentRow, what: str) -> RpcError:
    return Conflict(
        f"Cannot {what} an appointment that is {STATUS_WORDS.get(row.status, row.status)}.",
        details={"appointment_id": row.appointment_id, "status": row.status},
    )


def require_booked(row: AppointmentRow, now: datetime, what: str) -> None:
    if row.status != sched.AppointmentStatus.booked:
        raise refuse_status(row, what)
    if row.start <= now:
        raise Conflict(
            f"Cannot {what} an appointment that has already started.",
            details={"appointment_id": row.appointment_id, "start": row.start.isoformat()},
        )
