"""Bad input for every write gets a 4xx with reasons, never a 500.

Requests go as raw JSON over the bus, as a broken or hostile client's would arrive:
impossible or future dates, naive times, malformed ICD-10 codes, implausible vital signs
and unknown units, over-long text, unknown ids, wrong types, missing and extra fields;
each signed by the caller as the HTTP request it stands for (`tests.support.raw`). What
is not a valid request of its route at all is refused before any handler (the gateway's
422 gives the reasons, the service a 4xx); the handlers' own refusals give theirs.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest_asyncio

from contracts import records as rec
from contracts.errors import ErrorCode
from tests.records.support import World, content, demographics, signed_request, world
from tests.support.clinic import StaffMember
from tests.support.raw import Case, assert_refused, judge, refusal

V, N, C, B = ErrorCode.validation, ErrorCode.not_found, ErrorCode.conflict, ErrorCode.bad_request
UNKNOWN = "00000000-0000-4000-8000-00000000dead"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("recbad") as w:
        yield w


def edit(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `body` with the dotted `path` set to `value` (or removed if `...`)."""
    result = copy.deepcopy(body)
    *parents, last = path.split(".")
    target: Any = result
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is ...:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return result


def future(days: int = 2) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


@dataclass(frozen=True)
class Scene:
    """A patient with an encounter and a prescription, and a valid body of each write
    for the cases to break (`create`, `update`, `flags`, `visit`, `amend`, `prescribe`,
    `cancel`)."""

    desk: StaffMember
    doctor: StaffMember
    patient: rec.PatientWritten
    encounter: rec.EncounterWritten
    rx: rec.PrescriptionWritten
    create: dict[str, Any]
    update: dict[str, Any]
    flags: dict[str, Any]
    visit: dict[str, Any]
    amend: dict[str, Any]
    prescribe: dict[str, Any]
    cancel: dict[str, Any]
    long: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def scene(w: World) -> Scene:
    desk, doctor = await w.desk(), await w.doctor()
    patient = await w.register(given_name="Target")
    encounter = await w.encounter(patient.patient_id)
    rx = await w.prescribe(patient.patient_id, encounter.encounter_id)
    create = {"demographics": demographics().model_dump(mode="json")}
    update = {"patient_id": patient.patient_id, "expected_version": 1, **create}
    flags = {"patient_id": patient.patient_id, "flags": ["diabetic"]}
    visit = {"patient_id": patient.patient_id, "content": content().model_dump(mode="json")}
    amend = {
        "encounter_id": encounter.encounter_id,
        "expected_version": 1,
        "reason": "typo",
        "content": visit["content"],
    }
    prescribe = signed_request(doctor, patient.patient_id, encounter.encounter_id).model_dump(
        mode="json"
    )
    cancel = {"prescription_id": rx.prescription_id, "reason": "stopped"}
    long = "x" * 10_001
    return Scene(
        desk=desk,
        doctor=doctor,
        patient=patient,
        encounter=encounter,
        rx=rx,
        create=create,
        update=update,
        flags=flags,
        visit=visit,
        amend=amend,
        prescribe=prescribe,
        cancel=cancel,
        long=long,
    )


async def assert_nothing_changed(w: World, scene: Scene) -> None:
    """None of it changed anything."""
    desk, doctor, patient, encounter = scene.desk, scene.doctor, scene.patient, scene.encounter
    got = await w.call(rec.GET_PATIENT, rec.GetPatientRequest(patient_id=patient.patient_id), desk)
    assert got.version == 1 and got.demographics == demographics(given_name="Target")
    history = await w.call(
        rec.GET_ENCOUNTER,
        rec.GetEncounterRequest(encounter_id=encounter.encounter_id, include_versions=True),
        doctor,
    )
    assert len(history.versions) == 1
    listed = await w.call(
        rec.LIST_PRESCRIPTIONS, rec.ListPrescriptionsRequest(patient_id=patient.patient_id), doctor
    )
    assert [p.prescription_id for p in listed.prescriptions] == [scene.rx.prescription_id]


