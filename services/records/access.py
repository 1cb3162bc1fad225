"""Who may act, on which patient.

Roles come from the contract, and the acting principal from the user's own signature:
the runtime verifies the forwarded proof before any handler runs (`mesh.proofs`), so a
principal in a message's headers counts for nothing here. What is left is the per-patient
rule, checked by every handler once it knows the patient.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from contracts.audit import AuditAction, AuditType
from contracts.base import Principal, Role
from mesh.auditing import Subject, audited
from mesh.context import CallContext, runtime_of
from mesh.db import Database
from mesh.errors import Forbidden
from mesh.rpc import RpcServer
from mesh.runtime import Runtime, service_state


@dataclass
class RecordsState:
    """What a records process holds beside its runtime (`service_state`)."""

    lookup_db: Database | None = None
    """The pool of `lookups` (set at start-up by `care.start_access_server`)."""
    access_server: RpcServer | None = None
    """The server of `recordsaccess`, records' access decisions."""


def state_of(runtime: Runtime) -> RecordsState:
    return service_state(runtime, RecordsState)


def lookups(runtime: Runtime) -> Database:
    """The pool for short reads that need no transaction (care relationships, the catalog,
    what other services ask): never the pool a write's transaction holds a connection of,
    and never inside that transaction's snapshot (`store.lock_patient`)."""
    pool = state_of(runtime).lookup_db or runtime.db
    assert pool is not None
    return pool


def principal_of(ctx: CallContext) -> Principal:
    assert ctx.principal is not None  # every patient-data method requires a role
    return ctx.principal


async def check_patient_access(ctx: CallContext, patient_id: str, *, clinical: bool = True) -> None:
    """The one place for per-patient rules, called by every handler once it knows which
    patient a request concerns, before any patient data is decrypted, returned or written
    (it may run alongside reads of the patient's ciphertext rows, which reveal nothing).

    Receptionists see demographics only (the role table); a physician reads or writes a
    patient's clinical data only with a care relationship (`care.decide`): an appointment,
    an encounter they recorded before, or break-glass. Recording an encounter needs one
    too: an encounter would otherwise grant its author the very access it needs.
    """
    me = principal_of(ctx)
    if me.role is not Role.physician or not clinical:
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


@asynccontextmanager
async def audited_patient(
    ctx: CallContext,
    type: AuditType,
    action: AuditAction,
    entity_type: str,
    patient_id: str,
    *,
    entity_id: str | None = None,
) -> AsyncIterator[Subject]:
    """`audited`, for a request that names its patient: the patient's rules
    (`check_patient_access`) are checked first, inside the audited block."""
    async with audited(
        ctx, type, action, entity_type, patient_id=patient_id, entity_id=entity_id
    ) as subject:
        await check_patient_access(ctx, patient_id)
        yield subject
