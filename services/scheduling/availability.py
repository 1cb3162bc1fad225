"""Availability: working hours, breaks, days off, absences, and reading them back."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from contracts import scheduling as sched
from contracts.audit import AuditAction, AuditType
from mesh import auditing, outbox
from mesh.auditing import audited
from mesh.context import CallContext, runtime_of
from mesh.db import Sql
from mesh.errors import InvalidRequest, NotFound
from mesh.runtime import Runtime
from services.scheduling import access, rules, steps, store, timeplan
from services.scheduling.access import calendar_owner, principal_of
from services.scheduling.store import AbsenceRow, AppointmentRow


def absence_view(row: AbsenceRow, tz: ZoneInfo) -> sched.Absence:
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
    tz, now = steps.tz(runtime), steps.now()
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
        absences=[absence_view(a, tz) for a in absences],
        affected=[steps.slot(r) for r in affected],
    )


async def _affected(conn: Sql, runtime: Runtime, physician_id: str) -> list[AppointmentRow]:
    """Booked future appointments that the physician's working time no longer covers
    (the booking rule, `timeplan.bookable`, over one joined plan of all their days)."""
    tz = steps.tz(runtime)
    booked = await store.booked_from(conn, physician_id, steps.now())
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
    await steps.lock(ctx.tx, physician_id)


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


async def _set_weekly(
    ctx: CallContext,
    requested: str | None,
    weekly: Iterable[sched.WorkingPeriod],
    replace: Callable[[Sql, str, list[tuple[int, int, int]]], Awaitable[None]],
    detail: str,
) -> sched.Availability:
    """Replace one weekly table (hours or breaks); `detail` takes the number of periods."""
    async with audited(
        ctx, AuditType.availability_change, AuditAction.update, entity_type="physician"
    ) as subject:
        physician_id = calendar_owner(ctx, requested)
        subject.entity_id = physician_id
        periods = rules.weekly_periods(weekly)
        await _roster_change(ctx, physician_id)
        await replace(ctx.tx, physician_id, periods)
        return await _roster_changed(ctx, subject, physician_id, detail.format(len(periods)))


async def set_working_hours(
    req: sched.SetWorkingHoursRequest, ctx: CallContext
) -> sched.Availability:
    return await _set_weekly(
        ctx, req.physician_id, req.weekly, store.replace_weekly_hours, "working hours: {} periods"
    )


async def set_breaks(req: sched.SetBreaksRequest, ctx: CallContext) -> sched.Availability:
    return await _set_weekly(
        ctx, req.physician_id, req.breaks, store.replace_weekly_breaks, "breaks: {}"
    )


async def set_days_off(req: sched.SetDaysOffRequest, ctx: CallContext) -> sched.Availability:
    runtime = runtime_of(ctx)
    async with audited(
        ctx, AuditType.availability_change, AuditAction.update, entity_type="physician"
    ) as subject:
        physician_id = calendar_owner(ctx, req.physician_id)
        subject.entity_id = physician_id
        rules.check_days_off(req.add, timeplan.local_day(steps.now(), steps.tz(runtime)))
        await _roster_change(ctx, physician_id)
        await store.change_days_off(ctx.tx, physician_id, req.add, req.remove)
        return await _roster_changed(
            ctx, subject, physician_id, f"days off: {len(req.add)} added, {len(req.remove)} removed"
        )


async def change_absences(req: sched.ChangeAbsencesRequest, ctx: CallContext) -> sched.Availability:
    runtime, me, now = runtime_of(ctx), principal_of(ctx), steps.now()
    async with audited(
        ctx, AuditType.availability_change, AuditAction.update, entity_type="physician"
    ) as subject:
        physician_id = calendar_owner(ctx, req.physician_id)
        subject.entity_id = physician_id
        spans = rules.check_absences(req.add, now, steps.tz(runtime))
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


async def availability(req: sched.AvailabilityRequest, ctx: CallContext) -> sched.Availability:
    runtime = runtime_of(ctx)
    physician_id = calendar_owner(ctx, req.physician_id)
    await known_physician(ctx, physician_id)
    return await _availability(steps.db(runtime), runtime, physician_id)


async def known_physician(ctx: CallContext, physician_id: str) -> None:
    """For reads: a physician with a calendar here, or at least an account (else 404)."""
    runtime = runtime_of(ctx)
    if principal_of(ctx).account_id == physician_id:
        return
    if await store.has_calendar(steps.db(runtime), physician_id):
        return
    try:
        await access.require_physician(runtime, physician_id)
    except InvalidRequest as exc:
        raise NotFound(exc.message, details={"physician_id": physician_id}) from None
