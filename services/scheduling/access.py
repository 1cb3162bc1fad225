"""Who may act, and on whose calendar; whether the patient and physician exist.

Roles are checked by the runtime before a handler runs (from the contract). A principal
in a message's headers is only as good as whoever put it there, so the caller's
forwarded request signature is checked too: here against the caller's registered key
(writes, and reads that decrypt nothing), or by the keyvault before it decrypts. A
forged booking on the bus is refused even though booking decrypts nothing.
"""

from __future__ import annotations

from contracts.auth import AccountRecord, AccountStatus
from contracts.base import Principal, Role
from contracts.records import PATIENT_REF, PatientRefRequest
from mesh.callers import require_signed_by
from mesh.context import CallContext
from mesh.errors import Forbidden, InvalidRequest, NotFound, RpcError
from mesh.runtime import Runtime
from services.scheduling.accounts import accounts_of


def runtime_of(ctx: CallContext) -> Runtime:
    assert ctx.runtime is not None and ctx.runtime.db is not None
    return ctx.runtime


def principal_of(ctx: CallContext) -> Principal:
    assert ctx.principal is not None  # every scheduling method requires a role
    return ctx.principal


def calendar_owner(ctx: CallContext, physician_id: str | None) -> str:
    """The physician whose calendar the caller means: physicians only their own."""
    me = principal_of(ctx)
    if me.role is Role.physician:
        if physician_id not in (None, me.account_id):
            raise Forbidden(
                "physicians may see and change only their own calendar",
                details={"physician_id": physician_id},
            )
        return me.account_id
    if physician_id is None:
        raise _invalid("physician_id", "physician_id is required", "missing")
    return physician_id


async def _account(runtime: Runtime, account_id: str) -> AccountRecord | None:
    return await accounts_of(runtime).get(runtime, account_id)


async def require_signed(ctx: CallContext) -> Principal:
    """The caller, if the forwarded proof is fresh and made by the caller's own active key."""
    runtime = runtime_of(ctx)
    await require_signed_by(ctx, lambda account_id: _account(runtime, account_id))
    return principal_of(ctx)


async def require_physician(runtime: Runtime, physician_id: str) -> None:
    """An active physician account (as auth knows it, row MAC verified), else 422."""
    record = await _account(runtime, physician_id)
    if record is None:
        raise _invalid("physician_id", f"unknown physician {physician_id!r}", "unknown_physician")
    if record.account.role is not Role.physician:
        raise _invalid("physician_id", f"{physician_id!r} is not a physician", "not_a_physician")
    if record.account.status is not AccountStatus.active:
        raise _invalid("physician_id", f"physician {physician_id!r} is disabled", "disabled")


async def require_patient(runtime: Runtime, patient_id: str) -> None:
    """A patient the records service knows, else 422."""
    try:
        ref = await runtime.rpc.call(PATIENT_REF, PatientRefRequest(patient_id=patient_id))
    except NotFound:
        ref = None
    if ref is None or not ref.exists:
        raise _invalid("patient_id", f"unknown patient {patient_id!r}", "unknown_patient")


def _invalid(loc: str, msg: str, kind: str) -> RpcError:
    return InvalidRequest(msg, details=[{"loc": [loc], "msg": msg, "type": kind}])