async def test_registrations_with_bad_dates_lengths_formats_or_types_get_a_4xx_with_reasons(
    w: World, scene: Scene
) -> None:
    desk, create = scene.desk, scene.create
    cases: list[Case] = [
        ("born in the future", rec.CREATE_PATIENT, desk,
         edit(create, "demographics.date_of_birth", future()[:10]), V, "future"),
        ("born before 1890", rec.CREATE_PATIENT, desk,
         edit(create, "demographics.date_of_birth", "1789-07-14"), V, "before 1890"),
        ("30 February", rec.CREATE_PATIENT, desk,
         edit(create, "demographics.date_of_birth", "2001-02-30"), V, "date_of_birth"),
        ("date as a number", rec.CREATE_PATIENT, desk,
         edit(create, "demographics.date_of_birth", 19840309), V, "date_of_birth"),
        ("name of 101 characters", rec.CREATE_PATIENT, desk,
         edit(create, "demographics.family_name", "A" * 101), V, "family_name"),
        ("blank name", rec.CREATE_PATIENT, desk,
         edit(create, "demographics.given_name", "   "), V, "given_name"),
        ("name without a letter", rec.CREATE_PATIENT, desk,
         edit(create, "demographics.family_name", "1234"), V, "must contain a letter"),
        ("name with a line break", rec.CREATE_PATIENT, desk,
         edit(create, "demographics.family_name", "Smith\nJones"), V, "control characters"),
        ("unknown sex", rec.CREATE_PATIENT, desk,
         edit(create, "demographics.sex", "robot"), V, "sex"),
        ("phone with letters", rec.CREATE_PATIENT, desk,
         edit(create, "demographics.phone", "+44 CALL ME"), V, "phone"),
        ("phone of 20 digits", rec.CREATE_PATIENT, desk,
         edit(create, "demographics.phone", "1" * 20), V, "4 to 15 digits"),
        ("not an email", rec.CREATE_PATIENT, desk,
         edit(create, "demographics.email", "amara at example"), V, "email"),
        ("country not ISO", rec.CREATE_PATIENT, desk,
         edit(create, "demographics.address.country", "England"), V, "country"),
        ("insurance valid until 1900", rec.CREATE_PATIENT, desk,
         edit(create, "demographics.insurance.valid_until", "1900-01-01"), V, "valid_until"),
        ("emergency contact without phone", rec.CREATE_PATIENT, desk,
         edit(create, "demographics.emergency_contact.phone", ...), V, "phone"),
        ("missing family name", rec.CREATE_PATIENT, desk,
         edit(create, "demographics.family_name", ...), V, "family_name"),
        ("an extra field", rec.CREATE_PATIENT, desk,
         edit(create, "demographics.religion", "none"), V, "religion"),
        ("confirm as a string", rec.CREATE_PATIENT, desk,
         edit(create, "confirm_duplicate", "perhaps"), V, "confirm_duplicate"),
        ("a list, not an object", rec.CREATE_PATIENT, desk, [1, 2, 3], V, "JSON object"),
        ("not JSON at all", rec.CREATE_PATIENT, desk, b"\x00\xffnot json", B, "not valid"),
    ]  # fmt: skip
    await assert_refused(w.clinic, cases, value_errors=True)
    await assert_nothing_changed(w, scene)


