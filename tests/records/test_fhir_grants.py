"""The FHIR reads on the bus, as an attacker sees them: a taken-over records service
holding physicians' correctly signed FHIR requests and the database's ciphertext gets
from the keyvault only what each FHIR interaction needs (`contracts.fhir` grants), and
records serves a FHIR method only the very request that was signed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from contracts import fhir
from contracts import keyvault as kv
from contracts import records as rec
from mesh.errors import Forbidden, Unauthenticated
from mesh.runtime import Runtime
from tests.records.support import ALL, World, world
from tests.records.test_zero_trust import decrypt_as


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("recfhir") as w:
        w.appointments.discard(ALL)  # relationships are set by each test
        yield w


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rogue(w: World) -> AsyncIterator[Runtime]:
    runtime = await Runtime.start(
        "recfhir-rogue", w.clinic.settings, use_database=False, identity=rec.SERVICE
    )
    try:
        yield runtime
    finally:
        await runtime.stop()


async def stored(w: World, sql: str, *args: object) -> tuple[Any, ...]:
    assert w.service.db is not None
    found = await w.service.db.fetchone(sql, args)
    assert found is not None
    return tuple(found)


def row(table: str, row_id: str, column: str, value: str, patient: str) -> kv.FieldRow:
    return kv.FieldRow(
        table=table, row_id=row_id, fields={column: value}, binding={"patient": patient}
    )


async def test_each_fhir_read_opens_only_its_own_rows(w: World, rogue: Runtime) -> None:
    a = await w.register(family_name="Fhirson")
    doctor = await w.doctor("dr-fhir")
    w.appointments.add((doctor.account_id, a.patient_id))
    first = await w.encounter(a.patient_id, doctor)
    second = await w.encounter(a.patient_id, doctor)
    (identity,) = await stored(
        w, "SELECT identity_enc FROM patients WHERE patient_id = %s", a.patient_id
    )
    notes = {}
    for e in (first, second):
        (notes[e.encounter_id],) = await stored(
            w, "SELECT note_enc FROM encounter_versions WHERE encounter_id = %s", e.encounter_id
        )
    patient_row = row("patients", a.patient_id, "identity", identity, a.patient_id)
    first_row, second_row = (
        row(
            "encounter_versions",
            f"{e.encounter_id}.v1",
            "note",
            notes[e.encounter_id],
            a.patient_id,
        )
        for e in (first, second)
    )
    # A signed Patient read decrypts the patient's demographics (not their insurance),
    # and no encounter of theirs.
    read = fhir.PatientRead(patient_id=a.patient_id)
    plain = await decrypt_as(rogue, doctor, [patient_row], fhir.PATIENT_READ, read)
    assert "Fhirson" in plain.rows[0]["identity"]
    (insurance,) = await stored(
        w, "SELECT insurance_enc FROM patients WHERE patient_id = %s", a.patient_id
    )
    assert insurance is not None
    insured = row("patients", a.patient_id, "insurance", insurance, a.patient_id)
    with pytest.raises(Forbidden, match="these columns"):
        await decrypt_as(rogue, doctor, [insured], fhir.PATIENT_READ, read)
    got = await w.call(fhir.PATIENT_READ, read, doctor)
    assert got.demographics.family_name == "Fhirson" and got.demographics.insurance is None
    assert got.clinical_flags is None
    with pytest.raises(Forbidden):
        await decrypt_as(rogue, doctor, [first_row], fhir.PATIENT_READ, read)
    # A signed Condition read names one encounter in its id: that encounter's rows only.
    condition = fhir.ConditionRead(condition_id=f"{first.encounter_id}-dx1")
    plain = await decrypt_as(rogue, doctor, [first_row], fhir.CONDITION_READ, condition)
    assert plain.failed == [] and plain.rows[0]["note"]
    with pytest.raises(Forbidden):
        await decrypt_as(rogue, doctor, [second_row], fhir.CONDITION_READ, condition)
    with pytest.raises(Forbidden):
        await decrypt_as(rogue, doctor, [patient_row], fhir.CONDITION_READ, condition)
    # Without a care relationship, a physician's signed FHIR search opens nothing.
    stranger = await w.doctor("dr-stranger")
    search = fhir.ClinicalSearch(patient=a.patient_id)
    with pytest.raises(Forbidden, match="care relationship"):
        await decrypt_as(rogue, stranger, [first_row], fhir.ENCOUNTER_SEARCH, search)


async def test_a_signed_fhir_request_serves_only_itself(w: World) -> None:
    a = await w.register(family_name="Signedfor")
    b = await w.register(family_name="Notsigned")
    doctor = await w.doctor("dr-signed")
    w.appointments.update({(doctor.account_id, a.patient_id), (doctor.account_id, b.patient_id)})
    proof, body = doctor.signed(fhir.PATIENT_READ, fhir.PatientRead(patient_id=a.patient_id))
    with pytest.raises(Unauthenticated):
        await w.clinic.client.rpc.call(
            fhir.PATIENT_READ,
            fhir.PatientRead(patient_id=b.patient_id),
            principal=doctor.principal,
            proof=proof,
            signed_body=body,
        )
    # ... nor another method for the same patient (the chart instead of the Patient)
    with pytest.raises(Unauthenticated):
        await w.clinic.client.rpc.call(
            fhir.EVERYTHING,
            fhir.Everything(patient_id=a.patient_id),
            principal=doctor.principal,
            proof=proof,
            signed_body=body,
        )
    got = await w.call(fhir.PATIENT_READ, fhir.PatientRead(patient_id=a.patient_id), doctor)
    assert got.demographics.family_name == "Signedfor"


async def test_a_fhir_family_search_is_exact(w: World) -> None:
    """`Patient?family=&birthdate=`: a name that only sounds alike is not returned (the
    API's search is spelling-tolerant; FHIR's is exact, and the keyvault enforces it)."""
    exact = await w.register(family_name="Meyer", date_of_birth="1970-05-05")
    await w.register(family_name="Maier", date_of_birth="1970-05-05")
    desk = await w.desk()
    api = await w.call(
        rec.SEARCH_PATIENTS,
        rec.SearchPatientsRequest(family_name="Meyer", date_of_birth="1970-05-05"),
        desk,
    )
    assert {p.family_name for p in api.patients} == {"Meyer", "Maier"}
    found = await w.call(
        fhir.PATIENT_SEARCH, fhir.PatientSearch(family="meyer", birthdate="1970-05-05"), desk
    )
    assert [p.patient_id for p in found.patients] == [exact.patient_id]
