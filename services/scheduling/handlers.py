"""RPC handlers of the scheduling service.

No double booking, across replicas: every change to a physician's calendar locks that
physician's row (`SELECT ... FOR UPDATE`) in the write's transaction, then checks working
time and overlaps and writes, so the database lets one booking at a time decide. Checks
that need other services (the caller's signature, physician, patient) and the keyvault
encryption run concurrently before the lock, so the lock is held only for SQL.

Working time is one plan (`timeplan.Plan`: hours, breaks, days off, absences) read by
`store.plan`; booking (`timeplan.bookable`), the slot finder (`timeplan.free_slots`),
calendars and the "affected appointments" of a roster change all join it the same way.

An appointment's day (check-in, start, finish, no-show) goes through `_transition`: one
method per step, each with its roles in the contract, each audited and published.

Reasons for visit are keyvault ciphertext at rest: one ENCRYPT per write that has text,
one DECRYPT batch per read, which the keyvault serves only on the reader's signature.
Every method checks the caller's forwarded signature: writes and reads that decrypt
nothing here (`access.require_signed`), reads that decrypt through the keyvault's gate.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from contracts import fhir
from contracts import fhirexport as fx
from contracts import keyvault as kv
from contracts import scheduling as sched
from contracts.audit import AuditAction
from contracts.base import Role
from mesh import auditing, outbox
from mesh.auditing import audited
from mesh.context import CallContext
from mesh.db import Database
from mesh.errors import Conflict, Forbidden, InvalidRequest, NotFound, RpcError
from mesh.rpc import RpcRouter
from mesh.runtime import Runtime
from services.scheduling import access, rules, store, timeplan
from services.scheduling.access import calendar_owner, principal_of, runtime_of
from services.scheduling.store import AbsenceRow, AppointmentRow

ENTITY = "appointment"

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
        raise Conflict("The calendar changed while this was being checked; please try again.")
    return version


async def _lock_and_check_slot(
    conn: Any,
    runtime: Runtime,
    physician_id: str,
    start: datetime,
    end: datetime,
    exclude_id: str | None = None,
) -> None:
    """Lock the physician's calendar, then: within working time (422) and free (409).

    As in `_lock`, the snapshot the checks read must be newer than the lock. The working
    time is the same joined plan the slot finder offers slots from.
    """
    tz, who = _tz(runtime), await access.physician_name(runtime, physician_id)
    today = timeplan.local_day(_now(), tz)
    version = await _lock(conn, physician_id)
    if version is None:
        raise rules.refuse(
            [rules.problem("physician_id", f"{who} has no working hours yet.", "no_hours")]
        )
    first, last = timeplan.booking_days(start, end, tz)
    plan = await store.plan(conn, physician_id, first, last)
    rules.require_available(start, end, plan, tz, who, today)
    clash = await store.first_overlap(conn, physician_id, start, end, rules.LONGEST, exclude_id)
    if clash is not None:
        raise Conflict(
            rules.conflict_text(who, clash.start, clash.end, tz, today),
            details={
                "conflict": {
                    "appointment_id": clash.appointment_id,
                    "start": clash.start.isoformat(),
                    "end": clash.end.isoformat(),
                }
            },
        )


def _binding(patient_id: str, physician_id: str) -> dict[str, str]:
    """Whose an appointment's ciphertexts are: bound into their AAD by the keyvault, which
    decrypts them only for a signed request naming that physician (or that appointment)."""
    return {"patient": patient_id, "physician": physician_id}


async def _encrypt(
    runtime: Runtime, row_id: str, fields: dict[str, str], binding: dict[str, str]
) -> dict[str, str]:
    row = kv.FieldRow(table=TABLE, row_id=row_id, fields=fields, binding=binding)
    reply = await runtime.rpc.call(kv.ENCRYPT, kv.EncryptRequest(rows=[row]))
    return reply.rows[0]


def _reason_rows(rows: list[AppointmentRow]) -> list[kv.FieldRow]:
    return [
        kv.FieldRow(
            table=TABLE,
            row_id=r.appointment_id,
            fields={REASON: r.reason_enc}
            | ({CANCEL_REASON: r.cancel_reason_enc} if r.cancel_reason_enc else {}),
            binding=_binding(r.patient_id, r.physician_id),
        )
        for r in rows
    ]


EXPORT_PAGE_APPOINTMENTS = 4000
"""At most this many appointments per export page (one keyvault call)."""


@router.handler(fx.EXPORT_APPOINTMENTS)
async def export_appointments(
    req: fx.ExportAppointmentsRequest, ctx: CallContext
) -> fx.ExportAppointments:
    """One page of a bulk export (records asks; records audits each patient): reasons
    decrypted under the job's export session, which the keyvault alone opened on the
    two administrators' signatures (`contracts.fhirexport.EXPORT_DECRYPT`)."""
    runtime = runtime_of(ctx)
    rows = await store.appointments_of_patients(
        runtime.db, req.patient_ids, req.since, EXPORT_PAGE_APPOINTMENTS + 1
    )
    if len(rows) > EXPORT_PAGE_APPOINTMENTS:
        raise Conflict(
            f"these patients have more than {EXPORT_PAGE_APPOINTMENTS} appointments: "
            "export them in smaller pages"
        )
    if not rows:
        return fx.ExportAppointments(appointments=[])
    reply = await runtime.rpc.call(
        fx.EXPORT_DECRYPT,
        fx.ExportDecryptRequest(
            job_id=req.job_id, page_first=req.page_first, rows=_reason_rows(rows)
        ),
    )
    return fx.ExportAppointments(
        appointments=[
            _appointment(r, None if i in reply.failed else p)
            for i, (r, p) in enumerate(zip(rows, reply.rows, strict=True))
        ]
    )


