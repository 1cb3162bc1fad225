"""E-prescriptions: the prescriber's signature verifies (here and by anyone with the
stored key), and a row edited in the database is caught by its MAC and by its signature;
even an edit re-MAC'd by a taken-over records service fails the signature."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts import keyvault as kv
from contracts import records as rec
from mesh.errors import Conflict, IntegrityError, InvalidRequest, NotFound
from services.keyvault.state import vault_of
from services.records import integrity, store
from tests.records.support import World, key, medication, sign, signed_request, world


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("recrx") as w:
        yield w


async def patient_with_encounter(w: World, name: str) -> tuple[str, str]:
    patient = await w.register(given_name=name)
    encounter = await w.encounter(patient.patient_id)
    return patient.patient_id, encounter.encounter_id


async def verify(w: World, prescription_id: str) -> rec.PrescriptionVerification:
    return await w.call(
        rec.VERIFY_PRESCRIPTION,
        rec.VerifyPrescriptionRequest(prescription_id=prescription_id),
        await w.doctor(),
    )


async def sql(w: World, statement: str, *args: object) -> None:
    assert w.service.db is not None
    await w.service.db.execute(statement, args)


async def test_a_signed_prescription_verifies_here_and_for_anyone(w: World) -> None:
    doctor = await w.doctor()
    patient_id, encounter_id = await patient_with_encounter(w, "Signed")
    request = signed_request(doctor, patient_id, encounter_id)
    written = await w.call(rec.PRESCRIBE, request, doctor)
    assert written == rec.PrescriptionWritten(
        prescription_id=request.prescription_id, patient_id=patient_id, status="active"
    )
    got = await w.call(
        rec.GET_PRESCRIPTION,
        rec.GetPrescriptionRequest(prescription_id=request.prescription_id),
        doctor,
    )
    assert got.medication == request.medication and got.signature == request.signature
    assert got.prescriber_id == doctor.account_id
    assert got.signer_public_key == doctor.account.public_key
    # Anyone holding the stored key re-verifies it offline, from what was returned.
    key_bytes = base64.b64decode(got.signer_public_key)
    Ed25519PublicKey.from_public_bytes(key_bytes).verify(
        base64.b64decode(got.signature), rec.canonical_prescription(got.core())
    )
    verdict = await verify(w, request.prescription_id)
    assert verdict.valid and verdict.mac_valid and verdict.signature_valid
    assert verdict.signer_key_current is True and verdict.problems == []
    assert verdict.prescription == got


def test_the_canonical_form_is_fixed() -> None:
    """Other clients (a browser) must produce the same bytes: pin the format."""
    core = rec.PrescriptionCore(
        prescription_id="6f1c2d8e-0b7a-4c3e-9f51-2a7d4e8b9c10",
        patient_id="1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9",
        prescriber_id="acc-1",
        encounter_id="0a1b2c3d-4e5f-4607-8819-2a3b4c5d6e7f",
        created_at=datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=UTC),
        medication=medication(instructions="Täglich\nmit Wasser"),
    )
    assert (
        rec.canonical_prescription(core)
        == (
            '{"context":"medihaven.prescription.v1","created_at":"2026-01-02T03:04:05.000600Z",'
            '"dosage_form":"inhaler","dose":"2 puffs","drug_name":"Budesonide/Formoterol",'
            '"duration_days":28,"encounter_id":"0a1b2c3d-4e5f-4607-8819-2a3b4c5d6e7f",'
            '"free_text":true,"frequency":"twice daily","instructions":"Täglich\\nmit Wasser",'
            '"medicine_id":"","patient_id":"1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9","prescriber_id":"acc-1",'
            '"prescription_id":"6f1c2d8e-0b7a-4c3e-9f51-2a7d4e8b9c10","quantity":1,"refills":2,'
            '"route":"inhalation","strength":"200/6 micrograms"}'
        ).encode()
    )


async def test_wrong_signatures_are_refused(w: World) -> None:
    doctor, other = await w.doctor(), await w.doctor("dr-wilson")
    patient_id, encounter_id = await patient_with_encounter(w, "Unsigned")
    other_patient, other_encounter = await patient_with_encounter(w, "Elsewhere")
    good = signed_request(doctor, patient_id, encounter_id)
    cases = {
        "signed by another physician": good.model_copy(
            update={"signature": sign(other, good.core(doctor.account_id))}
        ),
        "signed as another prescriber": good.model_copy(
            update={"signature": sign(doctor, good.core(other.account_id))}
        ),
        "drug changed after signing": good.model_copy(
            update={"medication": medication(drug_name="Oxycodone")}
        ),
        "moved to another patient": good.model_copy(update={"patient_id": other_patient}),
        "garbage": good.model_copy(update={"signature": "!" * 88}),
    }
    for name, request in cases.items():
        with pytest.raises(InvalidRequest) as refused:
            await w.call(rec.PRESCRIBE, request, doctor)
        assert refused.value.details[0]["loc"] == ["signature"], name  # type: ignore[index]
    stale = signed_request(
        doctor, patient_id, encounter_id, created_at=datetime.now(UTC) - timedelta(minutes=10)
    )
    with pytest.raises(InvalidRequest, match="too long ago"):
        await w.call(rec.PRESCRIBE, stale, doctor)
    foreign = signed_request(doctor, patient_id, other_encounter)
    with pytest.raises(InvalidRequest, match="no such encounter of this patient"):
        await w.call(rec.PRESCRIBE, foreign, doctor)
    nobody = signed_request(doctor, "00000000-0000-4000-8000-00000000000a", encounter_id)
    with pytest.raises(NotFound):
        await w.call(rec.PRESCRIBE, nobody, doctor)
    listed = await w.call(
        rec.LIST_PRESCRIPTIONS, rec.ListPrescriptionsRequest(patient_id=patient_id), doctor
    )
    assert listed.prescriptions == []
    # The same prescription id twice (with another idempotency key) is a conflict.
    await w.call(rec.PRESCRIBE, good, doctor)
    with pytest.raises(Conflict):
        await w.call(rec.PRESCRIBE, good, doctor, idempotency_key=key())


async def test_an_edited_row_is_caught_by_its_mac_and_its_signature(w: World) -> None:
    doctor = await w.doctor()
    patient_id, encounter_id = await patient_with_encounter(w, "Tampered")
    victim, _ = await patient_with_encounter(w, "Victim")
    written = await w.prescribe(patient_id, encounter_id)
    rx_id = written.prescription_id
    # The attacker moves the prescription to another patient in the database.
    await sql(
        w, "UPDATE prescriptions SET patient_id = %s WHERE prescription_id = %s", victim, rx_id
    )
    verdict = await verify(w, rx_id)
    assert not verdict.valid and not verdict.mac_valid and not verdict.signature_valid
    assert any("MAC" in p for p in verdict.problems)
    # The medication ciphertext is bound to the patient it was written for: under the
    # victim's name it does not decrypt at all.
    assert any("does not decrypt" in p for p in verdict.problems)
    assert verdict.prescription is None
    with pytest.raises(IntegrityError, match="integrity check"):
        await w.call(
            rec.GET_PRESCRIPTION, rec.GetPrescriptionRequest(prescription_id=rx_id), doctor
        )
    summary = await w.call(
        rec.PATIENT_SUMMARY, rec.PatientSummaryRequest(patient_id=victim), doctor
    )
    assert summary.active_prescriptions == [] and summary.integrity_failures == [rx_id]
    assert await w.audited(lambda a: a.type == "integrity.row_rejected" and a.entity_id == rx_id)
    # Moved with its medication encrypted again for the victim (as whoever can write the
    # database and ask the keyvault to encrypt could): it decrypts, but the prescriber's
    # signature covers the patient, and the MAC the row.
    row = await store.get_prescription(w.service.db, rx_id)
    assert row is not None and row.patient_id == victim
    plain = await vault_of(w.clinic.keyvault).decrypt(
        [
            kv.FieldRow(
                table="prescriptions",
                row_id=rx_id,
                fields={"medication": row.medication_enc},
                binding={"patient": patient_id},
            )
        ]
    )
    (cipher,) = await w.clinic.encrypt(
        [
            kv.FieldRow(
                table="prescriptions",
                row_id=rx_id,
                fields={"medication": plain[0][0]["medication"]},
                binding={"patient": victim},
            )
        ]
    )
    await sql(
        w,
        "UPDATE prescriptions SET medication_enc = %s WHERE prescription_id = %s",
        cipher["medication"],
        rx_id,
    )
    verdict = await verify(w, rx_id)
    assert not verdict.valid and not verdict.mac_valid and not verdict.signature_valid
    assert verdict.prescription is not None and verdict.prescription.patient_id == victim
    assert any("MAC" in p for p in verdict.problems)
    assert any("signature" in p for p in verdict.problems)
    listed = await w.call(
        rec.LIST_PRESCRIPTIONS, rec.ListPrescriptionsRequest(patient_id=victim), doctor
    )
    assert listed.prescriptions == [] and listed.integrity_failures == [rx_id]


async def test_a_flipped_status_cannot_revive_or_hide_a_prescription(w: World) -> None:
    doctor = await w.doctor()
    patient_id, encounter_id = await patient_with_encounter(w, "Revived")
    cancelled = await w.prescribe(patient_id, encounter_id, drug_name="Warfarin")
    kept = await w.prescribe(patient_id, encounter_id, drug_name="Metformin")
    hidden = await w.prescribe(patient_id, encounter_id, drug_name="Insulin glargine")
    await w.call(
        rec.CANCEL_PRESCRIPTION,
        rec.CancelPrescriptionRequest(prescription_id=cancelled.prescription_id, reason="bleed"),
        doctor,
    )
    await sql(
        w,
        "UPDATE prescriptions SET status = 'active' WHERE prescription_id = %s",
        cancelled.prescription_id,
    )
    await sql(
        w,
        "UPDATE prescriptions SET status = 'completed' WHERE prescription_id = %s",
        hidden.prescription_id,
    )
    summary = await w.call(
        rec.PATIENT_SUMMARY, rec.PatientSummaryRequest(patient_id=patient_id), doctor
    )
    assert [p.prescription_id for p in summary.active_prescriptions] == [kept.prescription_id]
    assert sorted(summary.integrity_failures) == sorted(
        [cancelled.prescription_id, hidden.prescription_id]
    )
    listed = await w.call(
        rec.LIST_PRESCRIPTIONS, rec.ListPrescriptionsRequest(patient_id=patient_id), doctor
    )
    assert [p.prescription_id for p in listed.prescriptions] == [kept.prescription_id]
    with pytest.raises(IntegrityError):
        await w.call(
            rec.COMPLETE_PRESCRIPTION,
            rec.CompletePrescriptionRequest(prescription_id=cancelled.prescription_id),
            doctor,
        )


async def test_an_edit_re_maced_by_a_taken_over_service_fails_the_signature(w: World) -> None:
    """Whoever controls the records service can ask the keyvault to encrypt and MAC, but
    cannot sign as the physician: the signature still tells."""
    patient_id, encounter_id = await patient_with_encounter(w, "Insider")
    written = await w.prescribe(patient_id, encounter_id, quantity=10)
    rx_id = written.prescription_id
    row = await store.get_prescription(w.service.db, rx_id)
    assert row is not None
    forged = medication(quantity=100)
    rpc = w.service.rpc
    cipher = await rpc.call(
        kv.ENCRYPT,
        kv.EncryptRequest(
            rows=[
                kv.FieldRow(
                    table="prescriptions",
                    row_id=rx_id,
                    fields={"medication": forged.model_dump_json()},
                    binding={"patient": patient_id},
                )
            ]
        ),
    )
    edited = replace(row, medication_enc=cipher.rows[0]["medication"])
    tag = await rpc.call(kv.MAC, kv.MacRequest(rows=[integrity.prescription_mac_row(edited)]))
    await sql(
        w,
        "UPDATE prescriptions SET medication_enc = %s, mac = %s WHERE prescription_id = %s",
        edited.medication_enc,
        tag.tags[0],
        rx_id,
    )
    verdict = await verify(w, rx_id)
    assert verdict.mac_valid and not verdict.signature_valid and not verdict.valid
    assert verdict.prescription is not None and verdict.prescription.medication.quantity == 100
    assert verdict.problems == [
        "the prescriber's signature does not verify over the prescription as stored"
    ]
    # Reads check the signature too: the re-MAC'd edit is never shown as a prescription.
    doctor = await w.doctor()
    with pytest.raises(IntegrityError, match="integrity check"):
        await w.call(
            rec.GET_PRESCRIPTION, rec.GetPrescriptionRequest(prescription_id=rx_id), doctor
        )
    listed = await w.call(
        rec.LIST_PRESCRIPTIONS, rec.ListPrescriptionsRequest(patient_id=patient_id), doctor
    )
    assert listed.prescriptions == [] and listed.integrity_failures == [rx_id]


async def test_an_edited_ciphertext_fails_to_decrypt_and_is_left_out(w: World) -> None:
    doctor = await w.doctor()
    patient_id, encounter_id = await patient_with_encounter(w, "Flipped")
    broken = await w.prescribe(patient_id, encounter_id)
    sound = await w.prescribe(patient_id, encounter_id)
    row = await store.get_prescription(w.service.db, broken.prescription_id)
    assert row is not None
    blob = bytearray(base64.b64decode(row.medication_enc))
    blob[-1] ^= 1
    await sql(
        w,
        "UPDATE prescriptions SET medication_enc = %s WHERE prescription_id = %s",
        base64.b64encode(bytes(blob)).decode(),
        broken.prescription_id,
    )
    verdict = await verify(w, broken.prescription_id)
    assert not verdict.mac_valid and not verdict.signature_valid and verdict.prescription is None
    assert any("does not decrypt" in p for p in verdict.problems)
    summary = await w.call(
        rec.PATIENT_SUMMARY, rec.PatientSummaryRequest(patient_id=patient_id), doctor
    )
    assert [p.prescription_id for p in summary.active_prescriptions] == [sound.prescription_id]
    assert summary.integrity_failures == [broken.prescription_id]


async def test_cancel_and_complete(w: World) -> None:
    doctor, colleague = await w.doctor(), await w.doctor("dr-chase")
    patient_id, encounter_id = await patient_with_encounter(w, "Lifecycle")
    first = await w.prescribe(patient_id, encounter_id)
    second = await w.prescribe(patient_id, encounter_id)
    cancelled = await w.call(
        rec.CANCEL_PRESCRIPTION,
        rec.CancelPrescriptionRequest(
            prescription_id=first.prescription_id, reason="Interaction with warfarin"
        ),
        colleague,
    )
    assert cancelled.status is rec.PrescriptionStatus.cancelled
    got = await w.call(
        rec.GET_PRESCRIPTION,
        rec.GetPrescriptionRequest(prescription_id=first.prescription_id),
        doctor,
    )
    assert got.status is rec.PrescriptionStatus.cancelled
    assert got.cancellation_reason == "Interaction with warfarin"
    assert got.status_changed_by == colleague.account_id
    assert (await verify(w, first.prescription_id)).valid  # re-MAC'd; signature untouched
    await w.call(
        rec.COMPLETE_PRESCRIPTION,
        rec.CompletePrescriptionRequest(prescription_id=second.prescription_id),
        doctor,
    )
    for rx_id in (first.prescription_id, second.prescription_id):
        with pytest.raises(Conflict, match="only an active one"):
            await w.call(
                rec.CANCEL_PRESCRIPTION,
                rec.CancelPrescriptionRequest(prescription_id=rx_id, reason="again"),
                doctor,
            )
    active = await w.call(
        rec.LIST_PRESCRIPTIONS,
        rec.ListPrescriptionsRequest(patient_id=patient_id, status="active"),
        doctor,
    )
    assert active.prescriptions == []
    every = await w.call(
        rec.LIST_PRESCRIPTIONS, rec.ListPrescriptionsRequest(patient_id=patient_id), doctor
    )
    assert {p.status for p in every.prescriptions} == {"cancelled", "completed"}


async def test_the_summary_is_one_call_with_one_decrypt_batch(w: World) -> None:
    doctor = await w.doctor()
    patient_id, encounter_id = await patient_with_encounter(w, "Summarised")
    for _ in range(10):
        await w.encounter(patient_id)
    made = [await w.prescribe(patient_id, encounter_id) for _ in range(6)]
    await w.call(
        rec.CANCEL_PRESCRIPTION,
        rec.CancelPrescriptionRequest(prescription_id=made[0].prescription_id, reason="stopped"),
        doctor,
    )
    w.keyvault.reset()
    summary = await w.call(
        rec.PATIENT_SUMMARY, rec.PatientSummaryRequest(patient_id=patient_id), doctor
    )
    assert w.keyvault.decrypt_calls == 1
    assert w.keyvault.requests == [kv.DECRYPT.name]  # the MACs are checked in the same call
    # patient + 10 shown encounters + 1 older encounter's allergies + 5 active prescriptions
    assert w.keyvault.decrypted_rows == 1 + 10 + 1 + 5
    assert summary.patient.demographics.given_name == "Summarised"
    assert summary.patient.clinical_flags == []
    assert len(summary.encounters) == 10
    assert {p.prescription_id for p in summary.active_prescriptions} == {
        m.prescription_id for m in made[1:]
    }
    assert [a.substance for a in summary.allergies] == ["Penicillin"]
    assert await w.audited(lambda a: a.type == "patient.summary" and a.patient_id == patient_id)
