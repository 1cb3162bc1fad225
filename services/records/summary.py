"""The physician's patient summary: demographics, recent encounters, active prescriptions
and allergies in one call, with one DECRYPT batch for every row (and the prescriptions'
MACs checked meanwhile).

Allergies are recorded on encounters; the summary shows, per substance, the latest entry
over the latest version of every encounter (up to `ALLERGY_ENCOUNTERS` of them), if that
entry says the allergy is active.
"""

from __future__ import annotations

from collections.abc import Awaitable

from contracts import records as rec
from contracts.audit import AuditAction
from mesh.context import CallContext
from mesh.errors import NotFound
from services.records import access, auditing, codec, store
from services.records.access import runtime_of
from services.records.auditing import audited
from services.records.parallel import both, four, meanwhile
from services.records.prescriptions import ACTIVE, decrypt_with_prescriptions
from services.records.store import EncounterRow
from services.records.vault import Batch

ALLERGY_ENCOUNTERS = 2000


async def _nothing() -> list[EncounterRow]:
    return []


async def patient_summary(req: rec.PatientSummaryRequest, ctx: CallContext) -> rec.PatientSummary:
    database = runtime_of(ctx).db
    patient_id = req.patient_id
    async with audited(
        ctx,
        "patient.summary",
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
        _, (row, encounters, allergy_rows, every) = await both(
            access.check_patient_access(ctx, patient_id),
            four(
                store.get_patient(database, patient_id),
                recent,
                store.current_allergies(database, patient_id, ALLERGY_ENCOUNTERS),
                store.prescriptions_of(database, patient_id),
            ),
        )
        if row is None:
            raise NotFound("unknown patient", details={"patient_id": patient_id})
        batch = Batch()
        batch.add(codec.PATIENTS, patient_id, codec.patient_full_fields(row, clinical=True))
        for encounter in encounters:
            batch.add(codec.ENCOUNTERS, encounter.row_id, codec.encounter_stored_fields(encounter))
        shown = {e.row_id for e in encounters}
        older = [a for a in allergy_rows if a.row_id not in shown]
        for allergy_row in older:
            batch.add(
                codec.ENCOUNTERS, allergy_row.row_id, {"allergies": allergy_row.allergies_enc}
            )
        active = [r for r in every if r.status == ACTIVE]
        plain, checked = await decrypt_with_prescriptions(ctx, batch, every, active, patient_id)

        def decode() -> tuple[rec.Patient, list[rec.Encounter], list[rec.Allergy]]:
            patient = codec.patient(row, plain[0], clinical=True)
            decoded = [
                codec.encounter(e, p)
                for e, p in zip(encounters, plain[1 : 1 + len(encounters)], strict=True)
            ]
            lists = {e.encounter_id: e.content.allergies for e in decoded}
            for allergy_row, p in zip(older, plain[1 + len(encounters) :], strict=True):
                lists[allergy_row.encounter_id] = codec.allergies(p["allergies"])
            allergies = codec.current_allergies([lists[a.encounter_id] for a in allergy_rows])
            return patient, decoded, allergies

        # Decrypted: the read has happened. Its audit event is made durable while the
        # plaintext is decoded, and nothing is returned before it is (fail closed).
        _, (patient, decoded, allergies) = await meanwhile(
            auditing.read(ctx, subject, [patient_id]), decode
        )
    return rec.PatientSummary(
        patient=patient,
        encounters=decoded,
        active_prescriptions=checked.prescriptions,
        allergies=allergies,
        integrity_failures=checked.failures,
    )
