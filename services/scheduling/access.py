"""Who may act, and on whose calendar; whether the patient and physician exist.

Roles are checked by the runtime before a handler runs (from the contract), and the
acting principal is the account that signed the request (the runtime verifies the
forwarded signature, `mesh.proofs`): a booking forged on the bus is refused before any
handler runs, although booking decrypts nothing.
"""

from __future__ import annotations

from contracts.auth import AccountRecord, AccountStatus
from contracts.base import Principal, Role
from contracts.records import PATIENT_REF, PatientRefRequest
from mesh.context import CallContext
from mesh.errors import Forbidden, NotFound, invalid_field
from mesh.runtime import Runtime


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
        raise invalid_field("physician_id", "physician_id is required", "missing")
    return physician_id


async def _account(runtime: Runtime, account_id: str) -> AccountRecord | None:
    """The account as auth stores it (row MAC verified), cached by the runtime."""
    return await runtime.accounts.get(account_id) if runtime.accounts else None


async def require_physician(runtime: Runtime, physician_id: str) -> None:
    """An active physician account (as auth knows it, row MAC verified), else 422."""
    record = await _account(runtime, physician_id)
    if record is None:
        raise invalid_field(
            "physician_id", f"unknown physician {physician_id!r}", "unknown_physician"
        )
    if record.account.role is not Role.physician:
        raise invalid_field(
            "physician_id", f"{physician_id!r} is not a physician", "not_a_physician"
        )
    if record.account.status is not AccountStatus.active:
        raise invalid_field("physician_id", f"physician {physician_id!r} is disabled", "disabled")


async def require_patient(runtime: Runtime, patient_id: str) -> None:
    """A patient the records service knows, else 422."""
    try:
        ref = await runtime.rpc.call(PATIENT_REF, PatientRefRequest(patient_id=patient_id))
    except NotFound:
        ref = None
    if ref is None or not ref.exists:
        raise invalid_field("patient_id", f"unknown patient {patient_id!r}", "unknown_patient")


async def physician_name(runtime: Runtime, physician_id: str) -> str:
    """How refusals name the physician ("Dr Berg"): the account's display name."""
    record = await _account(runtime, physician_id)
    return record.account.display_name if record is not None else "The physician"