async def test_bad_patient_updates_and_clinical_flags_get_a_4xx_with_reasons(
    w: World, scene: Scene
) -> None:
    desk, doctor, update, flags = scene.desk, scene.doctor, scene.update, scene.flags
    cases: list[Case] = [
        ("update an unknown patient", rec.UPDATE_PATIENT, desk,
         edit(update, "patient_id", UNKNOWN), N, "unknown patient"),
        ("update with a malformed id", rec.UPDATE_PATIENT, desk,
         edit(update, "patient_id", "1; DROP TABLE patients"), V, "patient_id"),
        ("update at version 0", rec.UPDATE_PATIENT, desk,
         edit(update, "expected_version", 0), V, "expected_version"),
        ("update a stale version", rec.UPDATE_PATIENT, desk,
         edit(update, "expected_version", 7), C, "changed since it was read"),
        ("an unknown flag", rec.SET_CLINICAL_FLAGS, doctor,
         edit(flags, "flags", ["vampire"]), V, "flags"),
        ("a flag twice", rec.SET_CLINICAL_FLAGS, doctor,
         edit(flags, "flags", ["diabetic", "diabetic"]), V, "twice"),
        ("flags as a string", rec.SET_CLINICAL_FLAGS, doctor,
         edit(flags, "flags", "diabetic"), V, "flags"),
        ("flags of an unknown patient", rec.SET_CLINICAL_FLAGS, doctor,
         edit(flags, "patient_id", UNKNOWN), N, "unknown patient"),
    ]  # fmt: skip
    await assert_refused(w.clinic, cases, value_errors=True)
    await assert_nothing_changed(w, scene)


