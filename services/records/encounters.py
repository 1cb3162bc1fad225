"""Clinical history: encounters, append-only.

An amendment inserts a new version (who, when, why, which version it supersedes) and
moves the encounter's head to it; no version is ever changed or deleted. Reads show the
latest version and, on request, every version. Physicians only (contract roles).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from contracts import records as rec
from contracts.audit import AuditAction
from mesh.context import CallContext
from mesh.errors import Conflict, NotFound, RpcError
from services.records import access, auditing, codec, store, vault
from services.records.access import principal_of, runtime_of
from services.records.auditing import audited
from services.records.parallel import both
from services.records.store import EncounterRow, version_row_id
from services.records.vault import Batch

ENTITY = "encounter"


def _now() -> datetime:
    return datetime.now(UTC)


def _unknown(encounter_id: str) -> RpcError:
    return NotFound("unknown encounter", details={"encounter_id": encounter_id})


async def _sealed_version(
    ctx: CallContext,
    encounter_id: str,
    version: int,
    content: rec.EncounterContent,
    reason: str | None = None,
) -> dict[str, str]:
    """Ciphertexts of one version, with the caller's signature checked meanwhile (the
    keyvault encrypts for any service, so it does not check it here)."""
    batch = Batch()
    batch.add(
        codec.ENCOUNTERS,
        version_row_id(encounter_id, version),
        codec.encounter_fields(content, reason),
    )
    _, (cipher,) = await both(access.require_signed(ctx), vault.encrypt(runtime_of(ctx), batch))
    return cipher


async def add_encounter(req: rec.AddEncounterRequest, ctx: CallContext) -> rec.EncounterWritten:
    me = principal_of(ctx)
    async with audited(
        ctx, "encounter.create", AuditAction.create, ENTITY, patient_id=req.patient_id
    ) as subject:
        await access.check_patient_access(ctx, req.patient_id)
        encounter_id = str(uuid.uuid4())
        cipher = await _sealed_version(ctx, encounter_id, 1, req.content)
        if not await store.patient_exists(ctx.tx, req.patient_id):
            raise NotFound("unknown patient", details={"patient_id": req.patient_id})
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
            note_enc=cipher["note"],
            allergies_enc=cipher["allergies"],
            amendment_reason_enc=None,
        )
        await store.insert_encounter(ctx.tx, row, now)
        subject.entity_id = encounter_id
        await auditing.written(ctx, subject, "version 1")
    return rec.EncounterWritten(encounter_id=encounter_id, patient_id=req.patient_id, version=1)


async def amend_encounter(req: rec.AmendEncounterRequest, ctx: CallContext) -> rec.EncounterWritten:
    me = principal_of(ctx)
    async with audited(
        ctx, "encounter.amend", AuditAction.update, ENTITY, entity_id=req.encounter_id
    ) as subject:
        head = await store.get_head(ctx.tx, req.encounter_id, lock=True)
        if head is None:
            raise _unknown(req.encounter_id)
        subject.patient_id = head.patient_id
        await access.check_patient_access(ctx, head.patient_id)
        if head.current_version != req.expected_version:
            raise Conflict(
                "only the latest version can be amended: read the encounter again",
                details={
                    "current_version": head.current_version,
                    "expected_version": req.expected_version,
                },
            )
        version = head.current_version + 1
        cipher = await _sealed_version(ctx, req.encounter_id, version, req.content, req.reason)
        row = EncounterRow(
            encounter_id=req.encounter_id,
            version=version,
            patient_id=head.patient_id,
            physician_id=head.physician_id,
            occurred_at=req.content.occurred_at,
            recorded_by=me.account_id,
            recorded_at=_now(),
            supersedes=head.current_version,
            note_enc=cipher["note"],
            allergies_enc=cipher["allergies"],
            amendment_reason_enc=cipher["amendment_reason"],
        )
        await store.insert_version(ctx.tx, row)
        await store.advance_head(ctx.tx, row)
        await auditing.written(ctx, subject, f"version {version} supersedes {row.supersedes}")
    return rec.EncounterWritten(
        encounter_id=req.encounter_id, patient_id=head.patient_id, version=version
    )


async def decrypt_encounters(
    ctx: CallContext, rows: list[EncounterRow], patient_id: str | None
) -> list[rec.Encounter]:
    """One DECRYPT batch for every version in `rows`."""
    batch = Batch()
    for row in rows:
        batch.add(codec.ENCOUNTERS, row.row_id, codec.encounter_stored_fields(row))
    plain = await vault.decrypt(runtime_of(ctx), batch, patient_id)
    return [codec.encounter(r, p) for r, p in zip(rows, plain, strict=True)]


async def get_encounter(req: rec.GetEncounterRequest, ctx: CallContext) -> rec.EncounterHistory:
    database = runtime_of(ctx).db
    async with audited(
        ctx, "encounter.read", AuditAction.read, ENTITY, entity_id=req.encounter_id
    ) as subject:
        head = await store.get_head(database, req.encounter_id)
        if head is None:
            raise _unknown(req.encounter_id)
        subject.patient_id = head.patient_id
        await access.check_patient_access(ctx, head.patient_id)
        only = None if req.include_versions else head.current_version
        rows = await store.versions(database, req.encounter_id, only)
        rows = [r for r in rows if r.version <= head.current_version]
        encounters = await decrypt_encounters(ctx, rows, head.patient_id)
        await auditing.read(ctx, subject, [head.patient_id])
    return rec.EncounterHistory(
        current=encounters[-1], versions=encounters if req.include_versions else []
    )


async def list_encounters(req: rec.ListEncountersRequest, ctx: CallContext) -> rec.EncounterList:
    database = runtime_of(ctx).db
    async with audited(
        ctx, "encounter.list", AuditAction.read, ENTITY, patient_id=req.patient_id
    ) as subject:
        await access.check_patient_access(ctx, req.patient_id)
        rows = await store.current_encounters(database, req.patient_id, req.limit, req.before)
        if not rows and not await store.patient_exists(database, req.patient_id):
            raise NotFound("unknown patient", details={"patient_id": req.patient_id})
        encounters = await decrypt_encounters(ctx, rows, req.patient_id)
        await auditing.read(ctx, subject, [req.patient_id])
    return rec.EncounterList(encounters=encounters)
