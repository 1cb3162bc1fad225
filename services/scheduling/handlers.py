"""RPC handlers of the scheduling service.

No double booking, across replicas: every change to a physician's calendar locks that
physician's row (`SELECT ... FOR UPDATE`) in the write's transaction, then checks working
hours and overlaps and writes, so the database lets one booking at a time decide. Checks
that need other services (the caller's signature, physician, patient) and the keyvault
encryption run concurrently before the lock, so the lock is held only for SQL.

Reasons for visit are keyvault ciphertext at rest: one ENCRYPT per write that has text,
one DECRYPT batch per read, which the keyvault serves only on the reader's signature.
Every method checks the caller's forwarded signature: writes and reads that decrypt
nothing here (`access.require_signed`), reads that decrypt through the keyvault's gate.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from contracts import keyvault as kv
from contracts import scheduling as sched
from contracts.audit import AuditAction
from contracts.base import Role
from mesh import outbox
from mesh.context import CallContext
from mesh.db import Database
from mesh.errors import Conflict, Forbidden, InvalidRequest, NotFound
from mesh.rpc import RpcRouter
from mesh.runtime import Runtime
from services.scheduling import access, auditing, rules, store, timeplan
from services.scheduling.access import calendar_owner, principal_of, runtime_of
from services.scheduling.auditing import audited
from services.scheduling.store import AppointmentRow

router = RpcRouter(sched.SERVICE)

TABLE = "appointments"
REASON = "reason"
CANCEL_REASON = "cancel_reason"


def _tz(runtime: Runtime) -> ZoneInfo:
    return ZoneInfo(runtime.settings.clinic_timezone)


def _now() -> datetime:
    return datetime.now(UTC)


def _db(runtime: Runtime) -> Database:
    assert runtime.db is not None
    return runtime.db


# ---------------------------------------------------------------- shared steps


async def _lock(conn: Any, physician_id: str) -> int | None:
    """Lock the physician's calendar for this transaction; its version, None if it has none.

    The checks that follow are plain reads of this transaction's snapshot, which must be
    taken after the lock (InnoDB takes it at the first plain read). If code before the
    lock ever read something, the snapshot would predate other bookings: refuse then.
    """
    version = await store.lock_physician(conn, physician_id)
    if version is not None and await store.snapshot_version(conn, physician_id) != version:
        raise Conflict("the calendar changed while this request was checked; try again")
    return version


async def _lock_and_check_slot(
    conn: Any,
    tz: ZoneInfo,
    physician_id: str,
    start: datetime,
    end: datetime,
    exclude_id: str | None = None,
) -> None:
    """Lock the physician's calendar, then: within working hours (422) and free (409).

    As in `_lock`, the snapshot the checks read must be newer than the lock.
    """
    version = await store.lock_physician(conn, physician_id)
    if version is None:
        raise rules.refuse(
            [rules.problem("physician_id", "the physician has no working hours", "no_hours")]
        )
    day = timeplan.local_day(start, tz)
    plan = await store.day_plan(conn, physician_id, day)
    if plan is None or plan.version != version:
        raise Conflict("the calendar changed while this request was checked; try again")
    rules.require_available(
        start, end, {day.weekday(): plan.periods}, {day} if plan.off else set(), tz
    )
    clash = await store.first_overlap(conn, physician_id, start, end, rules.LONGEST, exclude_id)
    if clash is not None:
        raise Conflict(
            f"the physician already has an appointment from {clash.start.isoformat()} "
            f"to {clash.end.isoformat()}",
            details={
                "conflict": {
                    "appointment_id": clash.appointment_id,
                    "start": clash.start.isoformat(),
                    "end": clash.end.isoformat(),
                }
            },
        )


async def _encrypt(runtime: Runtime, row_id: str, fields: dict[str, str]) -> dict[str, str]:
    reply = await runtime.rpc.call(
        kv.ENCRYPT, kv.EncryptRequest(rows=[kv.FieldRow(table=TABLE, row_id=row_id, fields=fields)])
    )
    return reply.rows[0]


async def _decrypt(
    runtime: Runtime, rows: list[AppointmentRow], patient_id: str | None
) -> list[dict[str, str]]:
    """Reason (and cancellation reason) of every row, in one keyvault batch."""
    if not rows:
        return []
    fields = [
        {REASON: r.reason_enc}
        | ({CANCEL_REASON: r.cancel_reason_enc} if r.cancel_reason_enc else {})
        for r in rows
    ]
    reply = await runtime.rpc.call(
        kv.DECRYPT,
        kv.DecryptRequest(
            rows=[
                kv.FieldRow(table=TABLE, row_id=r.appointment_id, fields=f)
                for r, f in zip(rows, fields, strict=True)
            ],
            patient_id=patient_id,
        ),
    )
    return reply.rows


def _appointment(row: AppointmentRow, plain: dict[str, str] | None = None) -> sched.Appointment:
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
    )


def _slot(row: AppointmentRow) -> sched.AppointmentSlot:
    return sched.AppointmentSlot(appointment_id=row.appointment_id, start=row.start, end=row.end)


async def _locked_appointment(conn: Any, appointment_id: str) -> AppointmentRow:
    row = await store.get_appointment(conn, appointment_id, lock=True)
    if row is None:
        raise NotFound("unknown appointment", details={"appointment_id": appointment_id})
    return row


def _require_booked(row: AppointmentRow, now: datetime, what: str) -> None:
    if row.status != sched.AppointmentStatus.booked:
        raise Conflict(
            f"cannot {what} an appointment that is {row.status}",
            details={"appointment_id": row.appointment_id, "status": row.status},
        )
    if row.start <= now:
        raise Conflict(
            f"cannot {what} an appointment that has already started",
            details={"appointment_id": row.appointment_id, "start": row.start.isoformat()},
        )


# ---------------------------------------------------------------- availability


async def _availability(
    target: Any, runtime: Runtime, physician_id: str, affected: Sequence[AppointmentRow] = ()
) -> sched.Availability:
    tz = _tz(runtime)
    weekly = await store.weekly_hours(target, physician_id)
    days_off = await store.days_off_from(target, physician_id, timeplan.local_day(_now(), tz))
    return sched.Availability(
        physician_id=physician_id,
        time_zone=tz.key,
        weekly=rules.weekly_view(weekly),
        days_off=days_off,
        affected=[_slot(r) for r in affected],
    )


async def _affected(conn: Any, runtime: Runtime, physician_id: str) -> list[AppointmentRow]:
    """Booked future appointments that the physician's availability no longer covers."""
    tz = _tz(runtime)
    booked = await store.booked_from(conn, physician_id, _now())
    if not booked:
        return []
    first = timeplan.local_day(booked[0].start, tz)
    last = timeplan.local_day(booked[-1].start, tz)
    weekly = await store.weekly_hours(conn, physician_id)
    off = await store.days_off(conn, physician_id, first, last)
    periods = timeplan.working_periods(weekly, off, first, last, tz)
    return [r for r in booked if not timeplan.fits(r.start, r.end, periods)]


