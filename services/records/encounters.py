"""Clinical history: encounters, append-only.

An amendment inserts a new version (who, when, why, which version it supersedes) and
moves the encounter's head to it; no version is ever changed or deleted. Reads show the
latest version and, on request, every version. Physicians only (contract roles).
Diagnoses must be ICD-10 codes (`vocabulary`); allergies recorded on an encounter are
merged into the patient's allergy list in the same write (`allergies`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from contracts import records as rec
from contracts.audit import AuditAction, AuditType
from mesh import auditing, keyvault
from mesh.auditing import audited
from mesh.context import CallContext, runtime_of
from mesh.errors import Conflict, IntegrityError, NotFound, RpcError
from mesh.keyvault import Batch
from services.records import access, allergies, codec, known, store, vocabulary
from services.records.access import principal_of
from services.records.store import EncounterRow, version_row_id

ENTITY = "encounter"


def _now() -> datetime:
    return datetime.now(UTC)


def _unknown(encounter_id: str) -> RpcError:
    return NotFound("unknown encounter", details={"encounter_id": encounter_id})


def _version_batch(
    patient_id: str,
    encounter_id: str,
    version: int,
    content: rec.EncounterContent,
    reason: str | None = None,
) -> Batch:
    """The ciphertexts to make for one version, bound to its patient (row 0 of the batch)."""
    batch = Batch()
    batch.add(
        codec.ENCOUNTERS,
        version_row_id(encounter_id, version),
        codec.encounter_fields(content, reason),
        patient=patient_id,
    )
    return batch


def _check_content(ctx: CallContext, content: rec.EncounterContent) -> None:
    vocabulary.check_diagnoses(content.diagnoses, ("content", "diagnoses"))
    allergies.check_codes(content.allergies, ctx, ("content", "allergies"))


@dataclass
class _ListChange:
    """The patient's allergy list after merging an encounter's allergies (or None: the
    list needs no write), and where its ciphertext is in the ENCRYPT batch."""

    loaded: allergies.Loaded | None = None
    entries: list[rec.AllergyEntry] | None = None
    index: int = -1

    @property
    def version(self) -> int:
        assert self.loaded is not None
        changed = self.entries is not self.loaded.entries
        return self.loaded.version + 1 if changed else self.loaded.version


async def _merge_allergies(
    ctx: CallContext,
    patient_id: str,
    encounter_id: str,
    content: rec.EncounterContent,
    batch: Batch,
) -> _ListChange:
    """Allergies recorded on an encounter go on the patient's list (in the same write)."""
    if not content.allergies:
        return _ListChange()
    loaded = await allergies.locked_list(ctx, patient_id)
    merged = allergies.merge(
        loaded.entries,
        content.allergies,
        principal_of(ctx).account_id,
        encounter_id,
        content.occurred_at,
    )
    if merged is None and not loaded.built:
        return _ListChange()
    entries = merged if merged is not None else loaded.entries
    return _ListChange(loaded, entries, allergies.add_list(batch, patient_id, entries))


async def _store_list(
    ctx: CallContext, patient_id: str, change: _ListChange, cipher: list[dict[str, str]]
) -> None:
    if change.entries is None:
        return
    row = allergies.list_row(
        patient_id,
        cipher[change.index][allergies.COLUMN],
        change.version,
        principal_of(ctx).account_id,
    )
    await allergies.store_list(runtime_of(ctx), ctx.tx, row)


async def add_encounter(req: rec.AddEncounterRequest, ctx: CallContext) -> rec.EncounterWritten:
    me = principal_of(ctx)
    async with access.audited_patient(
        ctx, AuditType.encounter_create, AuditAction.create, ENTITY, req.patient_id
    ) as subject:
        _check_content(ctx, req.content)
        await known.lock_patient(ctx.tx, req.patient_id)
        encounter_id = str(uuid.uuid4())
        batch = _version_batch(req.patient_id, encounter_id, 1, req.content)
        change = await _merge_allergies(ctx, req.patient_id, encounter_id, req.content, batch)
        cipher = await keyvault.encrypt(runtime_of(ctx), batch)
        now = _now()
        row = EncounterRow(
            encounter_id=encounter_id,
            version=1,
            patient_id=req.patient_id,
            physician_id=me.account_id,
            occurred_at=req.content.occurred_at,
            recorded_by=me.account_id,
            recorded_at=now,
            supersedes=None,
            note_enc=cipher[0]["note"],
            allergies_enc=cipher[0]["allergies"],
            amendment_reason_enc=None,
        )
        await store.insert_encounter(ctx.tx, row, now)
        await _store_list(ctx, req.patient_id, change, cipher)
        subject.entity_id = encounter_id
        await auditing.written(ctx, subject, "version 1")
    return rec.EncounterWritten(encounter_id=encounter_id, patient_id=req.patient_id, version=1)