async def test_encounters_with_bad_times_codes_vitals_lengths_or_ids_get_a_4xx_with_reasons(
    w: World, scene: Scene
) -> None:
    doctor, visit, amend, long = scene.doctor, scene.visit, scene.amend, scene.long
    cases: list[Case] = [
        ("encounter in the future", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.occurred_at", future()), V, "future"),
        ("naive encounter time", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.occurred_at", "2024-05-01T10:00:00"), V, "occurred_at"),
        ("encounter in 1066", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.occurred_at", "1066-10-14T09:00:00Z"), V, "implausibly old"),
        ("ICD code of letters", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.diagnoses.0.code", "ASTHMA"), V, "ICD-10"),
        ("ICD code too short", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.diagnoses.0.code", "J4"), V, "ICD-10"),
        ("ICD code starting with a digit", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.diagnoses.0.code", "123.4"), V, "ICD-10"),
        ("ICD code too long", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.diagnoses.0.code", "J45.90999"), V, "ICD-10"),
        ("21 diagnoses", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.diagnoses", [{"code": "I10"}] * 21), V, "diagnoses"),
        ("systolic below diastolic", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.vital_signs.blood_pressure", {"systolic": 70, "diastolic": 90}),
         V, "higher than diastolic"),
        ("heart rate 500", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.vital_signs.heart_rate.value", 500), V, "heart_rate"),
        ("temperature 60 Cel", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.vital_signs.temperature.value", 60), V, "outside 25.0-45.0"),
        ("temperature in kelvin", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.vital_signs.temperature.unit", "K"), V, "unit"),
        ("temperature without a unit", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.vital_signs.temperature", {"value": 37}), V, "unit"),
        ("weight NaN", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.vital_signs.weight.value", "NaN"), V, "weight"),
        ("weight 900 kg", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.vital_signs.weight.value", 900), V, "outside"),
        ("height in stones", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.vital_signs.height.unit", "stone"), V, "unit"),
        ("SpO2 of 120 %", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.vital_signs.oxygen_saturation.value", 120), V, "oxygen"),
        ("respiratory rate as text", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.vital_signs.respiratory_rate.value", "fast"), V, "respiratory"),
        ("history of 10,001 characters", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.history_of_present_illness", long), V, "history_of_present"),
        ("empty chief complaint", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.chief_complaint", ""), V, "chief_complaint"),
        ("unknown allergy severity", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "content.allergies.0.severity", "lethal"), V, "severity"),
        ("encounter of an unknown patient", rec.ADD_ENCOUNTER, doctor,
         edit(visit, "patient_id", UNKNOWN), N, "unknown patient"),
        ("amend an unknown encounter", rec.AMEND_ENCOUNTER, doctor,
         edit(amend, "encounter_id", UNKNOWN), N, "unknown encounter"),
        ("amend without a reason", rec.AMEND_ENCOUNTER, doctor,
         edit(amend, "reason", ""), V, "reason"),
        ("amend an old version", rec.AMEND_ENCOUNTER, doctor,
         edit(amend, "expected_version", 5), C, "latest version"),
    ]  # fmt: skip
    await assert_refused(w.clinic, cases, value_errors=True)
    await assert_nothing_changed(w, scene)


async def test_bad_prescriptions_cancellations_and_completions_get_a_4xx_with_reasons(
    w: World, scene: Scene
) -> None:
    doctor, patient, prescribe, cancel = scene.doctor, scene.patient, scene.prescribe, scene.cancel
    cases: list[Case] = [
        ("quantity as words", rec.PRESCRIBE, doctor,
         edit(prescribe, "medication.quantity", "ten"), V, "quantity"),
        ("negative refills", rec.PRESCRIBE, doctor,
         edit(prescribe, "medication.refills", -1), V, "refills"),
        ("zero days", rec.PRESCRIBE, doctor,
         edit(prescribe, "medication.duration_days", 0), V, "duration_days"),
        ("unknown route", rec.PRESCRIBE, doctor,
         edit(prescribe, "medication.route", "telepathic"), V, "route"),
        ("unknown dosage form", rec.PRESCRIBE, doctor,
         edit(prescribe, "medication.dosage_form", "potion"), V, "dosage_form"),
        ("drug name with outer spaces", rec.PRESCRIBE, doctor,
         edit(prescribe, "medication.drug_name", " Metformin"), V, "whitespace"),
        ("empty drug name", rec.PRESCRIBE, doctor,
         edit(prescribe, "medication.drug_name", ""), V, "drug_name"),
        ("instructions of 2,001 characters", rec.PRESCRIBE, doctor,
         edit(prescribe, "medication.instructions", "y" * 2001), V, "instructions"),
        ("short signature", rec.PRESCRIBE, doctor,
         edit(prescribe, "signature", "abc"), V, "signature"),
        ("naive signing time", rec.PRESCRIBE, doctor,
         edit(prescribe, "created_at", "2026-01-01T00:00:00"), V, "created_at"),
        ("signed in the future", rec.PRESCRIBE, doctor,
         edit(prescribe, "created_at", future()), V, "future"),
        ("prescription id not a UUID", rec.PRESCRIBE, doctor,
         edit(prescribe, "prescription_id", "rx-1"), V, "prescription_id"),
        ("unknown encounter", rec.PRESCRIBE, doctor,
         signed_request(doctor, patient.patient_id, UNKNOWN).model_dump(mode="json"),
         V, "no such encounter"),
        ("cancel an unknown prescription", rec.CANCEL_PRESCRIPTION, doctor,
         edit(cancel, "prescription_id", UNKNOWN), N, "unknown prescription"),
        ("cancel without a reason", rec.CANCEL_PRESCRIPTION, doctor,
         edit(cancel, "reason", " "), V, "reason"),
        ("cancel reason of 1,001 characters", rec.CANCEL_PRESCRIPTION, doctor,
         edit(cancel, "reason", "z" * 1001), V, "reason"),
        ("complete an unknown prescription", rec.COMPLETE_PRESCRIPTION, doctor,
         {"prescription_id": UNKNOWN}, N, "unknown prescription"),
        ("complete with an id of the wrong type", rec.COMPLETE_PRESCRIPTION, doctor,
         {"prescription_id": 42}, V, "prescription_id"),
    ]  # fmt: skip
    await assert_refused(w.clinic, cases, value_errors=True)
    await assert_nothing_changed(w, scene)


async def test_search_criteria_are_checked(w: World) -> None:
    desk = await w.desk()
    cases = [
        ({}, "exactly one criterion"),
        ({"family_name": "Lind"}, "needs both"),
        ({"phone": "+44 20 7946 0958", "mrn": "MH-AAAAAAAA"}, "exactly one criterion"),
        ({"mrn": "MH-<script>"}, "mrn"),
        ({"date_of_birth": "yesterday", "family_name": "Lind"}, "date_of_birth"),
    ]
    for body, text in cases:
        error = await refusal(w.clinic, rec.SEARCH_PATIENTS, body, desk)
        assert judge(str(body), rec.SEARCH_PATIENTS, body, error, V, text, value_errors=True) == []