async def _decrypt(runtime: Runtime, rows: list[AppointmentRow]) -> list[dict[str, str]]:
    """Reason (and cancellation reason) of every row, in one keyvault batch ({} for a row
    whose ciphertext does not decrypt: shown without its reason, never with another's)."""
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
                kv.FieldRow(
                    table=TABLE,
                    row_id=r.appointment_id,
                    fields=f,
                    binding=_binding(r.patient_id, r.physician_id),
                )
                for r, f in zip(rows, fields, strict=True)
            ],
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
        arrived_at=row.arrived_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def _slot(row: AppointmentRow) -> sched.AppointmentSlot:
    return sched.AppointmentSlot(appointment_id=row.appointment_id, start=row.start, end=row.end)


async def _locked_appointment(conn: Any, appointment_id: str) -> AppointmentRow:
    row = await store.get_appointment(conn, appointment_id, lock=True)
    if row is None:
        raise NotFound("unknown appointment", details={"appointment_id": appointment_id})
    return row


STATUS_WORDS = {
    "booked": "booked",
    "arrived": "checked in",
    "in_progress": "in progress",
    "completed": "completed",
    "no_show": "a no-show",
    "cancelled": "cancelled",
}


def _refuse_status(row: AppointmentRow, what: str) -> RpcError:
    return Conflict(
        f"Cannot {what} an appointment that is {STATUS_WORDS.get(row.status, row.status)}.",
        details={"appointment_id": row.appointment_id, "status": row.status},
    )


def _require_booked(row: AppointmentRow, now: datetime, what: str) -> None:
    if row.status != sched.AppointmentStatus.booked:
        raise _refuse_status(row, what)
    if row.start <= now:
        raise Conflict(
            f"Cannot {what} an appointment that has already started.",
            details={"appointment_id": row.appointment_id, "start": row.start.isoformat()},
        )


# ---------------------------------------------------------------- availability


def _absence_view(row: AbsenceRow, tz: ZoneInfo) -> sched.Absence:
    start, end = row.span.interval(tz)
    return sched.Absence(
        absence_id=row.absence_id,
        kind=sched.AbsenceKind(row.kind),
        first_day=row.span.first_day,
        last_day=row.span.last_day,
        start=start,
        end=end,
    )


async def _availability(
    target: Any, runtime: Runtime, physician_id: str, affected: Sequence[AppointmentRow] = ()
) -> sched.Availability:
    tz, now = _tz(runtime), _now()
    today = timeplan.local_day(now, tz)
    weekly = await store.weekly_hours(target, physician_id)
    breaks = await store.weekly_breaks(target, physician_id)
    days_off = await store.days_off_from(target, physician_id, today)
    absences = await store.absences_from(target, physician_id, today, now)
    return sched.Availability(
        physician_id=physician_id,
        time_zone=tz.key,
        weekly=rules.weekly_view(weekly),
        breaks=rules.weekly_view(breaks),
        days_off=days_off,
        absences=[_absence_view(a, tz) for a in absences],
        affected=[_slot(r) for r in affected],
    )


