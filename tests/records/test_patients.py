"""Patients: registration, possible duplicates, updates, clinical flags, lists, audit.

Every read and write of patient data leaves an audit event (who, action, patient,
outcome), and a read whose event cannot be made durable returns nothing.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import date

import pytest
import pytest_asyncio

from contracts import records as rec
from contracts.audit import AuditAction, AuditOutcome
from mesh.errors import Conflict, Forbidden, NotFound, Unavailable
from services.records import patients
from tests.records.support import World, demographics, event, world


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("recpat") as w:
        yield w


async def test_registration_and_reading_back(w: World) -> None:
    desk, doctor = await w.desk(), await w.doctor()
    written = await w.call(
        rec.CREATE_PATIENT,
        rec.CreatePatientRequest(demographics=demographics(given_name="Rosalind")),
        desk,
    )
    # The write's reply (kept in clear for idempotent replay) holds no patient data.
    assert set(written.model_dump()) == {"patient_id", "version", "updated_at"}
    assert re.fullmatch(rec.UUID_PATTERN, written.patient_id)
    request = rec.GetPatientRequest(patient_id=written.patient_id)
    at_desk = await w.call(rec.GET_PATIENT, request, desk)
    assert re.fullmatch(rec.MRN_PATTERN, at_desk.mrn)
    assert at_desk.demographics == demographics(given_name="Rosalind")
    assert at_desk.clinical_flags is None  # receptionists never see clinical flags
    for_doctor = await w.call(rec.GET_PATIENT, request, doctor)
    assert for_doctor.clinical_flags == [] and for_doctor.mrn == at_desk.mrn
    optional = await w.call(
        rec.CREATE_PATIENT,
        rec.CreatePatientRequest(
            demographics=rec.Demographics(
                given_name="Kai", family_name="Brandt", date_of_birth=date(2019, 5, 1), sex="male"
            )
        ),
        desk,
    )
    bare = await w.call(
        rec.GET_PATIENT, rec.GetPatientRequest(patient_id=optional.patient_id), desk
    )
    assert bare.demographics.phone is None and bare.demographics.insurance is None


async def test_a_possible_duplicate_is_409_with_the_existing_number_unless_confirmed(
    w: World,
) -> None:
    desk = await w.desk()
    person = demographics(given_name="Ingrid", family_name="Sørensen", phone="+45 3312 0000")
    first = await w.call(rec.CREATE_PATIENT, rec.CreatePatientRequest(demographics=person), desk)
    existing = await w.call(
        rec.GET_PATIENT, rec.GetPatientRequest(patient_id=first.patient_id), desk
    )
    # Same person typed differently (case, accents, another phone): still a match.
    again = demographics(
        given_name="INGRID", family_name="Sorensen", phone=None, email=None, insurance=None
    )
    with pytest.raises(Conflict) as refused:
        await w.call(rec.CREATE_PATIENT, rec.CreatePatientRequest(demographics=again), desk)
    assert refused.value.details == {
        "reason": "possible_duplicate",
        "existing": [
            {
                "patient_id": first.patient_id,
                "mrn": existing.mrn,
                "given_name": "Ingrid",
                "family_name": "Sørensen",
                "date_of_birth": person.date_of_birth.isoformat(),
                "sex": person.sex.value,
            }
        ],
    }
    assert "Ingrid" not in refused.value.message and existing.mrn not in refused.value.message
    shown = await w.audited(
        lambda a: a.type == "patient.duplicate_shown" and a.patient_id == first.patient_id
    )
    assert shown and shown[0].agent.account_id == desk.account_id
    # A different person of the same name and birth date: the desk confirms.
    twin = await w.call(
        rec.CREATE_PATIENT,
        rec.CreatePatientRequest(demographics=again, confirm_duplicate=True),
        desk,
    )
    assert twin.patient_id != first.patient_id
    # Another birth date is another person.
    await w.call(
        rec.CREATE_PATIENT,
        rec.CreatePatientRequest(
            demographics=demographics(
                given_name="Ingrid", family_name="Sørensen", date_of_birth=date(1984, 3, 10)
            )
        ),
        desk,
    )


async def test_two_desks_registering_the_same_person_at_once_make_one_record(w: World) -> None:
    desks = [await w.desk("desk-a"), await w.desk("desk-b")]
    person = rec.CreatePatientRequest(
        demographics=demographics(given_name="Concurrent", family_name="Mbeki-Strand")
    )
    results = await asyncio.gather(
        *(w.call(rec.CREATE_PATIENT, person, d) for d in desks), return_exceptions=True
    )
    created = [r for r in results if isinstance(r, rec.PatientWritten)]
    refused = [r for r in results if isinstance(r, Conflict)]
    assert len(created) == 1 and len(refused) == 1, results
    found = await w.call(
        rec.SEARCH_PATIENTS,
        rec.SearchPatientsRequest(family_name="Mbeki-Strand", date_of_birth=date(1984, 3, 9)),
        desks[0],
    )
    assert [p.patient_id for p in found.patients] == [created[0].patient_id]


async def test_a_taken_record_number_is_drawn_again(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = await w.desk()
    taken = await w.register(given_name="First")
    taken_mrn = (
        await w.call(rec.GET_PATIENT, rec.GetPatientRequest(patient_id=taken.patient_id), desk)
    ).mrn
    # A registration draws its candidate numbers at once (one blind-index call: the
    # keyvault serves a signed request once); the first two are taken here.
    assert rec.MRN_CANDIDATES >= 3
    fresh = ["MH-ZZZZ2345", "MH-ZZZZ2346", "MH-ZZZZ2347", "MH-ZZZZ2356", "MH-ZZZZ2357"]
    draws = iter([taken_mrn, taken_mrn, *fresh][: rec.MRN_CANDIDATES])
    monkeypatch.setattr(patients, "new_mrn", lambda: next(draws))
    w.keyvault.reset()
    second = await w.register(given_name="Second")
    assert w.keyvault.blind_index_calls == 1
    got = await w.call(rec.GET_PATIENT, rec.GetPatientRequest(patient_id=second.patient_id), desk)
    assert got.mrn == "MH-ZZZZ2345"


async def test_updates_replace_the_demographics_at_the_version_read(w: World) -> None:
    desk = await w.desk()
    written = await w.register(given_name="Mutable", phone="+1 415 555 0100")
    changed = demographics(given_name="Mutable", family_name="Okafor", phone="+1 415 555 0199")
    updated = await w.call(
        rec.UPDATE_PATIENT,
        rec.UpdatePatientRequest(
            patient_id=written.patient_id, expected_version=1, demographics=changed
        ),
        desk,
    )
    assert updated.version == 2
    got = await w.call(rec.GET_PATIENT, rec.GetPatientRequest(patient_id=written.patient_id), desk)
    # Phone numbers are kept in international format (the clinic's region reads them).
    assert got.demographics == changed.model_copy(update={"phone": "+1 415-555-0199"})
    assert got.version == 2
    # The blind indexes moved with the values.
    by_old = rec.SearchPatientsRequest(phone="+1 415 555 0100")
    by_new = rec.SearchPatientsRequest(phone="+1 (415) 555-0199")
    assert (await w.call(rec.SEARCH_PATIENTS, by_old, desk)).patients == []
    assert [p.patient_id for p in (await w.call(rec.SEARCH_PATIENTS, by_new, desk)).patients] == [
        written.patient_id
    ]
    with pytest.raises(Conflict) as stale:
        await w.call(
            rec.UPDATE_PATIENT,
            rec.UpdatePatientRequest(
                patient_id=written.patient_id, expected_version=1, demographics=changed
            ),
            desk,
        )
    assert stale.value.details == {"current_version": 2, "expected_version": 1}
    refused = await w.audited(
        lambda a: (
            a.type == "patient.update"
            and a.patient_id == written.patient_id
            and a.outcome is AuditOutcome.refused
        )
    )
    assert refused and "conflict" in (refused[0].detail or "")
    with pytest.raises(NotFound):
        await w.call(
            rec.UPDATE_PATIENT,
            rec.UpdatePatientRequest(
                patient_id="00000000-0000-4000-8000-000000000000",
                expected_version=1,
                demographics=changed,
            ),
            desk,
        )


async def test_clinical_flags_are_set_and_seen_by_physicians_only(w: World) -> None:
    desk, doctor = await w.desk(), await w.doctor()
    written = await w.register(given_name="Flagged")
    flags = [rec.ClinicalFlag.anticoagulated, rec.ClinicalFlag.fall_risk]
    await w.call(
        rec.SET_CLINICAL_FLAGS,
        rec.SetClinicalFlagsRequest(patient_id=written.patient_id, flags=flags),
        doctor,
    )
    request = rec.GetPatientRequest(patient_id=written.patient_id)
    assert (await w.call(rec.GET_PATIENT, request, doctor)).clinical_flags == sorted(flags)
    assert (await w.call(rec.GET_PATIENT, request, desk)).clinical_flags is None
    # Flags do not move the demographics' version: the desk's edit still applies.
    assert (await w.call(rec.GET_PATIENT, request, desk)).version == 1


async def test_recent_patients_newest_first(w: World) -> None:
    desk = await w.desk()
    made = [await w.register(given_name=f"Recent{chr(65 + i)}") for i in range(3)]
    listed = await w.call(rec.LIST_RECENT_PATIENTS, rec.ListRecentPatientsRequest(limit=3), desk)
    assert [p.patient_id for p in listed.patients] == [m.patient_id for m in reversed(made)]
    assert [p.given_name for p in listed.patients] == ["RecentC", "RecentB", "RecentA"]
    for m in made:
        assert await w.audited(event("patient.list", m.patient_id))


async def test_patient_ref_needs_no_signature_and_decrypts_nothing(w: World) -> None:
    """Asked by the scheduling service (the only caller the contract names)."""
    written = await w.register(given_name="Referenced")
    assert w.scheduling is not None
    w.keyvault.reset()
    ref = await w.scheduling.rpc.call(
        rec.PATIENT_REF, rec.PatientRefRequest(patient_id=written.patient_id)
    )
    assert ref == rec.PatientRef(patient_id=written.patient_id, exists=True, mrn=None)
    missing = await w.scheduling.rpc.call(
        rec.PATIENT_REF, rec.PatientRefRequest(patient_id="pat-unknown")
    )
    assert missing.exists is False
    assert w.keyvault.decrypt_calls == 0 and w.keyvault.blind_index_calls == 0
    with pytest.raises(Forbidden, match="may not call"):  # anyone else: not even asked
        await w.clinic.client.rpc.call(
            rec.PATIENT_REF, rec.PatientRefRequest(patient_id=written.patient_id)
        )


async def test_every_read_and_write_is_audited_with_who_what_whom_and_outcome(w: World) -> None:
    desk = await w.desk()
    written = await w.register(given_name="Audited")
    await w.call(rec.GET_PATIENT, rec.GetPatientRequest(patient_id=written.patient_id), desk)
    expected = {
        ("patient.create", AuditAction.create),
        ("patient.read", AuditAction.read),
    }
    for type_, action in expected:
        events = await w.audited(event(type_, written.patient_id))
        assert events, type_
        first = events[0]
        assert first.action is action and first.outcome is AuditOutcome.success
        assert first.agent.account_id == desk.account_id and first.source == rec.SERVICE


async def test_reads_fail_closed_when_the_audit_trail_is_down(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = await w.desk()
    written = await w.register(given_name="Unaudited")

    async def broker_refuses(*args: object, **kwargs: object) -> None:
        raise ConnectionError("no confirm")

    monkeypatch.setattr(w.service.events, "publish_raw", broker_refuses)
    request = rec.GetPatientRequest(patient_id=written.patient_id)
    with pytest.raises(Unavailable, match="audit"):
        await w.call(rec.GET_PATIENT, request, desk)
    with pytest.raises(Unavailable, match="audit"):
        await w.call(
            rec.SEARCH_PATIENTS,
            rec.SearchPatientsRequest(
                family_name="Okonkwo-Lindqvist", date_of_birth=date(1984, 3, 9)
            ),
            desk,
        )
    monkeypatch.undo()
    assert (await w.call(rec.GET_PATIENT, request, desk)).demographics.given_name == "Unaudited"