async def _roster_change(ctx: CallContext, physician_id: str) -> None:
    """Before changing availability: a signed caller, a real physician, the calendar locked."""
    runtime = runtime_of(ctx)
    await rules.concurrently(
        access.require_signed(ctx), access.require_physician(runtime, physician_id)
    )
    await store.create_physician(ctx.tx, physician_id)
    await _lock(ctx.tx, physician_id)


@router.handler(sched.SET_WORKING_HOURS)
async def set_working_hours(
    req: sched.SetWorkingHoursRequest, ctx: CallContext
) -> sched.Availability:
    runtime = runtime_of(ctx)
    async with audited(
        ctx, "availability.change", AuditAction.update, entity_type="physician"
    ) as subject:
        physician_id = calendar_owner(ctx, req.physician_id)
        subject.entity_id = physician_id
        periods = rules.weekly_periods(req.weekly)
        await _roster_change(ctx, physician_id)
        await store.replace_weekly_hours(ctx.tx, physician_id, periods)
        await store.bump_version(ctx.tx, physician_id)
        affected = await _affected(ctx.tx, runtime, physician_id)
        await auditing.written(ctx, subject, f"working hours: {len(periods)} periods")
        return await _availability(ctx.tx, runtime, physician_id, affected)


@router.handler(sched.SET_DAYS_OFF)
async def set_days_off(req: sched.SetDaysOffRequest, ctx: CallContext) -> sched.Availability:
    runtime = runtime_of(ctx)
    async with audited(
        ctx, "availability.change", AuditAction.update, entity_type="physician"
    ) as subject:
        physician_id = calendar_owner(ctx, req.physician_id)
        subject.entity_id = physician_id
        rules.check_days_off(req.add, timeplan.local_day(_now(), _tz(runtime)))
        await _roster_change(ctx, physician_id)
        await store.change_days_off(ctx.tx, physician_id, req.add, req.remove)
        await store.bump_version(ctx.tx, physician_id)
        affected = await _affected(ctx.tx, runtime, physician_id)
        await auditing.written(
            ctx, subject, f"days off: {len(req.add)} added, {len(req.remove)} removed"
        )
        return await _availability(ctx.tx, runtime, physician_id, affected)