async def _affected(conn: Any, runtime: Runtime, physician_id: str) -> list[AppointmentRow]:
    """Booked future appointments that the physician's working time no longer covers
    (the booking rule, `timeplan.bookable`, over one joined plan of all their days)."""
    tz = _tz(runtime)
    booked = await store.booked_from(conn, physician_id, _now())
    if not booked:
        return []
    first = timeplan.local_day(booked[0].start, tz)
    last = max(timeplan.local_day(r.end, tz) for r in booked)
    plan = await store.plan(conn, physician_id, first, last)
    periods = timeplan.available(plan, first, last, tz)
    return [r for r in booked if not timeplan.fits(r.start, r.end, periods)]


async def _roster_change(ctx: CallContext, physician_id: str) -> None:
    """Before changing working time: a real physician, the calendar locked."""
    runtime = runtime_of(ctx)
    await access.require_physician(runtime, physician_id)
    await store.create_physician(ctx.tx, physician_id)
    await _lock(ctx.tx, physician_id)


async def _roster_changed(
    ctx: CallContext, subject: auditing.Subject, physician_id: str, detail: str
) -> sched.Availability:
    """After changing working time: a new version, the event, the audit, the new plan."""
    runtime = runtime_of(ctx)
    await store.bump_version(ctx.tx, physician_id)
    affected = await _affected(ctx.tx, runtime, physician_id)
    await outbox.add_event(
        ctx.tx,
        sched.AVAILABILITY_CHANGED,
        sched.AvailabilityChanged(physician_id=physician_id, by=principal_of(ctx).account_id),
    )
    await auditing.written(ctx, subject, detail)
    return await _availability(ctx.tx, runtime, physician_id, affected)


@router.handler(sched.SET_WORKING_HOURS)
async def set_working_hours(
    req: sched.SetWorkingHoursRequest, ctx: CallContext
) -> sched.Availability:
    async with audited(
        ctx, "availability.change", AuditAction.update, entity_type="physician"
    ) as subject:
        physician_id = calendar_owner(ctx, req.physician_id)
        subject.entity_id = physician_id
        periods = rules.weekly_periods(req.weekly)
        await _roster_change(ctx, physician_id)
        await store.replace_weekly_hours(ctx.tx, physician_id, periods)
        return await _roster_changed(
            ctx, subject, physician_id, f"working hours: {len(periods)} periods"
        )


@router.handler(sched.SET_BREAKS)
async def set_breaks(req: sched.SetBreaksRequest, ctx: CallContext) -> sched.Availability:
    async with audited(
        ctx, "availability.change", AuditAction.update, entity_type="physician"
    ) as subject:
        physician_id = calendar_owner(ctx, req.physician_id)
        subject.entity_id = physician_id
        periods = rules.weekly_periods(req.breaks)
        await _roster_change(ctx, physician_id)
        await store.replace_weekly_breaks(ctx.tx, physician_id, periods)
        return await _roster_changed(ctx, subject, physician_id, f"breaks: {len(periods)}")


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
        return await _roster_changed(
            ctx, subject, physician_id, f"days off: {len(req.add)} added, {len(req.remove)} removed"
        )


@router.handler(sched.CHANGE_ABSENCES)
async def change_absences(req: sched.ChangeAbsencesRequest, ctx: CallContext) -> sched.Availability:
    runtime, me, now = runtime_of(ctx), principal_of(ctx), _now()
    async with audited(
        ctx, "availability.change", AuditAction.update, entity_type="physician"
    ) as subject:
        physician_id = calendar_owner(ctx, req.physician_id)
        subject.entity_id = physician_id
        spans = rules.check_absences(req.add, now, _tz(runtime))
        await _roster_change(ctx, physician_id)
        missing = await store.remove_absences(ctx.tx, physician_id, req.remove)
        if missing:
            raise rules.refuse(
                [
                    rules.problem(
                        ("remove", req.remove.index(absence_id)),
                        f"There is no absence {absence_id} of this physician.",
                        "unknown_absence",
                    )
                    for absence_id in sorted(missing)
                ]
            )
        for absence, span in zip(req.add, spans, strict=True):
            await store.add_absence(
                ctx.tx,
                str(uuid.uuid4()),
                physician_id,
                absence.kind.value,
                span,
                me.account_id,
                now,
            )
        return await _roster_changed(
            ctx,
            subject,
            physician_id,
            f"absences: {len(req.add)} added, {len(req.remove)} removed",
        )


