"""A dump of the records database holds none of the test patients' data.

The attacker's view: `mysqldump` of medihaven_records (tables, outbox, idempotent-reply
store), plain and with --hex-blob, after every kind of write, searched for names, phone
numbers (as typed and as digits), record numbers, diagnoses, drug names and free text,
in clear, lower-cased, JSON-escaped and base64 at every alignment.
"""

from __future__ import annotations

import base64
import json
from datetime import date

import pytest

from contracts import records as rec
from tests.records.support import World, content, demographics, world
from tests.support.dump import DUMP, dump


def forms(secret: str) -> set[bytes]:
    """The ways a plaintext could show in a dump without being encrypted."""
    raw = secret.encode()
    found = {raw, secret.lower().encode(), json.dumps(secret)[1:-1].encode()}
    found |= {raw.hex().encode(), raw.hex().upper().encode()}  # --hex-blob writes upper case
    for offset in range(3):  # base64 of the value anywhere inside a longer encoded text
        chunk = base64.b64encode(b"\0" * offset + raw)[4 if offset else 0 : -4]
        if len(chunk) >= 8:
            found.add(chunk)
    return found


async def exercise(w: World) -> list[str]:
    """Every kind of write and read; returns the secrets a dump must not show."""
    desk, doctor = await w.desk(), await w.doctor()
    person = demographics(
        given_name="Wilhelmina",
        family_name="Quarshie-Thorvaldsen",
        date_of_birth=date(1967, 8, 21),
        phone="+47 22 81 47 90",
        email="w.quarshie@example.net",
        address=rec.Address(
            line1="Bjørnstjerne Bjørnsons gate 17", postal_code="0254", city="Oslo", country="NO"
        ),
        emergency_contact=rec.EmergencyContact(
            name="Kwabena Quarshie", relationship="brother", phone="+233 30 277 1234"
        ),
        insurance=rec.Insurance(
            company="Fjordline Helse", member_id="FH-90817263", valid_until=date(2031, 1, 31)
        ),
    )
    written = await w.call(rec.CREATE_PATIENT, rec.CreatePatientRequest(demographics=person), desk)
    moved = person.model_copy(update={"phone": "+47 22 81 47 91"})
    await w.call(
        rec.UPDATE_PATIENT,
        rec.UpdatePatientRequest(
            patient_id=written.patient_id, expected_version=1, demographics=moved
        ),
        desk,
    )
    await w.call(
        rec.SET_CLINICAL_FLAGS,
        rec.SetClinicalFlagsRequest(
            patient_id=written.patient_id, flags=[rec.ClinicalFlag.safeguarding]
        ),
        doctor,
    )
    visit = content(
        chief_complaint="Crushing retrosternal chest pain",
        assessment="Suspected myocardial infarction",
        diagnoses=[rec.Diagnosis(code="I21.4", description="Non-ST elevation infarction")],
        allergies=[rec.Allergy(substance="Sulfamethoxazole", reaction="Stevens-Johnson")],
    )
    encounter = await w.call(
        rec.ADD_ENCOUNTER,
        rec.AddEncounterRequest(patient_id=written.patient_id, content=visit),
        doctor,
    )
    await w.call(
        rec.AMEND_ENCOUNTER,
        rec.AmendEncounterRequest(
            encounter_id=encounter.encounter_id,
            expected_version=1,
            reason="Troponin result came back negative",
            content=visit.model_copy(
                update={"diagnoses": [rec.Diagnosis(code="R07.4", description="Chest pain NOS")]}
            ),
        ),
        doctor,
    )
    kept = await w.prescribe(
        written.patient_id,
        encounter.encounter_id,
        drug_name="Clopidogrel",
        strength="75 mg",
        instructions="Take with breakfast",
    )
    stopped = await w.prescribe(written.patient_id, encounter.encounter_id, drug_name="Ticagrelor")
    await w.call(
        rec.CANCEL_PRESCRIPTION,
        rec.CancelPrescriptionRequest(
            prescription_id=stopped.prescription_id, reason="Dyspnoea on Ticagrelor"
        ),
        doctor,
    )
    summary = await w.call(
        rec.PATIENT_SUMMARY, rec.PatientSummaryRequest(patient_id=written.patient_id), doctor
    )
    assert summary.active_prescriptions[0].prescription_id == kept.prescription_id
    return [
        "Wilhelmina",
        "Quarshie",
        "Thorvaldsen",
        "1967-08-21",
        "22 81 47 90",
        "4722814790",
        "4722814791",
        "w.quarshie@example.net",
        "Bjørnstjerne",
        "Kwabena",
        "233302771234",
        "Fjordline",
        "FH-90817263",
        summary.patient.mrn,
        summary.patient.mrn.replace("-", ""),
        "safeguarding",
        "retrosternal",
        "myocardial",
        "I21.4",
        "R07.4",
        "Non-ST elevation",
        "Sulfamethoxazole",
        "Stevens-Johnson",
        "Troponin",
        "Clopidogrel",
        "75 mg",
        "Take with breakfast",
        "Ticagrelor",
        "Dyspnoea",
    ]


@pytest.mark.skipif(DUMP is None, reason="mysqldump / mariadb-dump is not installed")
async def test_a_database_dump_holds_no_patient_data() -> None:
    async with world("recdump") as w:
        secrets = await exercise(w)
        database = w.clinic.settings.database(rec.SERVICE)
        dumps = [dump(w.clinic.settings, database), dump(w.clinic.settings, database, "--hex-blob")]
    assert all(b"CREATE TABLE `prescriptions`" in d for d in dumps)
    assert all(b"INSERT INTO `mesh_idempotency`" in d for d in dumps)  # replies are in it
    leaks = [
        f"{secret!r} as {form!r}"
        for secret in secrets
        for form in forms(secret)
        if any(form in d for d in dumps)
    ]
    assert not leaks, leaks
