"""Zero trust on the bus, as an attacker sees it: plain calls on the real broker.

The attacker controls a process with a mesh identity (the gateway's, or the records
service's own: a taken-over service) and holds what such a process would see: real
physicians' correctly signed requests, and ciphertext rows from the database. A signature
authorises one operation, once: it lets nobody do another operation, and what it lets
the keyvault decrypt is bounded by that operation (its patient, whose binding is part of
every ciphertext) and by the physician's care relationships.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from pydantic import BaseModel

from contracts import auth
from contracts import keyvault as kv
from contracts import records as rec
from contracts.base import RpcMethod
from mesh.errors import Forbidden, Unauthenticated
from mesh.runtime import Runtime
from tests.records.support import ALL, World, world
from tests.support.clinic import StaffMember


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("reczt") as w:
        w.appointments.discard(ALL)  # relationships are set by each test
        yield w


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rogue(w: World) -> AsyncIterator[Runtime]:
    """A taken-over records service: on the bus as records' own broker identity."""
    runtime = await Runtime.start(
        "reczt-rogue", w.clinic.settings, use_database=False, identity=rec.SERVICE
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
    """Ask the keyvault, as records, to decrypt `rows` with `member`'s signed `request`."""
    proof, body = member.signed(method, request)
    return await rogue.rpc.call(
        kv.DECRYPT,
        kv.DecryptRequest(rows=rows),
        principal=member.principal,
        proof=proof,
        signed_body=body,
    )


async def related(w: World, doctor: StaffMember, patient_id: str) -> None:
    """`doctor` has an appointment with the patient now (the stand-in scheduling says)."""
    w.appointments.add((doctor.account_id, patient_id))


async def prescription_rows(w: World, patient_id: str, bound_to: str) -> list[kv.FieldRow]:
    """The patient's prescription ciphertexts as stored, claimed to be `bound_to`'s."""
    assert w.service.db is not None
    found = await w.service.db.fetchall(
        "SELECT prescription_id, medication_enc FROM prescriptions WHERE patient_id = %s",
        (patient_id,),
    )
    assert found
    return [
        kv.FieldRow(
            table="prescriptions",
            row_id=prescription_id,
            fields={"medication": medication},
            binding={"patient": bound_to},
        )
        for prescription_id, medication in found
    ]


async def test_a_proof_for_another_operation_is_refused(w: World, rogue: Runtime) -> None:
    """A physician's signature of GET /api/v1/me (a harmless request anyone might see
    signed) opens neither a patient's chart nor the keyvault."""
    patient = await w.register(family_name="Bystander")
    doctor = await w.doctor("dr-me")
    await related(w, doctor, patient.patient_id)
    chart = rec.PatientSummaryRequest(patient_id=patient.patient_id)
    proof, body = doctor.signed(auth.ME, auth.MeRequest())
    with pytest.raises(Unauthenticated, match="GET /api/v1/me"):
        await w.clinic.client.rpc.call(
            rec.PATIENT_SUMMARY,
            chart,
            principal=doctor.principal,
            proof=proof,
            signed_body=body,
        )
    assert w.service.db is not None
    stored = await w.service.db.fetchone(
        "SELECT mrn_enc FROM patients WHERE patient_id = %s", (patient.patient_id,)
    )
    assert stored is not None
    rows = [
        kv.FieldRow(
            table="patients",
            row_id=patient.patient_id,
            fields={"mrn": stored[0]},
            binding={"patient": patient.patient_id},
        )
    ]
    proof, body = doctor.signed(auth.ME, auth.MeRequest())
    with pytest.raises(Unauthenticated, match=r"auth\.me"):
        await rogue.rpc.call(
            kv.DECRYPT,
            kv.DecryptRequest(rows=rows),
            principal=doctor.principal,
            proof=proof,
            signed_body=body,
        )
    assert await w.audited(
        lambda a: a.type == "bus.signature_refused" and "auth.me" in (a.detail or "")
    )
    # The very same rows with a signature of the chart itself: the keyvault serves them.
    plain = await decrypt_as(rogue, doctor, rows, rec.PATIENT_SUMMARY, chart)
    assert plain.failed == [] and plain.rows[0]["mrn"].startswith(rec.MRN_PREFIX)


async def test_a_relationship_with_one_patient_opens_no_other_patients_rows(
    w: World, rogue: Runtime
) -> None:
    """Dr Y cares for patient B only. Holding patient A's prescription rows and Y's own
    signed requests, a taken-over records service still gets none of A's plaintext."""
    a = await w.register(family_name="Alpha")
    b = await w.register(family_name="Bravo")
    x, y = await w.doctor("dr-x"), await w.doctor("dr-y")
    await related(w, x, a.patient_id)
    await related(w, y, b.patient_id)
    encounter = await w.encounter(a.patient_id, x)
    await w.prescribe(a.patient_id, encounter.encounter_id, x, drug_name="Morphine sulfate")
    for_b = rec.ListPrescriptionsRequest(patient_id=b.patient_id)
    for_a = rec.ListPrescriptionsRequest(patient_id=a.patient_id)

    # A's rows passed off as B's: the binding is part of each ciphertext, so under a
    # claim of B they do not decrypt.
    claimed = await prescription_rows(w, a.patient_id, bound_to=b.patient_id)
    reply = await decrypt_as(rogue, y, claimed, rec.LIST_PRESCRIPTIONS, for_b)
    assert reply.failed == list(range(len(claimed)))
    assert all(row == {} for row in reply.rows)
    # A's rows as A's, with Y's signed request for B: not rows that request names.
    honest = await prescription_rows(w, a.patient_id, bound_to=a.patient_id)
    with pytest.raises(Forbidden, match="another patient"):
        await decrypt_as(rogue, y, honest, rec.LIST_PRESCRIPTIONS, for_b)
    # ... nor with Y's signed request for A: Y has no care relationship with A.
    with pytest.raises(Forbidden, match="care relationship"):
        await decrypt_as(rogue, y, honest, rec.LIST_PRESCRIPTIONS, for_a)
    with pytest.raises(Forbidden):  # and records itself refuses Y the list
        await w.call(rec.LIST_PRESCRIPTIONS, for_a, y)
    # The rows are genuine: for X's own signed request for A, they decrypt.
    plain = await decrypt_as(rogue, x, honest, rec.LIST_PRESCRIPTIONS, for_a)
    assert plain.failed == [] and "Morphine sulfate" in plain.rows[0]["medication"]
    assert await w.audited(lambda e: e.type == "vault.care_refused")


async def test_a_prescribing_check_opens_allergies_and_drugs_only(w: World, rogue: Runtime) -> None:
    """A physician's signed check (or encounter) lets the keyvault decrypt that patient's
    allergy list and prescriptions' drugs: not the encounters' notes, not the
    demographics, not another patient's allergy list."""
    a = await w.register(family_name="Checked")
    b = await w.register(family_name="Unchecked")
    doctor = await w.doctor("dr-check")
    await related(w, doctor, a.patient_id)
    await related(w, doctor, b.patient_id)
    latex = rec.Allergy(substance="Latex", code="class:latex", severity="severe")
    for patient in (a, b):
        await w.call(
            rec.RECORD_ALLERGY,
            rec.RecordAllergyRequest(patient_id=patient.patient_id, allergy=latex),
            doctor,
        )
    encounter = await w.encounter(a.patient_id, doctor)
    check = rec.CheckPrescriptionRequest(
        patient_id=a.patient_id,
        medication=rec.Medication(
            drug_name="Paracetamol",
            strength="500 mg",
            dosage_form="tablet",
            dose="1 tablet",
            route="oral",
            frequency="every 6 hours",
            duration_days=3,
            quantity=12,
            refills=0,
            free_text=True,
        ),
    )
    assert w.service.db is not None

    async def stored(sql: str, *args: object) -> tuple[Any, ...]:
        row = await w.service.db.fetchone(sql, args)  # type: ignore[union-attr]
        assert row is not None
        return row

    def row(table: str, row_id: str, column: str, value: str, patient: str) -> kv.FieldRow:
        return kv.FieldRow(
            table=table, row_id=row_id, fields={column: value}, binding={"patient": patient}
        )

    (a_list,) = await stored(
        "SELECT allergies_enc FROM allergy_lists WHERE patient_id = %s", a.patient_id
    )
    (b_list,) = await stored(
        "SELECT allergies_enc FROM allergy_lists WHERE patient_id = %s", b.patient_id
    )
    (note,) = await stored(
        "SELECT note_enc FROM encounter_versions WHERE encounter_id = %s", encounter.encounter_id
    )
    (identity,) = await stored(
        "SELECT identity_enc FROM patients WHERE patient_id = %s", a.patient_id
    )
    own = row("allergy_lists", a.patient_id, "allergies", a_list, a.patient_id)
    plain = await decrypt_as(rogue, doctor, [own], rec.CHECK_PRESCRIPTION, check)
    assert "Latex" in plain.rows[0]["allergies"]
    refusals = {
        "these columns": row(
            "encounter_versions", f"{encounter.encounter_id}.v1", "note", note, a.patient_id
        ),
        "patients rows": row("patients", a.patient_id, "identity", identity, a.patient_id),
        "another patient": row("allergy_lists", b.patient_id, "allergies", b_list, b.patient_id),
    }
    for refusal, asked in refusals.items():
        with pytest.raises(Forbidden, match=refusal):
            await decrypt_as(rogue, doctor, [asked], rec.CHECK_PRESCRIPTION, check)
