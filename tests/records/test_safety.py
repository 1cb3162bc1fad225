"""Safe prescribing, against the real records service and keyvault: each alert kind fires,
an override needs a written reason that the prescriber's signature covers, and a
prescription whose signed alerts are not what records finds itself (no check, a stale
check, straight on the bus) is refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from contracts import records as rec
from mesh.errors import Conflict, IntegrityError, InvalidRequest, RpcError
from services.records import store
from tests.records.support import OVERRIDE, World, event, signed_request, world
from tests.support.clinic import StaffMember

SEED = Path(__file__).resolve().parents[2] / "services" / "records" / "catalog_seed.json"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("recsafety") as w:
        admin = await w.admin()
        for details in json.loads(SEED.read_text())["medicines"]:
            request = rec.AddMedicineRequest(details=rec.MedicineDetails(**details))
            await w.call(rec.ADD_MEDICINE, request, admin)
        yield w


async def catalog(w: World, name: str) -> dict[str, Any]:
    """The medication fields of a catalog entry, as the web app copies them."""
    found = await w.call(
        rec.SEARCH_MEDICINES, rec.SearchMedicinesRequest(prefix=name, limit=50), await w.doctor()
    )
    (medicine,) = [m for m in found.medicines if m.details.name == name]
    d = medicine.details
    return {
        "drug_name": d.name,
        "strength": d.strength,
        "dosage_form": d.dosage_form,
        "route": d.route,
        "medicine_id": medicine.medicine_id,
        "free_text": False,
    }


async def patient(w: World, name: str, *allergies: rec.Allergy) -> tuple[str, str]:
    """A patient with an encounter that records no allergy, and `allergies` on their list."""
    registered = await w.register(given_name=name)
    encounter = await w.encounter(registered.patient_id, allergies=[])
    for allergy in allergies:
        request = rec.RecordAllergyRequest(patient_id=registered.patient_id, allergy=allergy)
        await w.call(rec.RECORD_ALLERGY, request, await w.doctor())
    return registered.patient_id, encounter.encounter_id


async def prescribed(w: World, patient_id: str, encounter_id: str, name: str) -> str:
    """An active prescription of a catalog medicine (alerts overridden if any)."""
    written = await w.prescribe(patient_id, encounter_id, **await catalog(w, name))
    return written.prescription_id


def kinds(check: rec.SafetyCheck) -> list[str]:
    return [a.kind.value for a in check.alerts]


PENICILLIN = rec.Allergy(
    substance="Penicillin", reaction="anaphylaxis", severity=rec.AllergySeverity.severe
)


async def test_penicillin_allergy_blocks_amoxicillin_until_overridden_with_a_reason(
    w: World,
) -> None:
    doctor = await w.doctor()
    patient_id, encounter_id = await patient(w, "Penny", PENICILLIN)
    amoxicillin = await catalog(w, "Amoxicillin")
    check = await w.check(patient_id, **amoxicillin)
    (alert,) = check.alerts
    assert alert.kind is rec.AlertKind.allergy and alert.severity is rec.AlertSeverity.high
    assert "Penicillin" in alert.message and "severe" in alert.message
    assert "penicillins" in alert.message
    assert check.codes == [alert.code] and alert.allergy_id is not None

    # Signed without the alert (a client that skipped the check): refused.
    unchecked = signed_request(doctor, patient_id, encounter_id, **amoxicillin)
    with pytest.raises(Conflict, match="not acknowledged") as refused:
        await w.call(rec.PRESCRIBE, unchecked, doctor)
    assert refused.value.details == {"alerts": check.codes, "signed": []}

    # The alert without a reason: refused by the contract, on the bus as at the edge.
    no_reason = rec.PrescribeRequest.model_construct(
        **{**dict(unchecked), "alerts": check.codes, "override_reason": ""}
    )
    with pytest.raises(InvalidRequest) as invalid:
        await w.call(rec.PRESCRIBE, no_reason, doctor)
    assert "written reason" in str(invalid.value.details)

    # Acknowledged with a reason: prescribed, and the reason is shown with it.
    overridden = signed_request(doctor, patient_id, encounter_id, alerts=check.codes, **amoxicillin)
    await w.call(rec.PRESCRIBE, overridden, doctor)
    got = await w.call(
        rec.GET_PRESCRIPTION,
        rec.GetPrescriptionRequest(prescription_id=overridden.prescription_id),
        doctor,
    )
    assert got.alerts == check.codes and got.override_reason == OVERRIDE
    audits = await w.audited(
        lambda a: a.type == "prescription.create" and a.entity_id == overridden.prescription_id
    )
    assert audits and "overrode 1 alerts: allergy" in (audits[0].detail or "")
    assert alert.code in (audits[0].detail or "")
    assert OVERRIDE not in (audits[0].detail or "")  # the reason is patient data


async def test_the_override_reason_and_alerts_are_inside_the_signature(w: World) -> None:
    doctor = await w.doctor()
    patient_id, encounter_id = await patient(w, "Signed Override", PENICILLIN)
    amoxicillin = await catalog(w, "Amoxicillin")
    codes = (await w.check(patient_id, **amoxicillin)).codes
    good = signed_request(doctor, patient_id, encounter_id, alerts=codes, **amoxicillin)
    assert b'"override_reason":"' + OVERRIDE.encode() + b'"' in rec.canonical_prescription(
        good.core(doctor.account_id)
    )
    for name, forged in {
        "another reason": good.model_copy(update={"override_reason": "no reason at all"}),
        "alerts changed": good.model_copy(update={"alerts": [*codes, "unchecked:drug"]}),
    }.items():
        with pytest.raises((InvalidRequest, Conflict)) as refused:
            await w.call(rec.PRESCRIBE, forged, doctor)
        assert isinstance(refused.value, RpcError), name
    await w.call(rec.PRESCRIBE, good, doctor)
    verdict = await w.call(
        rec.VERIFY_PRESCRIPTION,
        rec.VerifyPrescriptionRequest(prescription_id=good.prescription_id),
        doctor,
    )
    assert verdict.valid and verdict.prescription is not None
    assert verdict.prescription.override_reason == OVERRIDE
    # The database edits the stored reason (its ciphertext): the row's MAC catches it.
    row = await store.get_prescription(w.service.db, good.prescription_id)
    assert row is not None and row.safety_enc is not None
    assert w.service.db is not None
    await w.service.db.execute(
        "UPDATE prescriptions SET safety_enc = NULL WHERE prescription_id = %s",
        (good.prescription_id,),
    )
    tampered = await w.call(
        rec.VERIFY_PRESCRIPTION,
        rec.VerifyPrescriptionRequest(prescription_id=good.prescription_id),
        doctor,
    )
    assert not tampered.valid and not tampered.mac_valid and not tampered.signature_valid


async def test_cross_sensitivity_between_penicillins_and_cephalosporins(w: World) -> None:
    moderate = PENICILLIN.model_copy(update={"severity": rec.AllergySeverity.moderate})
    patient_id, _ = await patient(w, "Cross", moderate)
    check = await w.check(patient_id, **await catalog(w, "Cefalexin"))
    (alert,) = check.alerts
    assert alert.kind is rec.AlertKind.cross_sensitivity
    assert alert.severity is rec.AlertSeverity.moderate
    assert "cephalosporins" in alert.message and "penicillins" in alert.message


async def test_an_allergy_to_a_class_and_to_free_text(w: World) -> None:
    nsaids = rec.Allergy(substance="NSAIDs", code="class:nsaids", reaction="bronchospasm")
    brand = rec.Allergy(substance="Brufen-X", severity=rec.AllergySeverity.mild)
    patient_id, _ = await patient(w, "Classy", nsaids, brand)
    assert kinds(await w.check(patient_id, **await catalog(w, "Naproxen"))) == ["allergy"]
    assert kinds(await w.check(patient_id, **await catalog(w, "Paracetamol"))) == []
    # A free-text allergy outside the vocabulary is matched by name.
    free = await w.check(
        patient_id, drug_name="Brufen-X", strength="200 mg", dosage_form="tablet", route="oral"
    )
    assert sorted(kinds(free)) == ["allergy", "unchecked"]


async def test_inactive_allergies_do_not_alert(w: World) -> None:
    patient_id, _ = await patient(w, "Refuted", PENICILLIN)
    allergies = await w.call(
        rec.LIST_ALLERGIES, rec.ListAllergiesRequest(patient_id=patient_id), await w.doctor()
    )
    (entry,) = allergies.allergies
    await w.call(
        rec.CHANGE_ALLERGY,
        rec.ChangeAllergyRequest(
            patient_id=patient_id,
            allergy_id=entry.allergy_id,
            expected_version=allergies.version,
            allergy=PENICILLIN.model_copy(update={"status": rec.AllergyStatus.refuted}),
        ),
        await w.doctor(),
    )
    assert (await w.check(patient_id, **await catalog(w, "Amoxicillin"))).alerts == []


async def test_duplicate_therapy_by_ingredient_and_by_class(w: World) -> None:
    patient_id, encounter_id = await patient(w, "Double")
    amoxicillin = await prescribed(w, patient_id, encounter_id, "Amoxicillin")
    ibuprofen = await prescribed(w, patient_id, encounter_id, "Ibuprofen")
    same = await w.check(patient_id, **await catalog(w, "Amoxicillin/Clavulanic acid"))
    (alert,) = same.alerts
    assert alert.kind is rec.AlertKind.duplicate_therapy and alert.prescription_id == amoxicillin
    assert "amoxicillin" in alert.message
    by_class = await w.check(patient_id, **await catalog(w, "Naproxen"))
    assert [(a.kind.value, a.prescription_id) for a in by_class.alerts] == [
        ("duplicate_therapy", ibuprofen)
    ]
    # Cancelled or completed prescriptions are not active therapy.
    await w.call(
        rec.CANCEL_PRESCRIPTION,
        rec.CancelPrescriptionRequest(prescription_id=ibuprofen, reason="stomach pain"),
        await w.doctor(),
    )
    assert (await w.check(patient_id, **await catalog(w, "Naproxen"))).alerts == []


@pytest.mark.parametrize(
    ("active", "new", "effect"),
    [
        ("Warfarin", "Ibuprofen", "bleeding"),
        ("Ramipril", "Spironolactone", "hyperkalaemia"),
        ("Sertraline", "Phenelzine", "serotonin syndrome"),
        ("Simvastatin", "Clarithromycin", "myopathy"),
        ("Methotrexate", "Trimethoprim", "bone marrow"),
    ],
)
async def test_the_classic_interacting_pairs(w: World, active: str, new: str, effect: str) -> None:
    patient_id, encounter_id = await patient(w, f"Pair {active}")
    first = await prescribed(w, patient_id, encounter_id, active)
    check = await w.check(patient_id, **await catalog(w, new))
    (alert,) = [a for a in check.alerts if a.kind is rec.AlertKind.interaction]
    assert alert.prescription_id == first and alert.severity is rec.AlertSeverity.high
    assert effect in alert.message and active in alert.message


async def test_a_drug_outside_the_vocabulary_cannot_be_fully_checked(w: World) -> None:
    patient_id, _ = await patient(w, "Unknown Drug")
    check = await w.check(
        patient_id, drug_name="Zorblax", strength="5 mg", dosage_form="tablet", route="oral"
    )
    assert [a.code for a in check.alerts] == ["unchecked:drug"]
    known = await w.check(
        patient_id, drug_name="Amoxicillin caps", strength="500 mg", dosage_form="capsule"
    )
    assert known.alerts == []  # free text the vocabulary recognises is checked


async def test_a_stale_check_is_refused(w: World) -> None:
    """The check said nothing; a penicillin allergy was recorded before signing."""
    doctor = await w.doctor()
    patient_id, encounter_id = await patient(w, "Stale")
    amoxicillin = await catalog(w, "Amoxicillin")
    assert (await w.check(patient_id, **amoxicillin)).codes == []
    await w.call(
        rec.RECORD_ALLERGY,
        rec.RecordAllergyRequest(patient_id=patient_id, allergy=PENICILLIN),
        doctor,
    )
    with pytest.raises(Conflict, match="not acknowledged"):
        await w.call(
            rec.PRESCRIBE, signed_request(doctor, patient_id, encounter_id, **amoxicillin), doctor
        )
    # Alerts acknowledged that no longer apply are refused too.
    codes = (await w.check(patient_id, **amoxicillin)).codes
    ok = await w.check(patient_id, **await catalog(w, "Paracetamol"))
    assert ok.codes == []
    with pytest.raises(Conflict, match="changed since the check"):
        await w.call(
            rec.PRESCRIBE,
            signed_request(
                doctor, patient_id, encounter_id, alerts=codes, **await catalog(w, "Paracetamol")
            ),
            doctor,
        )


async def test_straight_on_the_bus_without_the_check_is_refused(w: World) -> None:
    """A taken-over gateway holding a physician's fresh signature of an unchecked
    prescription sends it straight to records: records runs the check itself."""
    doctor = await w.doctor()
    patient_id, encounter_id = await patient(w, "Bus", PENICILLIN)
    request = signed_request(doctor, patient_id, encounter_id, **await catalog(w, "Amoxicillin"))
    proof, body = doctor.signed(rec.PRESCRIBE, request)
    with pytest.raises(Conflict):
        await w.clinic.client.rpc.call(
            rec.PRESCRIBE,
            request,
            principal=doctor.principal,
            proof=proof,
            signed_body=body,
            idempotency_key="bus-unchecked-1",
        )


async def test_concurrent_prescriptions_are_checked_one_after_the_other(w: World) -> None:
    """Two NSAIDs signed at once, each checked alone: only one may pass unacknowledged."""
    doctor = await w.doctor()
    patient_id, encounter_id = await patient(w, "Race")
    requests = [
        signed_request(doctor, patient_id, encounter_id, **await catalog(w, name))
        for name in ("Ibuprofen", "Naproxen")
    ]
    results = await asyncio.gather(
        *(w.call(rec.PRESCRIBE, r, doctor) for r in requests), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "PrescriptionWritten"]


async def test_a_tampered_prescription_row_leaves_the_check_incomplete(w: World) -> None:
    patient_id, encounter_id = await patient(w, "Tampered Rx")
    warfarin = await prescribed(w, patient_id, encounter_id, "Warfarin")
    assert w.service.db is not None
    # The database hides the active warfarin from the check by "cancelling" it.
    await w.service.db.execute(
        "UPDATE prescriptions SET status = 'cancelled' WHERE prescription_id = %s", (warfarin,)
    )
    check = await w.check(patient_id, **await catalog(w, "Ibuprofen"))
    assert [a.code for a in check.alerts] == ["unchecked:integrity"]
    assert check.alerts[0].severity is rec.AlertSeverity.high


async def test_the_check_is_an_audited_read_for_physicians_in_care_only(w: World) -> None:
    patient_id, _ = await patient(w, "Audited Check")
    await w.check(patient_id, **await catalog(w, "Paracetamol"))
    assert await w.audited(event("prescription.check", patient_id))
    stranger: StaffMember = await w.doctor("dr-stranger")
    w.appointments.clear()
    try:
        with pytest.raises(RpcError, match="care relationship"):
            await w.check(patient_id, stranger, **await catalog(w, "Paracetamol"))
    finally:
        w.appointments.add(("*", "*"))


async def test_a_tampered_allergy_list_fails_closed(w: World) -> None:
    """An allergy list edited in the database is never read as 'no allergies'."""
    patient_id, _ = await patient(w, "Tampered List", PENICILLIN)
    assert w.service.db is not None
    await w.service.db.execute(
        "UPDATE allergy_lists SET version = version + 1 WHERE patient_id = %s", (patient_id,)
    )
    with pytest.raises(IntegrityError, match="allergy list"):
        await w.check(patient_id, **await catalog(w, "Amoxicillin"))
    with pytest.raises(IntegrityError, match="allergy list"):
        await w.call(
            rec.PATIENT_SUMMARY,
            rec.PatientSummaryRequest(patient_id=patient_id),
            await w.doctor(),
        )
