"""The physician's patient summary: demographics, recent encounters, active prescriptions
and allergies in one call, with one DECRYPT batch for every row (and the MACs of the
prescriptions and the allergy list checked meanwhile).

Allergies come from the patient's own list (`allergies`), built once from every
encounter for a patient recorded before lists existed.
"""

from __future__ import annotations

from collections.abc import Awaitable

from contracts import records as rec
from contracts.audit import AuditAction, AuditType
from mesh import auditing
from mesh.auditing import audited
from mesh.context import CallContext, runtime_of
from mesh.errors import IntegrityError
from mesh.keyvault import Batch
from mesh.parallel import both, four, meanwhile
from services.records import access, allergies, codec, known, store
from services.records.prescriptions import ACTIVE, decrypt_with_prescriptions
from services.records.store import EncounterRow


async def _nothing() -> list[EncounterRow]:
    return []


async def patient_summary(req: rec.PatientSummaryRequest, ctx: CallContext) -> rec.PatientSummary:
    database = runtime_of(ctx).db
    patient_id = req.patient_id
    async with audited(
        ctx,
        AuditType.patient_summary,
        AuditAction.read,
        "patient",
        patient_id=patient_id,
        entity_id=patient_id,
    ) as subject:
        recent: Awaitable[list[EncounterRow]] = (
            store.current_encounters(database, patient_id, req.encounters)
            if req.encounters
            else _nothing()
        )
        # The access rule is asked while the rows (ciphertext) are read; a refusal is
        # raised before anything is decrypted.
        _, (row, encounters, src, every) = await both(
            access.check_patient_access(ctx, patient_id),
            four(
                store.get_patient(database, patient_id),
                recent,
                allergies.source(database, patient_id),
                store.prescriptions_of(database, patient_id),
            ),
        )
        if row is None:
            raise known.unknown_patient(patient_id)
        batch = Batch()
        fields = codec.patient_full_fields(row, clinical=True)
        batch.add(codec.PATIENTS, patient_id, fields, patient=patient_id)
        for encounter in encounters:
            fields = codec.encounter_stored_fields(encounter)
            batch.add(codec.ENCOUNTERS, encounter.row_id, fields, patient=patient_id)
        src.add_to(batch)
        active = [r for r in every if r.status == ACTIVE]
        decrypted, checked = await decrypt_with_prescriptions(ctx, batch, every, active)
        if any(i < src.first for i in decrypted.failed):
            raise IntegrityError(
                "part of this chart does not decrypt: it was edited or moved outside Medihaven",
                details={"patient_id": patient_id},
            )
        loaded = await allergies.read(ctx, src, decrypted)
        plain = decrypted.rows

        def decode() -> tuple[rec.Patient, list[rec.Encounter]]:
            patient = codec.patient(row, plain[0], clinical=True)
            decoded = [
                codec.encounter(e, p)
                for e, p in zip(encounters, plain[1 : 1 + len(encounters)], strict=True)
            ]
            return patient, decoded

        # Decrypted: the read has happened. Its audit event is made durable while the
        # plaintext is decoded, and nothing is returned before it is (fail closed).
        _, (patient, decoded) = await meanwhile(auditing.read(ctx, subject, [patient_id]), decode)
    await allergies.keep_built(ctx, patient_id, loaded)
    return rec.PatientSummary(
        patient=patient,
        encounters=decoded,
        active_prescriptions=checked.prescriptions,
        allergies=loaded.active,
        integrity_failures=checked.failures,
    )
