"""Patients: register, update, clinical flags, read, list recent, search by blind index.

Keyvault calls per request: a registration asks for its blind indexes (with a few
candidate record numbers) and its ciphertexts at once (two calls in parallel); a read
makes one DECRYPT batch for every field of every row it returns; a search makes one
BLIND_INDEX call, an indexed lookup, and one DECRYPT batch for the matches only (never
the table), from which the keyvault returns only rows that match the signed search.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime

from contracts import records as rec
from contracts.audit import AuditAction, AuditType
from contracts.base import Role
from mesh import auditing, db, keyvault
from mesh.auditing import audited
from mesh.context import CallContext, runtime_of
from mesh.errors import Conflict, IntegrityError, InternalError, RpcError
from mesh.keyvault import Batch
from mesh.parallel import both
from mesh.runtime import Runtime
from services.records import access, codec, integrity, known, phones, store
from services.records.access import lookups, principal_of
from services.records.store import PatientRow, PatientTokens

ENTITY = "patient"
MRN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648 base32
MRN_ATTEMPTS = rec.MRN_CANDIDATES
DUPLICATES_SHOWN = rec.DUPLICATES_SHOWN


def new_mrn() -> str:
    """`MH-` + 8 base32 characters from the OS CSPRNG (40 bits; unique index + retry)."""
    return rec.MRN_PREFIX + "".join(secrets.choice(MRN_ALPHABET) for _ in range(8))


def _now() -> datetime:
    return datetime.now(UTC)


def _tampered(patient_id: str) -> RpcError:
    return IntegrityError(
        "this patient's record does not decrypt: it was edited or moved outside Medihaven",
        details={"patient_id": patient_id},
    )


async def _refuse_duplicates(ctx: CallContext, tokens: PatientTokens) -> None:
    """409 with the existing records' names and numbers if this person may be registered
    already: a family name that sounds alike (`Schmitt`, `Schmidt`) and the same birth date.

    The matches stay locked until the transaction ends, so two desks registering the same
    person at once cannot both pass (one waits, or is told to retry).
    """
    matches = await store.lock_similar(ctx.tx, tokens, DUPLICATES_SHOWN)
    if not matches:
        return
    batch = Batch()
    for row in matches:
        fields = codec.patient_brief_fields(row)
        batch.add(codec.PATIENTS, row.patient_id, fields, patient=row.patient_id)
    plain = await keyvault.decrypt(runtime_of(ctx), batch)
    shown = [
        codec.patient_brief(row, p)
        for row, p in zip(matches, plain.rows, strict=True)
        if "mrn" in p and "identity" in p
    ]
    if not shown:
        return  # a blind-index collision, not a similar person
    # The caller learns these patients' numbers: that is a read of their records.
    await auditing.read(
        ctx,
        auditing.Subject(AuditType.patient_duplicate_shown, AuditAction.read, ENTITY),
        [b.patient_id for b in shown],
    )
    raise Conflict(
        "a patient with a similar name and the same date of birth is already registered: "
        "use the existing record, or confirm that this is a different person",
        details={
            "reason": "possible_duplicate",
            "existing": [b.model_dump(mode="json") for b in shown],
        },
    )


async def create_patient(req: rec.CreatePatientRequest, ctx: CallContext) -> rec.PatientWritten:
    runtime, me = runtime_of(ctx), principal_of(ctx)
    signed = req.demographics
    d = phones.formatted(signed, runtime.settings.clinic_region)
    async with audited(ctx, AuditType.patient_create, AuditAction.create, ENTITY) as subject:
        patient_id = str(uuid.uuid4())
        now = _now()
        # One BLIND_INDEX call (the keyvault serves a signed request once) with a few
        # candidate record numbers; a clash of 40 random bits takes the next one.
        mrns = [new_mrn() for _ in range(MRN_ATTEMPTS)]
        demographic = codec.demographics_queries(signed)
        batch = Batch()
        for mrn in mrns:
            batch.add(
                codec.PATIENTS,
                patient_id,
                {"mrn": mrn, **codec.demographics_fields(d)},
                patient=patient_id,
            )
        tokens, ciphers = await both(
            keyvault.blind_index(runtime, [*demographic, *(codec.mrn_terms(m) for m in mrns)]),
            keyvault.encrypt(runtime, batch),
        )
        mrn_tokens = tokens[len(demographic) :]
        for attempt in range(MRN_ATTEMPTS):
            stored = codec.demographics_tokens(signed, tokens, mrn_tokens[attempt])
            cipher = ciphers[attempt]
            try:
                if attempt == 0 and not req.confirm_duplicate:
                    await _refuse_duplicates(ctx, stored)
                await store.insert_patient(ctx.tx, patient_id, stored, cipher, me.account_id, now)
                await store.replace_sounds(ctx.tx, patient_id, stored.sounds, new=True)
            except Exception as exc:
                if db.is_duplicate_key(exc):
                    continue  # the MRN is taken (40 random bits): draw another
                if db.is_retryable(exc):
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
    signed = req.demographics
    d = phones.formatted(signed, runtime.settings.clinic_region)
    async with audited(
        ctx, AuditType.patient_update, AuditAction.update, ENTITY, patient_id=req.patient_id
    ) as subject:
        subject.entity_id = req.patient_id
        await access.check_patient_access(ctx, req.patient_id)
        row = await store.get_patient(ctx.tx, req.patient_id, lock=True)
        if row is None:
            raise known.unknown_patient(req.patient_id)
        if row.version != req.expected_version:
            raise Conflict(
                "the patient's record changed since it was read: read it again",
                details={"current_version": row.version, "expected_version": req.expected_version},
            )
        batch = Batch()
        fields = codec.demographics_fields(d)
        batch.add(codec.PATIENTS, req.patient_id, fields, patient=req.patient_id)
        tokens, (cipher,) = await both(
            keyvault.blind_index(runtime, codec.demographics_queries(signed)),
            keyvault.encrypt(runtime, batch),
        )
        stored = codec.demographics_tokens(signed, tokens)
        now, version = _now(), row.version + 1
        await store.update_demographics(
            ctx.tx, req.patient_id, stored, cipher, version, me.account_id, now
        )
        await store.replace_sounds(ctx.tx, req.patient_id, stored.sounds)
        await auditing.written(ctx, subject, f"version {version}")
    return rec.PatientWritten(patient_id=req.patient_id, version=version, updated_at=now)


async def set_clinical_flags(
    req: rec.SetClinicalFlagsRequest, ctx: CallContext
) -> rec.PatientWritten:
    runtime, me = runtime_of(ctx), principal_of(ctx)
    async with audited(
        ctx, AuditType.patient_flags, AuditAction.update, ENTITY, patient_id=req.patient_id
    ) as subject:
        subject.entity_id = req.patient_id
        await access.check_patient_access(ctx, req.patient_id)
        batch = Batch()
        batch.add(
            codec.PATIENTS,
            req.patient_id,
            {"clinical_flags": codec.flags_text(req.flags)},
            patient=req.patient_id,
        )
        (cipher,) = await keyvault.encrypt(runtime, batch)
        row = await store.get_patient(ctx.tx, req.patient_id, lock=True)
        if row is None:
            raise known.unknown_patient(req.patient_id)
        now = _now()
        await store.update_flags(
            ctx.tx, req.patient_id, cipher["clinical_flags"], me.account_id, now
        )
        await auditing.written(ctx, subject)
    return rec.PatientWritten(patient_id=req.patient_id, version=row.version, updated_at=now)


async def get_patient(
    req: rec.GetPatientRequest, ctx: CallContext, *, columns: frozenset[str] | None = None
) -> rec.Patient:
    """`columns`: only these are decrypted (a FHIR Patient: no insurance, no flags)."""
    runtime = runtime_of(ctx)
    clinical = principal_of(ctx).role is Role.physician and columns is None
    async with audited(
        ctx, AuditType.patient_read, AuditAction.read, ENTITY, patient_id=req.patient_id
    ) as subject:
        subject.entity_id = req.patient_id
        await access.check_patient_access(ctx, req.patient_id)
        row = await store.get_patient(runtime.db, req.patient_id)
        if row is None:
            raise known.unknown_patient(req.patient_id)
        batch = Batch()
        fields = codec.patient_full_fields(row, clinical)
        if columns is not None:
            fields = {name: value for name, value in fields.items() if name in columns}
        batch.add(codec.PATIENTS, row.patient_id, fields, patient=row.patient_id)
        plain = await keyvault.decrypt(runtime, batch)
        if plain.failed:
            raise _tampered(row.patient_id)
        patient = codec.patient(row, plain.rows[0], clinical)
        await auditing.read(ctx, subject, [row.patient_id])
    return patient


async def _briefs(
    ctx: CallContext, subject: auditing.Subject, rows: list[PatientRow], by: str | None = None
) -> rec.PatientList:
    """Names, birth dates and numbers of `rows`: one DECRYPT batch, one audit per patient.

    For a search (`by`), the keyvault returns only the rows that match the signed search
    (a blind-index collision, or a row a taken-over service slipped in, comes back
    empty); a phone search sends the contact details for that check, never returned."""
    for row in rows:
        await access.check_patient_access(ctx, row.patient_id, clinical=False)
    batch = Batch()
    for row in rows:
        fields = codec.patient_brief_fields(row)
        if by == "phone":
            fields["contact"] = row.contact_enc
        batch.add(codec.PATIENTS, row.patient_id, fields, patient=row.patient_id)
    plain = await keyvault.decrypt(runtime_of(ctx), batch)
    briefs = [
        codec.patient_brief(r, p)
        for r, p in zip(rows, plain.rows, strict=True)
        if "identity" in p and "mrn" in p
    ]
    for index in sorted(plain.failed):
        row = rows[index]
        await integrity.rejected(
            runtime_of(ctx), codec.PATIENTS, row.patient_id, row.patient_id, "does not decrypt"
        )
    await auditing.read(ctx, subject, [b.patient_id for b in briefs])
    return rec.PatientList(patients=briefs)


async def list_recent_patients(
    req: rec.ListRecentPatientsRequest, ctx: CallContext
) -> rec.PatientList:
    async with audited(ctx, AuditType.patient_list, AuditAction.read, ENTITY) as subject:
        rows = await store.recent_patients(runtime_of(ctx).db, req.limit)
        return await _briefs(ctx, subject, rows)


async def _may_see(ctx: CallContext, patient_ids: list[str]) -> set[str]:
    """Those of `patient_ids` the caller may read as `get_patient` allows: a receptionist
    every one, a physician those in their care (`care.decide`, asked for all at once)."""
    me = principal_of(ctx)
    if me.role is not Role.physician:
        return set(patient_ids)
    from services.records.care import decide

    runtime = runtime_of(ctx)
    decisions = await asyncio.gather(*(decide(runtime, me.account_id, p) for p in patient_ids))
    return {p for p, d in zip(patient_ids, decisions, strict=True) if d.allowed}


async def patient_briefs(req: rec.PatientBriefsRequest, ctx: CallContext) -> rec.PatientBriefs:
    """The patients a list shows, in one read: one DECRYPT batch (bound, by the grant, to
    the signed ids), one audit event naming every patient shown, one rate-limit token at
    the gateway. Patients the caller may not read, or that do not exist, are `withheld`
    (by id only: nothing about them is decrypted)."""
    wanted = list(dict.fromkeys(req.patient_ids))
    async with audited(ctx, AuditType.patient_briefs, AuditAction.read, ENTITY) as subject:
        allowed = await _may_see(ctx, wanted)
        rows = await store.patients_by_id(runtime_of(ctx).db, [p for p in wanted if p in allowed])
        shown = await _briefs(ctx, subject, rows)
    seen = {b.patient_id for b in shown.patients}
    order = {p: i for i, p in enumerate(wanted)}
    shown.patients.sort(key=lambda b: order[b.patient_id])
    return rec.PatientBriefs(patients=shown.patients, withheld=[p for p in wanted if p not in seen])


SEARCH_LIMIT = rec.SEARCH_LIMIT


def search_queries(req: rec.SearchPatientsRequest) -> tuple[str, list[keyvault.Terms]]:
    """Which blind index a search uses, and its queries (validated: exactly one criterion).
    A name is looked up exactly (patients registered before sound tokens) and by sound."""
    if req.phone is not None:
        return "phone", codec.phone_search_terms(req.phone)
    if req.mrn is not None:
        return "mrn", [codec.mrn_terms(req.mrn)]
    assert req.family_name is not None and req.date_of_birth is not None
    exact = codec.name_dob_terms(req.family_name, req.date_of_birth)
    return "name_dob", [exact, *codec.sound_terms(req.family_name, req.date_of_birth)]


async def _candidates(runtime: Runtime, kind: str, tokens: list[str]) -> list[PatientRow]:
    assert runtime.db is not None
    if kind != "name_dob":
        return await store.patients_by_token(runtime.db, kind, tokens, SEARCH_LIMIT)
    exact, similar = await both(
        store.patients_by_token(runtime.db, kind, tokens[:1], SEARCH_LIMIT),
        store.patients_by_sound(runtime.db, tokens[1:], SEARCH_LIMIT),
    )
    rows = {r.patient_id: r for r in [*exact, *similar]}
    return list(rows.values())[:SEARCH_LIMIT]


def _fold(name: str) -> str:
    return " ".join(name.casefold().split())


async def search_patients(req: rec.SearchPatientsRequest, ctx: CallContext) -> rec.PatientList:
    runtime = runtime_of(ctx)
    kind, queries = search_queries(req)
    async with audited(ctx, AuditType.patient_search, AuditAction.read, ENTITY) as subject:
        tokens = await keyvault.blind_index(runtime, queries)
        rows = await _candidates(runtime, kind, tokens)
        if not rows:
            # Nothing read, but who searched (never for what) is worth keeping.
            await auditing.read(ctx, subject, [], detail=f"by {kind}: no match")
            return rec.PatientList(patients=[])
        found = await _briefs(ctx, subject, rows, by=kind)
    if req.family_name is not None:
        wanted = _fold(req.family_name)
        found.patients.sort(key=lambda b: _fold(b.family_name) != wanted)  # exact ones first
    return found


async def patient_ref(req: rec.PatientRefRequest, ctx: CallContext) -> rec.PatientRef:
    """Exists or not: one indexed lookup, nothing decrypted (no user signature needed)."""
    exists = await store.patient_exists(lookups(runtime_of(ctx)), req.patient_id)
    return rec.PatientRef(patient_id=req.patient_id, exists=exists)
