"""Per-patient access: a physician reads clinical data only with a care relationship
(appointment window, an encounter they recorded) or break-glass, and records an encounter
only with one too; enforced by records and again by the keyvault, even for a request
sent straight on the bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from pydantic import BaseModel

from contracts import keyvault as kv
from contracts import records as rec
from contracts.base import RpcMethod
from mesh.errors import Forbidden, Unavailable
from mesh.runtime import Runtime
from tests.records.support import ALL, World, world
from tests.support.clinic import StaffMember
from tests.support.polling import until


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("reccare") as w:
        w.appointments.discard(ALL)  # this module is about who is related to whom
        yield w


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rogue(w: World) -> AsyncIterator[Runtime]:
    """A taken-over records service: on the bus as records' own broker identity."""
    runtime = await Runtime.start(
        "reccare-rogue", w.clinic.settings, use_database=False, identity=rec.SERVICE
    )
    try:
        yield runtime
    finally:
        await runtime.stop()


async def decrypt_as(
    rogue: Runtime,
    member: StaffMember,
    rows: list[kv.FieldRow],
    method: RpcMethod[Any, Any],
    request: BaseModel,
) -> kv.DecryptReply:
    """Ask the keyvault to decrypt `rows` for `member`'s own signed `request`."""
    proof, body = member.signed(method, request)
    return await rogue.rpc.call(
        kv.DECRYPT,
        kv.DecryptRequest(rows=rows),
        principal=member.principal,
        proof=proof,
        signed_body=body,
    )


async def related_encounter(w: World, doctor: StaffMember, patient_id: str) -> rec.EncounterWritten:
    """An encounter `doctor` records during an appointment window (which then closes):
    from then on the encounter itself relates them to the patient."""
    pair = (doctor.account_id, patient_id)
    w.appointments.add(pair)
    try:
        return await w.encounter(patient_id, doctor)
    finally:
        w.appointments.discard(pair)


async def encounter_rows(
    w: World, written: rec.EncounterWritten, patient_id: str
) -> list[kv.FieldRow]:
    """The encounter's encrypted rows as records holds them (what a taken-over records
    would hand the keyvault)."""
    assert w.service.db is not None
    row = await w.service.db.fetchone(
        "SELECT note_enc, allergies_enc FROM encounter_versions WHERE encounter_id = %s",
        (written.encounter_id,),
    )
    assert row is not None
    return [
        kv.FieldRow(
            table="encounter_versions",
            row_id=f"{written.encounter_id}.v1",
            fields={"note": row[0], "allergies": row[1]},
            binding={"patient": patient_id},
        )
    ]


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
    # recording an encounter needs a relationship too (here an appointment); once the
    # window is over, the encounter relates its author, and only its author
    await related_encounter(w, await w.doctor("dr-walkin"), patient.patient_id)
    assert (await summary(w, "dr-walkin", patient.patient_id)).encounters
    with pytest.raises(Forbidden):
        await summary(w, "dr-other", patient.patient_id)


async def test_no_relationship_no_encounter_until_break_glass(w: World) -> None:
    """A physician without a care relationship cannot write themselves one by recording
    an encounter (403, naming break-glass), nor then read; break-glass opens both."""
    patient = await w.register(family_name="Walkin")
    doctor = await w.doctor("dr-uninvited")
    with pytest.raises(Forbidden) as err:
        await w.encounter(patient.patient_id, doctor)
    assert "break-glass" in err.value.message
    assert err.value.details == {"patient_id": patient.patient_id, "break_glass": True}
    with pytest.raises(Forbidden):
        await summary(w, "dr-uninvited", patient.patient_id)
    await w.call(
        rec.BREAK_GLASS,
        rec.BreakGlassRequest(patient_id=patient.patient_id, reason="Collapsed in the lobby"),
        doctor,
    )
    written = await w.encounter(patient.patient_id, doctor)
    chart = await summary(w, "dr-uninvited", patient.patient_id)
    assert [e.encounter_id for e in chart.encounters] == [written.encounter_id]


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

    # refused at once by records; by the keyvault too once its cached yes lapses
    # (`care_cache_s`, 1 s in the tests)
    async def closed() -> bool:
        try:
            await summary(w, "dr-er", patient.patient_id)
        except Forbidden:
            return True
        return False

    assert await until(closed, timeout=10, interval=0.2)


async def test_the_keyvault_refuses_clinical_decrypts_outside_access_on_the_bus(
    w: World, rogue: Runtime
) -> None:
    """Whoever controls the records service holds a real physician's correctly signed
    request for the patient's chart, and the patient's encounter rows: the keyvault asks
    records' access rule itself and decrypts nothing for a physician without a care
    relationship; for the encounter's author it does."""
    patient = await w.register(family_name="Guarded")
    author = await w.doctor("dr-author")
    written = await related_encounter(w, author, patient.patient_id)
    rows = await encounter_rows(w, written, patient.patient_id)
    chart = rec.PatientSummaryRequest(patient_id=patient.patient_id)
    intruder = await w.doctor("dr-intruder")  # a real physician, correctly signed
    with pytest.raises(Forbidden, match="care relationship"):
        await decrypt_as(rogue, intruder, rows, rec.PATIENT_SUMMARY, chart)
    # The same rows claimed to be no one's: the signed request names the patient, so
    # they are not rows it lets the keyvault decrypt.
    unbound = [r.model_copy(update={"binding": {}}) for r in rows]
    with pytest.raises(Forbidden, match="another patient"):
        await decrypt_as(rogue, intruder, unbound, rec.PATIENT_SUMMARY, chart)
    plain = await decrypt_as(rogue, author, rows, rec.PATIENT_SUMMARY, chart)
    assert plain.failed == [] and "Wheezing" in plain.rows[0]["note"]
    refusals = await w.audited(lambda a: a.type == "vault.care_refused")
    assert refusals


async def test_a_care_check_that_cannot_be_made_is_a_503_never_a_refusal_or_an_answer(
    w: World, rogue: Runtime
) -> None:
    """Scheduling down: whether an appointment exists cannot be known, so records opens
    nothing, and says so as 'try again' (503), not as 'no care relationship' (403), which
    would send a physician to break-glass for a patient they are seeing. The keyvault,
    asked straight on the bus for the same physician, decrypts nothing and says the same."""
    patient = await w.register(family_name="Waiting")
    author = await w.doctor("dr-waiting-author")
    written = await related_encounter(w, author, patient.patient_id)
    rows = await encounter_rows(w, written, patient.patient_id)
    booked = await w.doctor("dr-waiting")
    w.appointments.add((booked.account_id, patient.patient_id))
    assert w.scheduling is not None and w.scheduling.server is not None
    await w.scheduling.server.stop(1.0)
    try:
        with pytest.raises(Unavailable, match="try again"):
            await summary(w, "dr-waiting", patient.patient_id)
        chart = rec.PatientSummaryRequest(patient_id=patient.patient_id)
        with pytest.raises(Unavailable, match="try again"):
            await decrypt_as(rogue, booked, rows, rec.PATIENT_SUMMARY, chart)
        # the encounter's author needs no appointment: their chart opens meanwhile
        assert (await summary(w, "dr-waiting-author", patient.patient_id)).encounters
    finally:
        await w.scheduling.server.start()
    assert (await summary(w, "dr-waiting", patient.patient_id)).encounters