@router.handler(sched.GET_AVAILABILITY)
async def availability(req: sched.AvailabilityRequest, ctx: CallContext) -> sched.Availability:
    runtime = runtime_of(ctx)
    physician_id = calendar_owner(ctx, req.physician_id)
    await _known_physician(ctx, physician_id)
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
        ENTITY,
        patient_id=req.patient_id,
        entity_id=appointment_id,
    ) as subject:
        rules.check_times(req.start, req.end, now)
        binding = _binding(req.patient_id, req.physician_id)
        encrypted, *_ = await rules.concurrently(
            _encrypt(runtime, appointment_id, {REASON: req.reason}, binding),
            access.require_physician(runtime, req.physician_id),
            access.require_patient(runtime, req.patient_id),
        )
        await _lock_and_check_slot(ctx.tx, runtime, req.physician_id, req.start, req.end)
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
        ctx, "appointment.reschedule", AuditAction.update, ENTITY, entity_id=req.appointment_id
    ) as subject:
        rules.check_times(req.start, req.end, now)
        # Lock order everywhere: appointment row, then physician row.
        current = await _locked_appointment(ctx.tx, req.appointment_id)
        subject.patient_id = current.patient_id
        _require_booked(current, now, "reschedule")
        await _lock_and_check_slot(
            ctx.tx, runtime, current.physician_id, req.start, req.end, current.appointment_id
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
        ctx, "appointment.cancel", AuditAction.update, ENTITY, entity_id=req.appointment_id
    ) as subject:
        current = await _locked_appointment(ctx.tx, req.appointment_id)
        subject.patient_id = current.patient_id
        _require_booked(current, now, "cancel")
        encrypted = await _encrypt(
            runtime,
            req.appointment_id,
            {CANCEL_REASON: req.reason},
            _binding(current.patient_id, current.physician_id),
        )
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


# ---------------------------------------------------------------- the appointment's day


@dataclass(frozen=True)
class Step:
    """One step of an appointment's day: from which statuses, to which, when, who."""

    audit: str
    verb: str
    """As refusals say it: "Cannot check in an appointment that is cancelled"."""
    sources: frozenset[str]
    target: sched.AppointmentStatus
    stamp: str
    event: Any
    own_only: bool = False
    """Physicians: only on their own appointments."""


S = sched.AppointmentStatus
CHECK_IN = Step(
    "appointment.check_in",
    "check in",
    frozenset({S.booked, S.no_show}),
    S.arrived,
    "arrived_at",
    sched.APPOINTMENT_CHECKED_IN,
)
NO_SHOW = Step(
    "appointment.no_show",
    "mark as a no-show",
    frozenset({S.booked}),
    S.no_show,
    "finished_at",
    sched.APPOINTMENT_NO_SHOW,
)
START = Step(
    "appointment.start",
    "start",
    frozenset({S.booked, S.arrived}),
    S.in_progress,
    "started_at",
    sched.APPOINTMENT_STARTED,
    own_only=True,
)
FINISH = Step(
    "appointment.finish",
    "finish",
    frozenset({S.in_progress}),
    S.completed,
    "finished_at",
    sched.APPOINTMENT_COMPLETED,
    own_only=True,
)


def _when_allowed(step: Step, row: AppointmentRow, now: datetime, tz: ZoneInfo) -> None:
    """Check-in on the appointment's day; no-show once its time has come; a visit starts
    on its day or later (a late patient, a delayed clinic); finishing any time after."""
    today = timeplan.local_day(now, tz)
    day = timeplan.local_day(row.start, tz)
    when = rules.span_text(row.start, row.end, tz, today)
    if step is CHECK_IN and day != today:
        raise Conflict(
            f"Patients are checked in on the day of their appointment ({when}).",
            details={"appointment_id": row.appointment_id, "start": row.start.isoformat()},
        )
    if step is NO_SHOW and row.start > now:
        raise Conflict(
            f"The appointment has not started yet ({when}).",
            details={"appointment_id": row.appointment_id, "start": row.start.isoformat()},
        )
    if step is START and day > today:
        raise Conflict(
            f"A visit starts on the day of its appointment ({when}).",
            details={"appointment_id": row.appointment_id, "start": row.start.isoformat()},
        )


