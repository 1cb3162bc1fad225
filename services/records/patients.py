"""Patients: register, update, clinical flags, read, list recent, search by blind index.

Keyvault calls per request: a registration asks for its blind indexes and its
ciphertexts at once (two calls in parallel); a read makes one DECRYPT batch for every
field of every row it returns; a search makes one BLIND_INDEX call, an indexed lookup,
and one DECRYPT batch for the matches only (never the table).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

from contracts import records as rec
from contracts.audit import AuditAction
from contracts.base import Role
from mesh import db
from mesh.context import CallContext
from mesh.errors import Conflict, InternalError, NotFound, RpcError
from services.records import access, auditing, codec, store, vault
from services.records.access import principal_of, runtime_of
from services.records.auditing import audited
from services.records.parallel import both
from services.records.store import PatientRow, PatientTokens
from services.records.vault import Batch

ENTITY = "patient"
MRN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648 base32
MRN_ATTEMPTS = 5
DUPLICATES_SHOWN = 5


def new_mrn() -> str:
    """`MH-` + 8 base32 characters from the OS CSPRNG (40 bits; unique index + retry)."""
    return rec.MRN_PREFIX + "".join(secrets.choice(MRN_ALPHABET) for _ in range(8))


def _now() -> datetime:
    return datetime.now(UTC)


def _not_found(patient_id: str) -> RpcError:
    return NotFound("unknown patient", details={"patient_id": patient_id})


async def _refuse_duplicates(ctx: CallContext, identity_token: str) -> None:
    """409 with the existing records' numbers if this person seems registered already.

    The matches stay locked until the transaction ends, so two desks registering the same
    person at once cannot both pass (one waits, or is told to retry).
    """
    matches = await store.lock_identity_matches(ctx.tx, identity_token, DUPLICATES_SHOWN)
    if not matches:
        return
    batch = Batch()
    for row in matches:
        batch.add(codec.PATIENTS, row.patient_id, {"mrn": row.mrn_enc})
    plain = await vault.decrypt(runtime_of(ctx), batch)
    # The caller learns these patients' numbers: that is a read of their records.
    await auditing.read(
        ctx,
        auditing.Subject("patient.duplicate_shown", AuditAction.read, ENTITY),
        [row.patient_id for row in matches],
    )
    raise Conflict(
        "a patient with this name and date of birth is already registered: use the existing "
        "record, or confirm that this is a different person (confirm_duplicate)",
        details={
            "reason": "possible_duplicate",
            "existing": [
                {"patient_id": row.patient_id, "mrn": p["mrn"]}
                for row, p in zip(matches, plain, strict=True)
            ],
        },
    )


async def create_patient(req: rec.CreatePatientRequest, ctx: CallContext) -> rec.PatientWritten:
    runtime, me = runtime_of(ctx), principal_of(ctx)
    d = req.demographics
    async with audited(ctx, "patient.create", AuditAction.create, ENTITY) as subject:
        patient_id = str(uuid.uuid4())
        now = _now()
        for attempt in range(MRN_ATTEMPTS):
            mrn = new_mrn()
            batch = Batch()
            batch.add(codec.PATIENTS, patient_id, {"mrn": mrn, **codec.demographics_fields(d)})
            queries = [*codec.demographics_queries(d), codec.mrn_terms(mrn)]
            tokens, (cipher,) = await both(
                vault.blind_index(runtime, queries), vault.encrypt(runtime, batch)
            )
            stored = PatientTokens(
                identity=tokens[0],
                name_dob=tokens[1],
                phone=tokens[2] if d.phone is not None else None,
                mrn=tokens[-1],
            )
            if attempt == 0 and not req.confirm_duplicate:
                await _refuse_duplicates(ctx, stored.identity)
            try:
                await store.insert_patient(ctx.tx, patient_id, stored, cipher, me.account_id, now)
            except Exception as exc:
                if db.is_duplicate_key(exc):
                    continue  # the MRN is taken (40 random bits): draw another
                if store.is_lock_conflict(exc):
                    raise Conflict(
                        "another registration of this patient is in progress; try again"
                    ) from None
                raise
            break
        else:
            raise InternalError("could not draw an unused medical record number")
        subject.patient_id = subject.entity_id = patient_id
        await auditing.written(ctx, subject)
    return rec.PatientWritten(patient_id=patient_id, version=1, updated_at=now)


async def update_patient(req: rec.UpdatePatientRequest, ctx: CallContext) -> rec.PatientWritten:
    runtime, me = runtime_of(ctx), principal_of(ctx)
    d = req.demographics
    async with audited(
        ctx, "patient.update", AuditAction.update, ENTITY, patient_id=req.patient_id
    ) as subject:
        subject.entity_id = req.patient_id
        await access.check_patient_access(ctx, req.patient_id)
        row = await store.get_patient(ctx.tx, req.patient_id, lock=True)
        if row is None:
            raise _not_found(req.patient_id)
        if row.version != req.expected_version:
            raise Conflict(
                "the patient's record changed since it was read: read it again",
                details={"current_version": row.version, "expected_version": req.expected_version},
            )
        batch = Batch()
        batch.add(codec.PATIENTS, req.patient_id, codec.demographics_fields(d))
        tokens, (cipher,) = await both(
            vault.blind_index(runtime, codec.demographics_queries(d)),
            vault.encrypt(runtime, batch),
        )
        stored = PatientTokens(
            identity=tokens[0], name_dob=tokens[1], phone=tokens[2] if d.phone else None
        )
        now, version = _now(), row.version + 1
        await store.update_demographics(
            ctx.tx, req.patient_id, stored, cipher, version, me.account_id, now
        )
        await auditing.written(ctx, subject, f"version {version}")
    return rec.PatientWritten(patient_id=req.patient_id, version=version, updated_at=now)


async def set_clinical_flags(
    req: rec.SetClinicalFlagsRequest, ctx: CallContext
) -> rec.PatientWritten:
    runtime, me = runtime_of(ctx), principal_of(ctx)
    async with audited(
        ctx, "patient.flags", AuditAction.update, ENTITY, patient_id=req.patient_id
    ) as subject:
        subject.entity_id = req.patient_id
        await access.check_patient_access(ctx, req.patient_id)
        batch = Batch()
        batch.add(codec.PATIENTS, req.patient_id, {"clinical_flags": codec.flags_text(req.flags)})
        _, (cipher,) = await both(access.require_signed(ctx), vault.encrypt(runtime, batch))
        row = await store.get_patient(ctx.tx, req.patient_id, lock=True)
        if row is None:
            raise _not_found(req.patient_id)
        now = _now()
        await store.update_flags(
            ctx.tx, req.patient_id, cipher["clinical_flags"], me.account_id, now
        )
        await auditing.written(ctx, subject)
    return rec.PatientWritten(patient_id=req.patient_id, version=row.version, updated_at=now)


async def get_patient(req: rec.GetPatientRequest, ctx: CallContext) -> rec.Patient:
    runtime = runtime_of(ctx)
    clinical = principal_of(ctx).role is Role.physician
    async with audited(
        ctx, "patient.read", AuditAction.read, ENTITY, patient_id=req.patient_id
    ) as subject:
        subject.entity_id = req.patient_id
        await access.check_patient_access(ctx, req.patient_id)
        row = await store.get_patient(runtime.db, req.patient_id)
        if row is None:
            raise _not_found(req.patient_id)
        batch = Batch()
        batch.add(codec.PATIENTS, row.patient_id, codec.patient_full_fields(row, clinical))
        (plain,) = await vault.decrypt(runtime, batch, req.patient_id)
        patient = codec.patient(row, plain, clinical)
        await auditing.read(ctx, subject, [row.patient_id])
    return patient


async def _briefs(
    ctx: CallContext, subject: auditing.Subject, rows: list[PatientRow]
) -> rec.PatientList:
    """Names, birth dates and numbers of `rows`: one DECRYPT batch, one audit per patient."""
    for row in rows:
        await access.check_patient_access(ctx, row.patient_id, clinical=False)
    batch = Batch()
    for row in rows:
        batch.add(codec.PATIENTS, row.patient_id, codec.patient_brief_fields(row))
    plain = await vault.decrypt(runtime_of(ctx), batch)
    briefs = [codec.patient_brief(r, p) for r, p in zip(rows, plain, strict=True)]
    await auditing.read(ctx, subject, [b.patient_id for b in briefs])
    return rec.PatientList(patients=briefs)


async def list_recent_patients(
    req: rec.ListRecentPatientsRequest, ctx: CallContext
) -> rec.PatientList:
    async with audited(ctx, "patient.list", AuditAction.read, ENTITY) as subject:
        rows = await store.recent_patients(runtime_of(ctx).db, req.limit)
        return await _briefs(ctx, subject, rows)


SEARCH_LIMIT = 50


def search_terms(req: rec.SearchPatientsRequest) -> tuple[str, vault.Terms]:
    """Which blind index a search uses, and its query (validated: exactly one)."""
    if req.phone is not None:
        return "phone", codec.phone_terms(req.phone)
    if req.mrn is not None:
        return "mrn", codec.mrn_terms(req.mrn)
    assert req.family_name is not None and req.date_of_birth is not None
    return "name_dob", codec.name_dob_terms(req.family_name, req.date_of_birth)


async def search_patients(req: rec.SearchPatientsRequest, ctx: CallContext) -> rec.PatientList:
    runtime = runtime_of(ctx)
    kind, terms = search_terms(req)
    async with audited(ctx, "patient.search", AuditAction.read, ENTITY) as subject:
        (token,) = await vault.blind_index(runtime, [terms])
        rows = await store.patients_by_token(runtime.db, kind, token, SEARCH_LIMIT)
        if not rows:
            # Nothing read, but who searched (never for what) is worth keeping.
            await auditing.read(ctx, subject, [], detail=f"by {kind}: no match")
            return rec.PatientList(patients=[])
        return await _briefs(ctx, subject, rows)


async def patient_ref(req: rec.PatientRefRequest, ctx: CallContext) -> rec.PatientRef:
    """Exists or not: one indexed lookup, nothing decrypted (no user signature needed)."""
    exists = await store.patient_exists(runtime_of(ctx).db, req.patient_id)
    return rec.PatientRef(patient_id=req.patient_id, exists=exists)
