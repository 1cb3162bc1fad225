"""Calendars: a physician's days, the front desk's day, free slots, care relationships."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from contracts import scheduling as sched
from contracts.audit import AuditAction, AuditType
from mesh import auditing
from mesh.auditing import audited
from mesh.context import CallContext, runtime_of
from services.scheduling import availability, rules, steps, store, timeplan
from services.scheduling.access import calendar_owner


def _within_reach(day: date, loc: str) -> None:
    """Days whose neighbours exist (a week either side), so no day arithmetic overflows."""
    if not date.min + timedelta(days=7) <= day <= date.max - timedelta(days=7):
        raise rules.refuse([rules.problem(loc, "There is no calendar for that day.", "no_day")])


async def calendar(req: sched.CalendarRequest, ctx: CallContext) -> sched.Calendar:
    runtime = runtime_of(ctx)
    tz = steps.tz(runtime)
    async with audited(
        ctx, AuditType.calendar_read, AuditAction.read, entity_type="physician"
    ) as subject:
        physician_id = calendar_owner(ctx, req.physician_id)
        subject.entity_id = physician_id
        _within_reach(req.day, "day")
        await availability.known_physician(ctx, physician_id)
        first, last = timeplan.span_days(req.day, req.span)
        start, end = timeplan.day_bounds(first, last, tz)
        database = steps.db(runtime)
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
        plain = await steps.decrypt(runtime, rows)
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
            availability.absence_view(a, tz)
            for a in absences
            if _overlaps(a.span.interval(tz), start, end)
        ],
        appointments=[steps.appointment(r, p) for r, p in zip(rows, plain, strict=True)],
    )


def _overlaps(interval: tuple[datetime, datetime], start: datetime, end: datetime) -> bool:
    return interval[0] < end and start < interval[1]


async def today(req: sched.TodayRequest, ctx: CallContext) -> sched.Today:
    """The front desk's day: every status (cancelled and no-shows with their reasons)."""
    runtime = runtime_of(ctx)
    tz = steps.tz(runtime)
    day = timeplan.local_day(steps.now(), tz)
    start, end = timeplan.day_bounds(day, day, tz)
    limit = sched.MAX_TODAY_APPOINTMENTS
    async with audited(
        ctx, AuditType.calendar_today, AuditAction.read, entity_type="physician"
    ) as subject:
        subject.entity_id = req.physician_id
        database = steps.db(runtime)
        if req.physician_id is not None:
            await availability.known_physician(ctx, req.physician_id)
            rows = await store.appointments_between(
                database, req.physician_id, start, end, rules.LONGEST, include_cancelled=True
            )
        else:
            rows = await store.appointments_of_all_between(
                database, start, end, rules.LONGEST, limit + 1
            )
        truncated, rows = len(rows) > limit, rows[:limit]
        plain = await steps.decrypt(runtime, rows)
        await auditing.read(ctx, subject, {r.patient_id for r in rows})
    return sched.Today(
        day=day,
        time_zone=tz.key,
        start=start,
        end=end,
        appointments=[steps.appointment(r, p) for r, p in zip(rows, plain, strict=True)],
        truncated=truncated,
    )


async def free_slots(req: sched.FreeSlotsRequest, ctx: CallContext) -> sched.FreeSlots:
    """Free time only (no patient data), so neither decrypted nor audited. The slots come
    from the same joined working time as the booking rule, with the day after the range
    (a slot may run past midnight), so every slot offered can be booked."""
    runtime = runtime_of(ctx)
    tz, now = steps.tz(runtime), steps.now()
    physician_id = calendar_owner(ctx, req.physician_id)
    await availability.known_physician(ctx, physician_id)
    found: list[tuple[datetime, datetime]] = []
    truncated = False
    first = max(req.first_day, timeplan.local_day(now, tz))
    last = min(req.last_day, timeplan.local_day(now + rules.HORIZON, tz))
    if first <= last:  # nothing can be booked outside [today, the horizon]
        database = steps.db(runtime)
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