async def _transition(
    step: Step, req: sched.AppointmentRequest, ctx: CallContext
) -> sched.Appointment:
    runtime, me, now = runtime_of(ctx), principal_of(ctx), _now()
    async with audited(
        ctx, step.audit, AuditAction.update, ENTITY, entity_id=req.appointment_id
    ) as subject:
        current = await _locked_appointment(ctx.tx, req.appointment_id)
        subject.patient_id = current.patient_id
        if step.own_only and me.role is Role.physician and current.physician_id != me.account_id:
            raise Forbidden(f"Physicians {step.verb} their own appointments only.")
        if current.status not in step.sources:
            raise _refuse_status(current, step.verb)
        _when_allowed(step, current, now, _tz(runtime))
        clear = step is CHECK_IN and current.status == S.no_show
        await store.set_status(
            ctx.tx,
            current.appointment_id,
            step.target.value,
            me.account_id,
            now,
            stamp=step.stamp,
            clear_finished=clear,
        )
        await outbox.add_event(
            ctx.tx,
            step.event,
            step.event.model(
                appointment_id=current.appointment_id,
                physician_id=current.physician_id,
                patient_id=current.patient_id,
                start=current.start,
                end=current.end,
                by=me.account_id,
            ),
        )
        await auditing.written(ctx, subject, f"{current.status} to {step.target.value}")
    changed: dict[str, Any] = {step.stamp: now}
    if clear:
        changed["finished_at"] = None
    return _appointment(
        replace(
            current,
            status=step.target.value,
            updated_by=me.account_id,
            updated_at=now,
            **changed,
        )
    )


@router.handler(sched.CHECK_IN)
async def check_in(req: sched.AppointmentRequest, ctx: CallContext) -> sched.Appointment:
    return await _transition(CHECK_IN, req, ctx)


@router.handler(sched.MARK_NO_SHOW)
async def no_show(req: sched.AppointmentRequest, ctx: CallContext) -> sched.Appointment:
    return await _transition(NO_SHOW, req, ctx)


@router.handler(sched.START_VISIT)
async def start_visit(req: sched.AppointmentRequest, ctx: CallContext) -> sched.Appointment:
    return await _transition(START, req, ctx)


@router.handler(sched.FINISH_VISIT)
async def finish_visit(req: sched.AppointmentRequest, ctx: CallContext) -> sched.Appointment:
    return await _transition(FINISH, req, ctx)


@router.handler(sched.GET_APPOINTMENT)
async def get_appointment(req: sched.AppointmentRequest, ctx: CallContext) -> sched.Appointment:
    runtime, me = runtime_of(ctx), principal_of(ctx)
    async with audited(
        ctx, "appointment.read", AuditAction.read, ENTITY, entity_id=req.appointment_id
    ) as subject:
        row = await store.get_appointment(_db(runtime), req.appointment_id)
        if row is None:
            raise NotFound("unknown appointment", details={"appointment_id": req.appointment_id})
        subject.patient_id = row.patient_id
        if me.role is Role.physician and row.physician_id != me.account_id:
            raise Forbidden("physicians see their own appointments only")
        (plain,) = await _decrypt(runtime, [row])
        await auditing.read(ctx, subject, [row.patient_id])
    return _appointment(row, plain)


# ---------------------------------------------------------------- calendars


def _within_reach(day: date, loc: str) -> None:
    """Days whose neighbours exist (a week either side), so no day arithmetic overflows."""
    if not date.min + timedelta(days=7) <= day <= date.max - timedelta(days=7):
        raise rules.refuse([rules.problem(loc, "There is no calendar for that day.", "no_day")])


