"""Per-patient access: a physician reads clinical data only with a care relationship
(appointment window, an encounter they recorded) or break-glass; enforced by records and
again by the keyvault, even for a request sent straight on the bus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from contracts import keyvault as kv
from contracts import records as rec
from mesh.errors import Forbidden
from tests.records.support import ALL, World, world


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("reccare") as w:
        w.appointments.discard(ALL)  # this module is about who is related to whom
        yield w


async def summary(w: World, doctor_name: str, patient_id: str) -> rec.PatientSummary:
    return await w.call(
        rec.PATIENT_SUMMARY,
        rec.PatientSummaryRequest(patient_id=patient_id),
        await w.doctor(doctor_name),
    )


async def test_no_relationship_is_refused_with_a_way_out(w: World) -> None:
    patient = await w.register(family_name="Stranger")
    with pytest.raises(Forbidden) as err:
        await summary(w, "dr-nobody", patient.patient_id)
    assert "break-glass" in err.value.message
    assert err.value.details == {"patient_id": patient.patient_id, "break_glass": True}
    with pytest.raises(Forbidden):
        await w.call(
            rec.GET_PATIENT,
            rec.GetPatientRequest(patient_id=patient.patient_id),
            await w.doctor("dr-nobody"),
        )
    # demographics-only searches stay open to physicians (to find the patient at all)
    found = await w.call(
        rec.SEARCH_PATIENTS,
        rec.SearchPatientsRequest(family_name="Stranger", date_of_birth="1984-03-09"),
        await w.doctor("dr-nobody"),
    )
    assert [p.patient_id for p in found.patients] == [patient.patient_id]


async def test_an_appointment_or_an_own_encounter_is_a_care_relationship(w: World) -> None:
    patient = await w.register(family_name="Booked")
    doctor = await w.doctor("dr-booked")
    w.appointments.add((doctor.account_id, patient.patient_id))
    assert (
        await summary(w, "dr-booked", patient.patient_id)
    ).patient.patient_id == patient.patient_id
    w.appointments.discard((doctor.account_id, patient.patient_id))  # window over
    with pytest.raises(Forbidden):
        await summary(w, "dr-booked", patient.patient_id)
    # recording an encounter is allowed and makes the relationship for its author only
    await w.encounter(patient.patient_id, await w.doctor("dr-walkin"))
    assert (await summary(w, "dr-walkin", patient.patient_id)).encounters
    with pytest.raises(Forbidden):
        await summary(w, "dr-other", patient.patient_id)


async def test_break_glass_grants_time_limited_audited_reported_access(w: World) -> None:
    patient = await w.register(family_name="Emergency")
    er = await w.doctor("dr-er")
    opened = await w.call(
        rec.BREAK_GLASS,
        rec.BreakGlassRequest(patient_id=patient.patient_id, reason="Unconscious on arrival"),
        er,
    )
    assert (await summary(w, "dr-er", patient.patient_id)).patient.patient_id == patient.patient_id
    events = await w.audited(
        lambda a: a.type == "patient.break_glass" and a.patient_id == patient.patient_id
    )
    assert events and events[0].purpose_of_use == "ETREAT"
    assert events[0].agent.account_id == er.account_id
    admin = await w.admin()
    report = await w.call(
        rec.BREAK_GLASS_REPORT, rec.BreakGlassReportRequest(unacknowledged_only=True), admin
    )
    (grant,) = [g for g in report.grants if g.grant_id == opened.grant_id]
    assert grant.reason == "Unconscious on arrival" and grant.physician_id == er.account_id
    acked = await w.call(
        rec.ACKNOWLEDGE_BREAK_GLASS,
        rec.AcknowledgeBreakGlassRequest(grant_id=opened.grant_id, note="justified"),
        admin,
    )
    assert acked.acknowledged_by == admin.account_id
    with pytest.raises(Forbidden):  # physicians do not review grants
        await w.call(rec.BREAK_GLASS_REPORT, rec.BreakGlassReportRequest(), er)
    # the grant expires (here: moved into the past) and access ends with it
    assert w.service.db is not None
    await w.service.db.execute(
        "UPDATE break_glass SET expires_at = NOW(6) - INTERVAL 1 SECOND WHERE grant_id = %s",
        (opened.grant_id,),
    )
    await asyncio.sleep(5.1)  # the keyvault's positive answers are cached for 5 s
    with pytest.raises(Forbidden):
        await summary(w, "dr-er", patient.patient_id)


async def test_the_keyvault_refuses_clinical_decrypts_outside_access_on_the_bus(w: World) -> None:
    patient = await w.register(family_name="Guarded")
    author = await w.doctor("dr-author")
    written = await w.encounter(patient.patient_id, author)
    assert w.service.db is not None
    row = await w.service.db.fetchone(
        "SELECT note_enc, allergies_enc FROM encounter_versions WHERE encounter_id = %s",
        (written.encounter_id,),
    )
    assert row is not None
    rows = [
        kv.FieldRow(
            table="encounter_versions",
            row_id=f"{written.encounter_id}.v1",
            fields={"note": row[0], "allergies": row[1]},
        )
    ]
    intruder = await w.doctor("dr-intruder")  # a real physician, correctly signed
    for patient_id in (patient.patient_id, None):
        with pytest.raises(Forbidden):
            await w.clinic.call(
                kv.DECRYPT, kv.DecryptRequest(rows=rows, patient_id=patient_id), intruder
            )
    plain = await w.clinic.call(
        kv.DECRYPT, kv.DecryptRequest(rows=rows, patient_id=patient.patient_id), author
    )
    assert "Wheezing" in plain.rows[0]["note"]
    refusals = await w.audited(lambda a: a.type == "vault.care_refused")
    assert refusals