@router.handler(sched.GET_AVAILABILITY)
async def availability(req: sched.AvailabilityRequest, ctx: CallContext) -> sched.Availability:
    runtime = runtime_of(ctx)
    physician_id = calendar_owner(ctx, req.physician_id)
    await rules.concurrently(access.require_signed(ctx), _known_physician(ctx, physician_id))
    return await _availability(_db(runtime), runtime, physician_id)


async def _known_physician(ctx: CallContext, physician_id: str) -> None:
    """For reads: a physician with a calendar here, or at least an account (else 404)."""
    runtime = runtime_of(ctx)
    if principal_of(ctx).account_id == physician_id:
        return
    if await store.has_calendar(_db(runtime), physician_id):
        return
    try:
        await access.require_physician(runtime, physician_id)
    except InvalidRequest as exc:
        raise NotFound(exc.message, details={"physician_id": physician_id}) from None


# ---------------------------------------------------------------- appointments


@router.handler(sched.BOOK)
async def book(req: sched.BookRequest, ctx: CallContext) -> sched.Appointment:
    runtime, me, now = runtime_of(ctx), principal_of(ctx), _now()
    appointment_id = str(uuid.uuid4())
    async with audited(
        ctx,
        "appointment.book",
        AuditAction.create,
        patient_id=req.patient_id,
        entity_id=appointment_id,
    ) as subject:
        rules.check_times(req.start, req.end, now)
        encrypted, *_ = await rules.concurrently(
            _encrypt(runtime, appointment_id, {REASON: req.reason}),
            access.require_signed(ctx),
            access.require_physician(runtime, req.physician_id),
            access.require_patient(runtime, req.patient_id),
        )
        await _lock_and_check_slot(ctx.tx, _tz(runtime), req.physician_id, req.start, req.end)
        row = AppointmentRow(
            appointment_id=appointment_id,
            physician_id=req.physician_id,
            patient_id=req.patient_id,
            start=req.start,
            end=req.end,
            status=sched.AppointmentStatus.booked.value,
            reason_enc=encrypted[REASON],
            cancel_reason_enc=None,
            booked_by=me.account_id,
            updated_by=me.account_id,
            created_at=now,
            updated_at=now,
        )
        await store.insert_appointment(ctx.tx, row)
        await store.bump_version(ctx.tx, req.physician_id)
        await outbox.add_event(
            ctx.tx,
            sched.APPOINTMENT_BOOKED,
            sched.AppointmentBooked(
                appointment_id=appointment_id,
                physician_id=row.physician_id,
                patient_id=row.patient_id,
                start=row.start,
                end=row.end,
                by=me.account_id,
            ),
        )
        await auditing.written(ctx, subject)
    return _appointment(row)


