"""Clinical history: encounters are append-only; an amendment is a new version that keeps
the old one byte for byte, with who amended it and why."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from contracts import records as rec
from mesh.errors import Conflict, IntegrityError, NotFound
from services.records import store
from tests.records.support import World, content, world


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("recclin") as w:
        yield w


async def stored_versions(w: World, encounter_id: str) -> list[tuple[object, ...]]:
    assert w.service.db is not None
    return await w.service.db.fetchall(
        "SELECT * FROM encounter_versions WHERE encounter_id = %s ORDER BY version",
        (encounter_id,),
    )


async def test_an_encounter_reads_back_as_recorded(w: World) -> None:
    doctor = await w.doctor()
    patient = await w.register(given_name="Clinical")
    recorded = content(
        diagnoses=[rec.Diagnosis(code="e119"), rec.Diagnosis(code="I10", description="HTN")],
        vital_signs=rec.VitalSigns(
            temperature=rec.Temperature(value=99.5, unit="[degF]"),
            weight=rec.Weight(value=180, unit="[lb_av]"),
        ),
    )
    written = await w.call(
        rec.ADD_ENCOUNTER,
        rec.AddEncounterRequest(patient_id=patient.patient_id, content=recorded),
        doctor,
    )
    assert set(written.model_dump()) == {"encounter_id", "patient_id", "version"}
    got = await w.call(
        rec.GET_ENCOUNTER, rec.GetEncounterRequest(encounter_id=written.encounter_id), doctor
    )
    assert got.current.content == recorded
    assert [d.code for d in got.current.content.diagnoses] == ["E11.9", "I10"]
    assert got.current.physician_id == got.current.recorded_by == doctor.account_id
    assert got.current.version == 1 and got.current.supersedes is None and got.versions == []


async def test_an_amendment_keeps_the_old_version(w: World) -> None:
    doctor, colleague = await w.doctor(), await w.doctor("dr-cuddy")
    patient = await w.register(given_name="Amended")
    first = content(assessment="Viral bronchitis", diagnoses=[rec.Diagnosis(code="J20.9")])
    written = await w.call(
        rec.ADD_ENCOUNTER,
        rec.AddEncounterRequest(patient_id=patient.patient_id, content=first),
        doctor,
    )
    before = await stored_versions(w, written.encounter_id)
    corrected = first.model_copy(
        update={
            "assessment": "Community-acquired pneumonia",
            "diagnoses": [rec.Diagnosis(code="J18.9")],
        }
    )
    amended = await w.call(
        rec.AMEND_ENCOUNTER,
        rec.AmendEncounterRequest(
            encounter_id=written.encounter_id,
            expected_version=1,
            reason="Chest X-ray shows consolidation",
            content=corrected,
        ),
        colleague,
    )
    assert amended.version == 2
    after = await stored_versions(w, written.encounter_id)
    assert after[0] == before[0]  # version 1 untouched, byte for byte
    history = await w.call(
        rec.GET_ENCOUNTER,
        rec.GetEncounterRequest(encounter_id=written.encounter_id, include_versions=True),
        doctor,
    )
    old, new = history.versions
    assert history.current == new
    assert old.content == first and old.version == 1 and old.amendment_reason is None
    assert new.content == corrected and new.supersedes == 1
    assert new.recorded_by == colleague.account_id and new.physician_id == doctor.account_id
    assert new.amendment_reason == "Chest X-ray shows consolidation"
    # Reads show the latest version.
    listed = await w.call(
        rec.LIST_ENCOUNTERS, rec.ListEncountersRequest(patient_id=patient.patient_id), doctor
    )
    assert [e.version for e in listed.encounters] == [2]
    # Only the latest version can be amended.
    with pytest.raises(Conflict) as stale:
        await w.call(
            rec.AMEND_ENCOUNTER,
            rec.AmendEncounterRequest(
                encounter_id=written.encounter_id, expected_version=1, reason="again", content=first
            ),
            doctor,
        )
    assert stale.value.details == {"current_version": 2, "expected_version": 1}
    assert await w.audited(
        lambda a: (
            a.type == "encounter.amend"
            and a.entity_id == written.encounter_id
            and a.patient_id == patient.patient_id
        )
    )


async def test_a_version_cannot_pass_for_another(w: World) -> None:
    """Ciphertexts are bound to `<encounter>.v<n>`: copying v1's note over v2's fails."""
    doctor = await w.doctor()
    patient = await w.register(given_name="Rollback")
    written = await w.encounter(patient.patient_id, assessment="first")
    await w.call(
        rec.AMEND_ENCOUNTER,
        rec.AmendEncounterRequest(
            encounter_id=written.encounter_id,
            expected_version=1,
            reason="typo",
            content=content(assessment="second"),
        ),
        doctor,
    )
    assert w.service.db is not None
    await w.service.db.execute(
        "UPDATE encounter_versions v2 JOIN encounter_versions v1 "
        "ON v1.encounter_id = v2.encounter_id AND v1.version = 1 "
        "SET v2.note_enc = v1.note_enc WHERE v2.encounter_id = %s AND v2.version = 2",
        (written.encounter_id,),
    )

    with pytest.raises(IntegrityError):
        await w.call(
            rec.GET_ENCOUNTER, rec.GetEncounterRequest(encounter_id=written.encounter_id), doctor
        )


async def test_encounters_list_newest_first_and_page(w: World) -> None:
    doctor = await w.doctor()
    patient = await w.register(given_name="Paged")
    now = datetime.now(UTC)
    made = [
        await w.encounter(patient.patient_id, occurred_at=now - timedelta(days=d))
        for d in (3, 1, 2)
    ]
    listed = await w.call(
        rec.LIST_ENCOUNTERS, rec.ListEncountersRequest(patient_id=patient.patient_id), doctor
    )
    ids = [e.encounter_id for e in listed.encounters]
    assert ids == [made[1].encounter_id, made[2].encounter_id, made[0].encounter_id]
    page = await w.call(
        rec.LIST_ENCOUNTERS,
        rec.ListEncountersRequest(
            patient_id=patient.patient_id,
            limit=1,
            before=listed.encounters[0].content.occurred_at,
        ),
        doctor,
    )
    assert [e.encounter_id for e in page.encounters] == [made[2].encounter_id]
    with pytest.raises(NotFound):
        await w.call(
            rec.LIST_ENCOUNTERS,
            rec.ListEncountersRequest(patient_id="00000000-0000-4000-8000-000000000001"),
            doctor,
        )


async def test_recent_encounters_are_read_without_sorting_the_history(w: World) -> None:
    """The summary's and the list's read of the recent encounters stops after the page:
    MariaDB walks the patient's index backwards, never a filesort of every encounter on
    file (which made the summary's cost grow with the history)."""
    patient = await w.register(given_name="Longhistory")
    now = datetime.now(UTC)
    for d in range(12):
        await w.encounter(patient.patient_id, occurred_at=now - timedelta(days=d))
    assert w.service.db is not None
    for before in (None, now):
        sql, args = store.current_encounters_query(patient.patient_id, 10, before)
        plan = await w.service.db.fetchall("EXPLAIN " + sql, args)
        extras = [str(row[-1]) for row in plan]
        assert not any("filesort" in extra for extra in extras), plan
        assert not any("temporary" in extra for extra in extras), plan


def contents(entries: list[rec.AllergyEntry]) -> list[rec.Allergy]:
    """What was recorded of each entry, without who and when."""
    return [rec.Allergy(**e.model_dump(include=set(rec.Allergy.model_fields))) for e in entries]


async def test_the_summary_shows_current_allergies_from_every_encounter(w: World) -> None:
    doctor = await w.doctor()
    patient = await w.register(given_name="Allergic")
    now = datetime.now(UTC)
    old = [
        rec.Allergy(substance="Penicillin", reaction="rash", severity="mild"),
        rec.Allergy(substance="Latex", severity="moderate"),
    ]
    await w.encounter(patient.patient_id, occurred_at=now - timedelta(days=400), allergies=old)
    for d in range(12):  # more encounters than the summary shows
        await w.encounter(
            patient.patient_id, occurred_at=now - timedelta(days=300 - d), allergies=[]
        )
    newer = [
        rec.Allergy(substance="penicillin", reaction="anaphylaxis", severity="severe"),
        rec.Allergy(substance="Latex", status="refuted"),
        rec.Allergy(substance="Ibuprofen", status="resolved"),
    ]
    await w.encounter(patient.patient_id, occurred_at=now - timedelta(days=1), allergies=newer)
    summary = await w.call(
        rec.PATIENT_SUMMARY, rec.PatientSummaryRequest(patient_id=patient.patient_id), doctor
    )
    assert len(summary.encounters) == 10
    assert contents(summary.allergies) == [newer[0]]
    # The oldest allergy list alone still counts when nothing newer speaks of it.
    only_old = await w.register(given_name="OldAllergy")
    await w.encounter(only_old.patient_id, occurred_at=now - timedelta(days=30), allergies=old)
    for d in range(3):
        await w.encounter(only_old.patient_id, occurred_at=now - timedelta(days=d), allergies=[])
    brief = await w.call(
        rec.PATIENT_SUMMARY,
        rec.PatientSummaryRequest(patient_id=only_old.patient_id, encounters=1),
        doctor,
    )
    assert len(brief.encounters) == 1
    assert contents(brief.allergies) == sorted(old, key=lambda a: a.substance.casefold())
