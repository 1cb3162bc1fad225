"""A bulk export's second signature, checked by the keyvault itself (`contracts.fhirexport`).

The export's approving DECRYPT comes on the approving administrator's proof (verified, fresh
and used once by the runtime, like every proof); its grant is `countersigned`, so it is
served only with the kick-off's proof as well. Here: that proof is a valid signature of
an export kick-off (its signature at most `APPROVAL_WINDOW_S` old) by an active
administrator whose account row the keyvault verified; the two signers are different
administrators; the approval names that very kick-off (its digest is the job id); and a
Group export's rows belong only to patients in that physician's care. A records service
or gateway that is taken over cannot export with one administrator's signatures, even
with two of them: they are one signer.

An approval that passes opens the job's export session (`open_session`): from then on,
until it expires, the keyvault serves that job's pages (`fx.EXPORT_DECRYPT`) without a
fresh signature, which is what lets an export of any size run in pages and resume after
a crash. What a taken-over records (or scheduling) service can do with an open session:
decrypt the export's tables for patients in ascending id order from the session's floor,
once through (a page may be asked again, an earlier one never), until the session
expires: what the two administrators approved, and no more.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from contracts import fhirexport as fx
from contracts import keyvault as kv
from contracts import records as rec
from contracts.base import Principal, Role
from mesh.context import CallContext
from mesh.db import Database
from mesh.errors import Forbidden, RpcError, Unauthenticated
from mesh.httpsig import RequestProof
from mesh.proofs import Operation, verify_operation
from services.keyvault import store


def _refused(why: str) -> RpcError:
    return Forbidden(f"the keyvault does not decrypt this export: {why}")


def _administrator(principal: Principal | None, who: str) -> Principal:
    if principal is None or principal.role is not Role.administrator:
        raise _refused(f"its {who} is not an administrator")
    return principal


async def kickoff_of(
    ctx: CallContext, approval: Operation, countersigned: kv.Countersigned | None
) -> Operation:
    """The verified kick-off that `approval` approves, or Forbidden saying why not."""
    assert ctx.runtime is not None
    if countersigned is None:
        raise _refused("it comes without the kick-off's signature")
    try:
        body = base64.b64decode(countersigned.body, validate=True)
        proof = RequestProof.model_validate_json(countersigned.proof)
    except (binascii.Error, ValueError, ValidationError):
        raise _refused("the kick-off's signature is malformed") from None
    settings = ctx.runtime.settings.model_copy(update={"signature_window_s": fx.APPROVAL_WINDOW_S})
    accounts = ctx.runtime.accounts
    assert accounts is not None
    try:
        kickoff = await verify_operation(countersigned.proof, body, accounts, settings)
    except Unauthenticated as exc:
        raise _refused(f"the kick-off's {exc.message}") from None
    if kickoff.method not in fx.KICKOFFS:
        raise _refused("the countersignature is not an export kick-off")
    requester = _administrator(kickoff.principal, "requester")
    approver = _administrator(approval.principal, "approver")
    if requester.account_id == approver.account_id:
        raise _refused("one administrator requests it and a different one approves it")
    job_id = getattr(approval.request, "job_id", None)
    if job_id != fx.kickoff_digest(proof.signature_input, proof.signature):
        raise _refused("the approval names another kick-off")
    return kickoff


def group_of(kickoff: Operation) -> str | None:
    """The physician whose patients a Group export holds (None: every patient)."""
    request = kickoff.request
    return request.group_id if isinstance(request, fx.GroupExportRequest) else None


@dataclass(frozen=True)
class Session:
    job_id: str
    group_id: str | None
    floor: str
    expires_at: datetime


async def open_session(database: Database, approval: Operation, kickoff: Operation) -> None:
    """The job's session, opened once (a repeated approval DECRYPT keeps the first)."""
    job_id = getattr(approval.request, "job_id", None)
    assert isinstance(job_id, str) and approval.principal and kickoff.principal
    now = datetime.now(UTC).replace(tzinfo=None)
    await store.open_export_session(
        database,
        job_id,
        kickoff.principal.account_id,
        approval.principal.account_id,
        group_of(kickoff),
        now,
        now + timedelta(seconds=fx.SESSION_S),
    )


async def page_of(database: Database, req: fx.ExportDecryptRequest) -> tuple[Session, set[str]]:
    """The open session of `req.job_id` and the patients of the page, its floor moved to
    the page's first patient (in the same transaction as the check), or Forbidden: a
    page may be asked again (a resumed run, scheduling after records), an earlier never."""
    patients: set[str] = set()
    for row in req.rows:
        if row.table not in fx.SESSION_TABLES:
            raise _refused(f"an export holds no {row.table} rows")
        if row.table == rec.PATIENTS_TABLE and not set(row.fields) <= fx.PATIENT_COLUMNS:
            raise _refused("an export holds a patient's identity and contact only")
        patient = row.binding.get("patient")
        if patient is None:
            raise _refused("a row is bound to no patient")
        if patient < req.page_first:
            raise _refused("a row's patient is before the page's first patient")
        patients.add(patient)
    async with database.transaction() as conn:
        found = await store.lock_export_session(conn, req.job_id)
        if found is None:
            raise _refused("two administrators have not approved this job")
        group_id, floor, expires_at = found
        session = Session(req.job_id, group_id, floor, expires_at)
        if session.expires_at <= datetime.now(UTC):
            raise _refused("its approval has expired")
        first = req.page_first
        if first < session.floor:
            raise _refused("an export reads each patient once, in order: that page is done")
        if first > session.floor:
            await store.move_export_floor(conn, req.job_id, first)
    return session, patients