@router.handler(sched.RESCHEDULE)
async def reschedule(req: sched.RescheduleRequest, ctx: CallContext) -> sched.Appointment:
    runtime, me, now = runtime_of(ctx), principal_of(ctx), _now()
    async with audited(
        ctx, "appointment.reschedule", AuditAction.update, entity_id=req.appointment_id
    ) as subject:
        rules.check_times(req.start, req.end, now)
        await access.require_signed(ctx)
        # Lock order everywhere: appointment row, then physician row.
        current = await _locked_appointment(ctx.tx, req.appointment_id)
        subject.patient_id = current.patient_id
        _require_booked(current, now, "reschedule")
        await _lock_and_check_slot(
            ctx.tx, _tz(runtime), current.physician_id, req.start, req.end, current.appointment_id
        )
        await store.move(ctx.tx, current.appointment_id, req.start, req.end, me.account_id, now)
        await store.bump_version(ctx.tx, current.physician_id)
        await outbox.add_event(
            ctx.tx,
            sched.APPOINTMENT_RESCHEDULED,
            sched.AppointmentRescheduled(
                appointment_id=current.appointment_id,
                physician_id=current.physician_id,
                patient_id=current.patient_id,
                start=req.start,
                end=req.end,
                previous_start=current.start,
                previous_end=current.end,
                by=me.account_id,
            ),
        )
        await auditing.written(
            ctx, subject, f"from {current.start.isoformat()} to {req.start.isoformat()}"
        )
    return _appointment(
        replace(current, start=req.start, end=req.end, updated_by=me.account_id, updated_at=now)
    )


@router.handler(sched.CANCEL)
async def cancel(req: sched.CancelRequest, ctx: CallContext) -> sched.Appointment:
    runtime, me, now = runtime_of(ctx), principal_of(ctx), _now()
    async with audited(
        ctx, "appointment.cancel", AuditAction.update, entity_id=req.appointment_id
    ) as subject:
        encrypted, _ = await rules.concurrently(
            _encrypt(runtime, req.appointment_id, {CANCEL_REASON: req.reason}),
            access.require_signed(ctx),
        )
        current = await _locked_appointment(ctx.tx, req.appointment_id)
        subject.patient_id = current.patient_id
        _require_booked(current, now, "cancel")
        status = sched.AppointmentStatus.cancelled.value
        await store.set_status(
            ctx.tx, current.appointment_id, status, me.account_id, now, encrypted[CANCEL_REASON]
        )
        await outbox.add_event(
            ctx.tx,
            sched.APPOINTMENT_CANCELLED,
            sched.AppointmentCancelled(
                appointment_id=current.appointment_id,
                physician_id=current.physician_id,
                patient_id=current.patient_id,
                start=current.start,
                end=current.end,
                by=me.account_id,
            ),
        )
        await auditing.written(ctx, subject)
    return _appointment(replace(current, status=status, updated_by=me.account_id, updated_at=now))


@router.handler(sched.RECORD_OUTCOME)
async def record_outcome(req: sched.RecordOutcomeRequest, ctx: CallContext) -> sched.Appointment:
    me, now = principal_of(ctx), _now()
    async with audited(
        ctx, "appointment.outcome", AuditAction.update, entity_id=req.appointment_id
    ) as subject:
        await access.require_signed(ctx)
        current = await _locked_appointment(ctx.tx, req.appointment_id)
        subject.patient_id = current.patient_id
        if me.role is Role.physician and current.physician_id != me.account_id:
            raise Forbidden("physicians record outcomes of their own appointments only")
        if current.status == sched.AppointmentStatus.cancelled:
            raise Conflict("the appointment was cancelled", details={"status": current.status})
        if current.start > now:
            raise Conflict(
                "the appointment has not started yet", details={"start": current.start.isoformat()}
            )
        await store.set_status(
            ctx.tx, current.appointment_id, req.outcome.value, me.account_id, now
        )
        await auditing.written(ctx, subject, f"outcome: {req.outcome.value}")
    return _appointment(
        replace(current, status=req.outcome.value, updated_by=me.account_id, updated_at=now)
    )


