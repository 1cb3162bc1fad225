"""The attendance rule, enforced twice: by the gateway before it calls a service, and by
the keyvault before it decrypts or blind-indexes anything for a signed operation.

Both decide with the same pure function (`contracts.attendance.duty_required`) on the
same signed request (the gateway's RPC request, the keyvault's rebuilt operation), and
both ask auth (`auth.on_duty`) afresh each time, so a taken-over gateway that skips its
own check still meets the keyvault's. An off-duty physician or receptionist gets 403
`off_duty` with a sentence saying why; a physician off duty still reaches one patient's
chart under a break-glass grant for that patient (asked of records' access rule), audited
as emergency access (ETREAT). Whatever cannot be asked (auth or records unreachable, a
timeout) refuses the request: 503, never a request let through.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from contracts import attendance as att
from contracts.audit import AuditAction, AuditOutcome, AuditType
from contracts.base import Principal, Role, RpcMethod
from contracts.records import MAY_READ, CareBasis, MayReadRequest
from mesh import audit
from mesh.errors import OffDuty, RpcError, Unavailable
from mesh.logging import get_logger
from mesh.runtime import Runtime
from mesh.settings import Settings

log = get_logger("mesh.attendance")
EMERGENCY = "ETREAT"


def off_duty_areas(settings: Settings, role: Role) -> frozenset[att.Area]:
    """What `role` keeps off duty (`MEDIHAVEN_ATTENDANCE_OFF_DUTY_<ROLE>`); an unknown
    name is ignored (less stays open, never more)."""
    raw = {
        Role.physician: settings.attendance_off_duty_physician,
        Role.receptionist: settings.attendance_off_duty_receptionist,
    }.get(role, "")
    names = {name.strip() for name in raw.split(",") if name.strip()}
    known = {a.value for a in att.Area}
    for unknown in sorted(names - known):
        log.warning("attendance.unknown_area", area=unknown, known=sorted(known))
    return frozenset(att.Area(n) for n in names & known)


def needs_duty(
    settings: Settings, principal: Principal, method: RpcMethod[Any, Any], request: Any
) -> bool:
    if not settings.attendance_enforced:
        return False
    areas = off_duty_areas(settings, principal.role)
    return att.duty_required(method, principal.role, principal.account_id, request, areas)


def _clock(settings: Settings, value: datetime) -> str:
    local = value.astimezone(ZoneInfo(settings.clinic_timezone))
    return local.strftime("%H:%M on %a %-d %b")


def why(settings: Settings, status: att.DutyStatus, role: Role) -> str:
    """The refusal in a sentence a clinic worker understands."""
    if status.checked_out_at is not None:
        reason = f"you checked out at {_clock(settings, status.checked_out_at)}"
    elif status.since is not None and status.until is not None:
        reason = (
            f"your shift that began at {_clock(settings, status.since)} ended by itself "
            f"after {settings.attendance_max_shift_h:g} hours without a check-out"
        )
    else:
        reason = "the attendance system has no check-in for you"
    way_in = "check in at the time clock, or ask an administrator to check you in"
    if role is Role.physician:
        way_in += "; in an emergency, open the patient's chart with break-glass"
    return f"You are not on duty ({reason}), so patient data is closed to you: {way_in}."


async def _audit(
    runtime: Runtime,
    type: AuditType,
    outcome: AuditOutcome,
    principal: Principal,
    method: RpcMethod[Any, Any],
    patient_id: str | None,
    detail: str,
    *,
    purpose: str | None = None,
) -> None:
    event = audit.make_event(
        runtime.identity or runtime.name,
        type,
        AuditAction.execute,
        outcome,
        principal=principal,
        patient_id=patient_id,
        purpose_of_use=purpose,
        detail=f"{method.route_text}: {detail}",
    )
    await audit.record(runtime, event)


async def _refusal(runtime: Runtime, type: AuditType, *args: Any) -> None:
    try:
        await _audit(runtime, type, AuditOutcome.refused, *args)
    except RpcError:
        log.warning("attendance.refusal_not_audited", type=type)


async def duty_of(runtime: Runtime, principal: Principal, method: RpcMethod[Any, Any]) -> Any:
    try:
        return await runtime.rpc.call(
            att.ON_DUTY, att.OnDutyRequest(account_id=principal.account_id)
        )
    except RpcError as exc:
        log.error("attendance.state_unreadable", error=exc.message)
        await _refusal(
            runtime, AuditType.attendance_unreadable, principal, method, None, f"{exc.code.value}"
        )
        raise Unavailable(
            "the attendance state cannot be read just now, so patient data is refused; "
            "try again in a moment"
        ) from None


async def _break_glass(runtime: Runtime, physician_id: str, patient_id: str) -> bool:
    try:
        reply = await runtime.rpc.call(
            MAY_READ,
            MayReadRequest(physician_id=physician_id, patient_id=patient_id, break_glass_only=True),
        )
    except RpcError as exc:
        log.error("attendance.break_glass_unreadable", error=exc.message)
        raise Unavailable(
            "emergency access cannot be checked just now, so patient data is refused; "
            "try again in a moment"
        ) from None
    return reply.allowed and reply.basis is CareBasis.break_glass


async def enforce(
    runtime: Runtime, principal: Principal | None, method: RpcMethod[Any, Any], request: Any
) -> bool:
    """Raise OffDuty (403) or Unavailable (503) unless `principal` may be served `method`
    now; True when it is served off duty as emergency access (audited, confirmed)."""
    settings = runtime.settings
    if principal is None or not settings.attendance_enforced:
        return False
    patient = getattr(request, "patient_id", None)
    patient_id = patient if isinstance(patient, str) else None
    if method.name in att.BREAK_GLASS_DOOR and principal.role in att.ON_DUTY_ROLES:
        status = await duty_of(runtime, principal, method)
        if not status.on_duty:  # the door itself stays open; say who used it off duty
            await _audit(
                runtime,
                AuditType.attendance_off_duty_break_glass,
                AuditOutcome.success,
                principal,
                method,
                patient_id,
                "break-glass opened while off duty",
                purpose=EMERGENCY,
            )
        return not status.on_duty
    if not needs_duty(settings, principal, method, request):
        return False
    status = await duty_of(runtime, principal, method)
    if status.on_duty:
        return False
    if (
        principal.role is Role.physician
        and patient_id is not None
        and method.name in att.BREAK_GLASS_ROUTES
        and await _break_glass(runtime, principal.account_id, patient_id)
    ):
        await _audit(
            runtime,
            AuditType.attendance_off_duty_emergency,
            AuditOutcome.success,
            principal,
            method,
            patient_id,
            "served off duty under break-glass",
            purpose=EMERGENCY,
        )
        return True
    await _refusal(
        runtime, AuditType.attendance_off_duty_refused, principal, method, patient_id, "not on duty"
    )
    raise OffDuty(
        why(settings, status, principal.role),
        details={"reason": "off_duty", "status": status.model_dump(mode="json")},
    )
