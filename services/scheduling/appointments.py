"""Appointments: book, reschedule, cancel, read one."""

from __future__ import annotations

import uuid
from dataclasses import replace

from contracts import scheduling as sched
from contracts.audit import AuditAction, AuditType
from contracts.base import Role
from mesh import auditing
from mesh.auditing import audited
from mesh.context import CallContext, runtime_of
from mesh.errors import Forbidden, NotFound
from services.scheduling import access, rules, steps, store
from services.scheduling.access import principal_of
from services.scheduling.store import AppointmentRow


async def book(req: sched.BookRequest, ctx: CallContext) -> sched.Appointment:
    runtime, me, now = runtime_of(ctx), principal_of(ctx), steps.now()
    appointment_id = str(uuid.uuid4())
    async with audited(
        ctx,
        AuditType.appointment_book,
        AuditAction.create,
        steps.ENTITY,
        patient_id=req.patient_id,
        entity_id=appointment_id,
    ) as subject:
        rules.check_times(req.start, req.end, now)
        binding = steps.binding(req.patient_id, req.physician_id)
        encrypted, *_ = await rules.concurrently(
            steps.encrypt(runtime, appointment_id, {steps.REASON: req.reason}, binding),
            access.require_physician(runtime, req.physician_id),
            access.require_patient(runtime, req.patient_id),
        )
        await steps.lock_and_check_slot(ctx.tx, runtime, req.physician_id, req.start, req.end)
        row = AppointmentRow(
            appointment_id=appointment_id,
            physician_id=req.physician_id,
            patient_id=req.patient_id,
            start=req.start,
            end=req.end,
            status=sched.AppointmentStatus.booked.value,
            reason_enc=encrypted[steps.REASON],
            cancel_reason_enc=None,
            booked_by=me.account_id,
            updated_by=me.account_id,
            created_at=now,
            updated_at=now,
        )
        await store.insert_appointment(ctx.tx, row)
        await store.bump_version(ctx.tx, req.physician_id)
        await steps.add_event(ctx.tx, sched.APPOINTMENT_BOOKED, row, me.account_id)
        await auditing.written(ctx, subject)
    return steps.appointment(row)


async def reschedule(req: sched.RescheduleRequest, ctx: CallContext) -> sched.Appointment:
    runtime, me, now = runtime_of(ctx), principal_of(ctx), steps.now()
    async with steps.audited_appointment(
        ctx, AuditType.appointment_reschedule, AuditAction.update, req.appointment_id
    ) as subject:
        rules.check_times(req.start, req.end, now)
        # Lock order everywhere: appointment row, then physician row.
        current = await steps.locked_for(ctx.tx, subject, req.appointment_id)
        steps.require_booked(current, now, "reschedule")
        await steps.lock_and_check_slot(
            ctx.tx, runtime, current.physician_id, req.start, req.end, current.appointment_id
        )
        await store.move(ctx.tx, current.appointment_id, req.start, req.end, me.account_id, now)
        await store.bump_version(ctx.tx, current.physician_id)
        await steps.add_event(
            ctx.tx,
            sched.APPOINTMENT_RESCHEDULED,
            current,
            me.account_id,
            start=req.start,
            end=req.end,
            previous_start=current.start,
            previous_end=current.end,
        )
        await auditing.written(
            ctx, subject, f"from {current.start.isoformat()} to {req.start.isoformat()}"
        )
    return steps.appointment(
        replace(current, start=req.start, end=req.end, updated_by=me.account_id, updated_at=now)
    )


async def cancel(req: sched.CancelRequest, ctx: CallContext) -> sched.Appointment:
    runtime, me, now = runtime_of(ctx), principal_of(ctx), steps.now()
    async with steps.audited_appointment(
        ctx, AuditType.appointment_cancel, AuditAction.update, req.appointment_id
    ) as subject:
        current = await steps.locked_for(ctx.tx, subject, req.appointment_id)
        steps.require_booked(current, now, "cancel")
        encrypted = await steps.encrypt(
            runtime,
            req.appointment_id,
            {steps.CANCEL_REASON: req.reason},
            steps.binding(current.patient_id, current.physician_id),
        )
        status = sched.AppointmentStatus.cancelled.value
        await store.set_status(
            ctx.tx,
            current.appointment_id,
            status,
            me.account_id,
            now,
            encrypted[steps.CANCEL_REASON],
        )
        await steps.add_event(ctx.tx, sched.APPOINTMENT_CANCELLED, current, me.account_id)
        await auditing.written(ctx, subject)
    return steps.appointment(
        replace(current, status=status, updated_by=me.account_id, updated_at=now)
    )


async def get_appointment(req: sched.AppointmentRequest, ctx: CallContext) -> sched.Appointment:
    runtime, me = runtime_of(ctx), principal_of(ctx)
    async with steps.audited_appointment(
        ctx, AuditType.appointment_read, AuditAction.read, req.appointment_id
    ) as subject:
        row = await store.get_appointment(steps.db(runtime), req.appointment_id)
        if row is None:
            raise NotFound("unknown appointment", details={"appointment_id": req.appointment_id})
        subject.patient_id = row.patient_id
        if me.role is Role.physician and row.physician_id != me.account_id:
            raise Forbidden("physicians see their own appointments only")
        (plain,) = await steps.decrypt(runtime, [row])
        await auditing.read(ctx, subject, [row.patient_id])
    return steps.appointment(row, plain)