@router.handler(sched.GET_APPOINTMENT)
async def get_appointment(req: sched.AppointmentRequest, ctx: CallContext) -> sched.Appointment:
    runtime, me = runtime_of(ctx), principal_of(ctx)
    async with audited(
        ctx, "appointment.read", AuditAction.read, entity_id=req.appointment_id
    ) as subject:
        row = await store.get_appointment(_db(runtime), req.appointment_id)
        if row is None:
            raise NotFound("unknown appointment", details={"appointment_id": req.appointment_id})
        subject.patient_id = row.patient_id
        if me.role is Role.physician and row.physician_id != me.account_id:
            raise Forbidden("physicians see their own appointments only")
        (plain,) = await _decrypt(runtime, [row], row.patient_id)
        await auditing.read(ctx, subject, [row.patient_id])
    return _appointment(row, plain)


# ---------------------------------------------------------------- calendars


@router.handler(sched.CALENDAR)
async def calendar(req: sched.CalendarRequest, ctx: CallContext) -> sched.Calendar:
    runtime = runtime_of(ctx)
    tz = _tz(runtime)
    async with audited(ctx, "calendar.read", AuditAction.read, entity_type="physician") as subject:
        physician_id = calendar_owner(ctx, req.physician_id)
        subject.entity_id = physician_id
        await _known_physician(ctx, physician_id)
        first, last = timeplan.span_days(req.day, req.span)
        start, end = timeplan.day_bounds(first, last, tz)
        database = _db(runtime)
        rows = await store.appointments_between(
            database,
            physician_id,
            start,
            end,
            rules.LONGEST,
            include_cancelled=req.include_cancelled,
        )
        weekly = await store.weekly_hours(database, physician_id)
        off = await store.days_off(database, physician_id, first, last)
        patients = {r.patient_id for r in rows}
        if not rows:  # nothing for the keyvault to decrypt, so its gate does not run
            await access.require_signed(ctx)
        plain = await _decrypt(runtime, rows, next(iter(patients)) if len(patients) == 1 else None)
        await auditing.read(ctx, subject, patients)
    return sched.Calendar(
        physician_id=physician_id,
        time_zone=tz.key,
        span=req.span,
        first_day=first,
        last_day=last,
        start=start,
        end=end,
        working=[
            sched.TimeRange(start=s, end=e)
            for s, e in timeplan.working_periods(weekly, off, first, last, tz)
        ],
        appointments=[_appointment(r, p) for r, p in zip(rows, plain, strict=True)],
    )


@router.handler(sched.FREE_SLOTS)
async def free_slots(req: sched.FreeSlotsRequest, ctx: CallContext) -> sched.FreeSlots:
    """Free time only (no patient data), so neither decrypted nor audited."""
    runtime = runtime_of(ctx)
    tz = _tz(runtime)
    physician_id = calendar_owner(ctx, req.physician_id)
    await rules.concurrently(access.require_signed(ctx), _known_physician(ctx, physician_id))
    database = _db(runtime)
    start, end = timeplan.day_bounds(req.first_day, req.last_day, tz)
    weekly = await store.weekly_hours(database, physician_id)
    off = await store.days_off(database, physician_id, req.first_day, req.last_day)
    periods = timeplan.working_periods(weekly, off, req.first_day, req.last_day, tz)
    busy = await store.appointments_between(
        database, physician_id, start, end, rules.LONGEST, include_cancelled=False
    )
    windows = timeplan.free_windows(periods, [(r.start, r.end) for r in busy], _now())
    found, truncated = timeplan.slots(windows, timedelta(minutes=req.duration_minutes), req.limit)
    return sched.FreeSlots(
        physician_id=physician_id,
        time_zone=tz.key,
        duration_minutes=req.duration_minutes,
        slots=[sched.TimeRange(start=s, end=e) for s, e in found],
        truncated=truncated,
    )


@router.handler(sched.CARE_RELATIONSHIP)
async def care_relationship(
    req: sched.CareRelationshipRequest, ctx: CallContext
) -> sched.CareRelationship:
    """For records' and the keyvault's per-patient access checks: no patient data out."""
    exists = await store.has_care_window(
        runtime_of(ctx).db,
        req.physician_id,
        req.patient_id,
        datetime.now(UTC),
        req.before_days,
        req.after_days,
    )
    return sched.CareRelationship(exists=exists)
