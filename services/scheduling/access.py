"""Who may act, and on whose calendar; whether the patient and physician exist.

Roles are checked by the runtime before a handler runs (from the contract). A principal
in a message's headers is only as good as whoever put it there, so the caller's
forwarded request signature is checked too: here against the caller's registered key
(writes, and reads that decrypt nothing), or by the keyvault before it decrypts. A
forged booking on the bus is refused even though booking decrypts nothing.
"""

from __future__ import annotations

import base64
import time

from pydantic import ValidationError

from contracts.auth import AccountRecord, AccountStatus
from contracts.base import Principal, Role
from contracts.records import PATIENT_REF, PatientRefRequest
from mesh.context import CallContext
from mesh.errors import Forbidden, InvalidRequest, NotFound, RpcError, Unauthenticated
from mesh.httpsig import RequestProof, SignatureError, parse_proof, verify_proof
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
    me = principal_of(ctx)
    if ctx.proof is None:
        raise Unauthenticated("this request needs the user's forwarded request signature")
    try:
        proof = RequestProof.model_validate_json(ctx.proof)
        key_id = parse_proof(proof).key_id
    except (ValidationError, ValueError):
        raise Unauthenticated("the forwarded request signature is malformed") from None
    except SignatureError as exc:
        raise Unauthenticated(f"request signature refused: {exc.message}") from None
    if key_id != me.account_id:
        raise Unauthenticated("the request was not signed by the acting principal")
    record = await _account(runtime_of(ctx), me.account_id)
    if record is None:
        raise Unauthenticated("the signing account does not exist")
    account = record.account
    if account.status is not AccountStatus.active:
        raise Unauthenticated("the signing account is disabled")
    if account.role is not me.role:
        raise Unauthenticated("the acting principal's role does not match the signing account")
    settings = runtime_of(ctx).settings
    try:
        verify_proof(
            proof,
            base64.b64decode(account.public_key),
            now=time.time(),
            window_s=settings.signature_window_s,
            skew_s=settings.signature_skew_s,
        )
    except SignatureError as exc:
        raise Unauthenticated(f"request signature refused: {exc.message}") from None
    return me


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
