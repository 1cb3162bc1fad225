"""Who may act, on which patient, and proof that the caller is who the headers say.

Roles come from the contract and are checked by the runtime before a handler runs. A
principal in a message's headers is only as good as whoever put it there, so nothing
here trusts it alone: reads and searches go through the keyvault's signature gate
(DECRYPT, BLIND_INDEX), and writes that encrypt only (which the keyvault serves to any
service) check the caller's forwarded request signature here, against the caller's
registered key as auth serves it (`RESOLVE_KEY` with the row MAC verified).
"""

from __future__ import annotations

from contracts import records as rec
from contracts.auth import RESOLVE_KEY, AccountRecord, ResolveKeyRequest
from contracts.base import Principal, Role
from mesh.callers import require_signed_by
from mesh.context import CallContext
from mesh.errors import Forbidden, NotFound
from mesh.runtime import Runtime


def runtime_of(ctx: CallContext) -> Runtime:
    assert ctx.runtime is not None and ctx.runtime.db is not None
    return ctx.runtime


def principal_of(ctx: CallContext) -> Principal:
    assert ctx.principal is not None  # every patient-data method requires a role
    return ctx.principal


async def check_patient_access(ctx: CallContext, patient_id: str, *, clinical: bool = True) -> None:
    """The one place for per-patient rules, called by every handler once it knows which
    patient a request concerns, before any patient data is decrypted, returned or written
    (it may run alongside reads of the patient's ciphertext rows, which reveal nothing).

    Receptionists see demographics only (the role table); a physician reads a patient's
    clinical data only with a care relationship (`care.decide`); recording a new
    encounter is allowed without one, since that encounter then establishes it.
    """
    me = principal_of(ctx)
    if me.role is not Role.physician or not clinical or ctx.method == rec.ADD_ENCOUNTER.name:
        return
    from services.records.care import decide

    decision = await decide(runtime_of(ctx), me.account_id, patient_id)
    if not decision.allowed:
        raise Forbidden(
            "you have no care relationship with this patient (no appointment in the care "
            "window and no encounter you recorded); in an emergency, open the chart with "
            "break-glass, giving a reason",
            details={"patient_id": patient_id, "break_glass": True},
        )


async def resolve_account(runtime: Runtime, account_id: str) -> AccountRecord | None:
    """The account as auth stores it, its row MAC verified (None if there is none)."""
    try:
        return await runtime.rpc.call(RESOLVE_KEY, ResolveKeyRequest(account_id=account_id))
    except NotFound:
        return None


async def require_signed(ctx: CallContext) -> AccountRecord:
    """The caller's account, if the forwarded proof is fresh and made by its active key."""
    runtime = runtime_of(ctx)
    return await require_signed_by(ctx, lambda account_id: resolve_account(runtime, account_id))