async def amend_encounter(req: rec.AmendEncounterRequest, ctx: CallContext) -> rec.EncounterWritten:
    me = principal_of(ctx)
    async with audited(
        ctx, AuditType.encounter_amend, AuditAction.update, ENTITY, entity_id=req.encounter_id
    ) as subject:
        head = await store.get_head(ctx.tx, req.encounter_id, lock=True)
        if head is None:
            raise _unknown(req.encounter_id)
        subject.patient_id = head.patient_id
        await access.check_patient_access(ctx, head.patient_id)
        _check_content(ctx, req.content)
        if head.current_version != req.expected_version:
            raise Conflict(
                "only the latest version can be amended: read the encounter again",
                details={
                    "current_version": head.current_version,
                    "expected_version": req.expected_version,
                },
            )
        version = head.current_version + 1
        batch = _version_batch(head.patient_id, req.encounter_id, version, req.content, req.reason)
        change = await _merge_allergies(ctx, head.patient_id, req.encounter_id, req.content, batch)
        cipher = await keyvault.encrypt(runtime_of(ctx), batch)
        row = EncounterRow(
            encounter_id=req.encounter_id,
            version=version,
            patient_id=head.patient_id,
            physician_id=head.physician_id,
            occurred_at=req.content.occurred_at,
            recorded_by=me.account_id,
            recorded_at=_now(),
            supersedes=head.current_version,
            note_enc=cipher[0]["note"],
            allergies_enc=cipher[0]["allergies"],
            amendment_reason_enc=cipher[0]["amendment_reason"],
        )
        await store.insert_version(ctx.tx, row)
        await store.advance_head(ctx.tx, row)
        await _store_list(ctx, head.patient_id, change, cipher)
        await auditing.written(ctx, subject, f"version {version} supersedes {row.supersedes}")
    return rec.EncounterWritten(
        encounter_id=req.encounter_id, patient_id=head.patient_id, version=version
    )


async def decrypt_encounters(ctx: CallContext, rows: list[EncounterRow]) -> list[rec.Encounter]:
    """One DECRYPT batch for every version in `rows`; a version that does not decrypt
    (edited or moved in the database) is an integrity error, never a silent gap."""
    batch = Batch()
    for row in rows:
        batch.add(
            codec.ENCOUNTERS, row.row_id, codec.encounter_stored_fields(row), patient=row.patient_id
        )
    plain = await keyvault.decrypt(runtime_of(ctx), batch)
    if plain.failed:
        raise IntegrityError("a version of this encounter does not decrypt (edited or moved)")
    return [codec.encounter(r, p) for r, p in zip(rows, plain.rows, strict=True)]


async def get_encounter(req: rec.GetEncounterRequest, ctx: CallContext) -> rec.EncounterHistory:
    database = runtime_of(ctx).db
    async with audited(
        ctx, AuditType.encounter_read, AuditAction.read, ENTITY, entity_id=req.encounter_id
    ) as subject:
        head = await store.get_head(database, req.encounter_id)
        if head is None:
            raise _unknown(req.encounter_id)
        subject.patient_id = head.patient_id
        await access.check_patient_access(ctx, head.patient_id)
        only = None if req.include_versions else head.current_version
        rows = await store.versions(database, req.encounter_id, only)
        rows = [r for r in rows if r.version <= head.current_version]
        encounters = await decrypt_encounters(ctx, rows)
        await auditing.read(ctx, subject, [head.patient_id])
    return rec.EncounterHistory(
        current=encounters[-1], versions=encounters if req.include_versions else []
    )


async def list_encounters(req: rec.ListEncountersRequest, ctx: CallContext) -> rec.EncounterList:
    database = runtime_of(ctx).db
    async with access.audited_patient(
        ctx, AuditType.encounter_list, AuditAction.read, ENTITY, req.patient_id
    ) as subject:
        rows = await store.current_encounters(database, req.patient_id, req.limit, req.before)
        if not rows and not await store.patient_exists(database, req.patient_id):
            raise known.unknown_patient(req.patient_id)
        encounters = await decrypt_encounters(ctx, rows)
        await auditing.read(ctx, subject, [req.patient_id])
    return rec.EncounterList(encounters=encounters)