@router.handler(sched.CALENDAR)
async def calendar(req: sched.CalendarRequest, ctx: CallContext) -> sched.Calendar:
    runtime = runtime_of(ctx)
    tz = _tz(runtime)
    async with audited(ctx, "calendar.read", AuditAction.read, entity_type="physician") as subject:
        physician_id = calendar_owner(ctx, req.physician_id)
        subject.entity_id = physician_id
        _within_reach(req.day, "day")
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
        plan = await store.plan(database, physician_id, first, last)
        absences = await store.absence_rows(
            database, physician_id, first, last, start - timedelta(days=1), end
        )
        patients = {r.patient_id for r in rows}
        plain = await _decrypt(runtime, rows)
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
            sched.TimeRange(start=s, end=e) for s, e in timeplan.available(plan, first, last, tz)
        ],
        days_off=sorted(plan.days_off),
        absences=[
            _absence_view(a, tz) for a in absences if _overlaps(a.span.interval(tz), start, end)
        ],
        appointments=[_appointment(r, p) for r, p in zip(rows, plain, strict=True)],
    )


def _overlaps(interval: tuple[datetime, datetime], start: datetime, end: datetime) -> bool:
    return interval[0] < end and start < interval[1]


@router.handler(sched.TODAY)
async def today(req: sched.TodayRequest, ctx: CallContext) -> sched.Today:
    """The front desk's day: every status (cancelled and no-shows with their reasons)."""
    runtime = runtime_of(ctx)
    tz = _tz(runtime)
    day = timeplan.local_day(_now(), tz)
    start, end = timeplan.day_bounds(day, day, tz)
    limit = sched.MAX_TODAY_APPOINTMENTS
    async with audited(ctx, "calendar.today", AuditAction.read, entity_type="physician") as subject:
        subject.entity_id = req.physician_id
        database = _db(runtime)
        if req.physician_id is not None:
            await _known_physician(ctx, req.physician_id)
            rows = await store.appointments_between(
                database, req.physician_id, start, end, rules.LONGEST, include_cancelled=True
            )
        else:
            rows = await store.appointments_of_all_between(
                database, start, end, rules.LONGEST, limit + 1
            )
        truncated, rows = len(rows) > limit, rows[:limit]
        plain = await _decrypt(runtime, rows)
        await auditing.read(ctx, subject, {r.patient_id for r in rows})
    return sched.Today(
        day=day,
        time_zone=tz.key,
        start=start,
        end=end,
        appointments=[_appointment(r, p) for r, p in zip(rows, plain, strict=True)],
        truncated=truncated,
    )


@router.handler(sched.FREE_SLOTS)
async def free_slots(req: sched.FreeSlotsRequest, ctx: CallContext) -> sched.FreeSlots:
    """Free time only (no patient data), so neither decrypted nor audited. The slots come
    from the same joined working time as the booking rule, with the day after the range
    (a slot may run past midnight), so every slot offered can be booked."""
    runtime = runtime_of(ctx)
    tz, now = _tz(runtime), _now()
    physician_id = calendar_owner(ctx, req.physician_id)
    await _known_physician(ctx, physician_id)
    found: list[tuple[datetime, datetime]] = []
    truncated = False
    first = max(req.first_day, timeplan.local_day(now, tz))
    last = min(req.last_day, timeplan.local_day(now + rules.HORIZON, tz))
    if first <= last:  # nothing can be booked outside [today, the horizon]
        database = _db(runtime)
        after = last + timedelta(days=1)
        start, end = timeplan.day_bounds(first, after, tz)
        plan = await store.plan(database, physician_id, first, after)
        busy = await store.appointments_between(
            database, physician_id, start, end, rules.LONGEST, include_cancelled=False
        )
        found, truncated = timeplan.free_slots(
            plan,
            [(r.start, r.end) for r in busy],
            first,
            last,
            tz,
            now,
            timedelta(minutes=req.duration_minutes),
            req.limit,
        )
        found = [(s, e) for s, e in found if s <= now + rules.HORIZON]
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


# ---------------------------------------------------------------- FHIR (contracts.fhir)
# Each FHIR read is its own signed operation, served by the read above that it stands
# for (same checks, decryption under its own grant, audit); the gateway maps the reply.


@router.handler(fhir.APPOINTMENT_SEARCH)
async def fhir_appointment_search(req: fhir.AppointmentSearch, ctx: CallContext) -> sched.Calendar:
    """`Appointment?practitioner=&date=`: that physician's day, cancelled ones included."""
    return await calendar(sched.CalendarRequest(physician_id=req.practitioner, day=req.date), ctx)


@router.handler(fhir.APPOINTMENT_READ)
async def fhir_appointment(req: fhir.AppointmentRead, ctx: CallContext) -> sched.Appointment:
    return await get_appointment(sched.AppointmentRequest(appointment_id=req.appointment_id), ctx)
