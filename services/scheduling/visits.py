"""The appointment's day: check-in, no-show, start and finish of the visit."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from contracts import scheduling as sched
from contracts.audit import AuditAction, AuditType
from contracts.base import Role
from mesh import auditing
from mesh.context import CallContext, runtime_of
from mesh.errors import Conflict, Forbidden
from services.scheduling import rules, steps, store, timeplan
from services.scheduling.access import principal_of
from services.scheduling.store import AppointmentRow


@dataclass(frozen=True)
class Step:
    """One step of an appointment's day: from which statuses, to which, when, who."""

    audit: AuditType
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
    AuditType.appointment_check_in,
    "check in",
    frozenset({S.booked, S.no_show}),
    S.arrived,
    "arrived_at",
    sched.APPOINTMENT_CHECKED_IN,
)
NO_SHOW = Step(
    AuditType.appointment_no_show,
    "mark as a no-show",
    frozenset({S.booked}),
    S.no_show,
    "finished_at",
    sched.APPOINTMENT_NO_SHOW,
)
START = Step(
    AuditType.appointment_start,
    "start",
    frozenset({S.booked, S.arrived}),
    S.in_progress,
    "started_at",
    sched.APPOINTMENT_STARTED,
    own_only=True,
)
FINISH = Step(
    AuditType.appointment_finish,
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
    runtime, me, now = runtime_of(ctx), principal_of(ctx), steps.now()
    async with steps.audited_appointment(
        ctx, step.audit, AuditAction.update, req.appointment_id
    ) as subject:
        current = await steps.locked_for(ctx.tx, subject, req.appointment_id)
        if step.own_only and me.role is Role.physician and current.physician_id != me.account_id:
            raise Forbidden(f"Physicians {step.verb} their own appointments only.")
        if current.status not in step.sources:
            raise steps.refuse_status(current, step.verb)
        _when_allowed(step, current, now, steps.tz(runtime))
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
        await steps.add_event(ctx.tx, step.event, current, me.account_id)
        await auditing.written(ctx, subject, f"{current.status} to {step.target.value}")
    changed: dict[str, Any] = {step.stamp: now}
    if clear:
        changed["finished_at"] = None
    return steps.appointment(
        replace(
            current,
            status=step.target.value,
            updated_by=me.account_id,
            updated_at=now,
            **changed,
        )
    )


async def check_in(req: sched.AppointmentRequest, ctx: CallContext) -> sched.Appointment:
    return await _transition(CHECK_IN, req, ctx)


async def no_show(req: sched.AppointmentRequest, ctx: CallContext) -> sched.Appointment:
    return await _transition(NO_SHOW, req, ctx)


async def start_visit(req: sched.AppointmentRequest, ctx: CallContext) -> sched.Appointment:
    return await _transition(START, req, ctx)


async def finish_visit(req: sched.AppointmentRequest, ctx: CallContext) -> sched.Appointment:
    return await _transition(FINISH, req, ctx)
