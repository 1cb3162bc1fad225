"""The patient's own allergy list: kept (recorded, changed, marked inactive, with who and
when), merged from encounters, built once for patients recorded before lists existed
(every encounter counts, however old), and checked against the vocabularies."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from contracts import keyvault as kv
from contracts import records as rec
from mesh.errors import Conflict, InvalidRequest, NotFound
from services.records import store
from tests.records.support import World, content, world

LATEX = rec.Allergy(
    substance="Latex", code="class:latex", reaction="anaphylaxis", severity="severe"
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("recallergy") as w:
        yield w


async def allergy_list(w: World, patient_id: str, everything: bool = False) -> rec.AllergyList:
    request = rec.ListAllergiesRequest(patient_id=patient_id, include_inactive=everything)
    return await w.call(rec.LIST_ALLERGIES, request, await w.doctor())


def recorded(entry: rec.AllergyEntry) -> rec.Allergy:
    return rec.Allergy(**entry.model_dump(include=set(rec.Allergy.model_fields)))


async def test_record_change_and_mark_inactive_with_who_and_when(w: World) -> None:
    house, wilson = await w.doctor(), await w.doctor("dr-wilson")
    patient = await w.register(given_name="Listed")
    empty = await allergy_list(w, patient.patient_id)
    assert empty.allergies == []
    written = await w.call(
        rec.RECORD_ALLERGY,
        rec.RecordAllergyRequest(patient_id=patient.patient_id, allergy=LATEX),
        house,
    )
    again = rec.RecordAllergyRequest(
        patient_id=patient.patient_id,
        allergy=LATEX.model_copy(update={"severity": rec.AllergySeverity.mild}),
    )
    with pytest.raises(Conflict, match="already on the allergy list") as clash:
        await w.call(rec.RECORD_ALLERGY, again, house)
    assert clash.value.details == {"allergy_id": written.allergy_id}
    (entry,) = (await allergy_list(w, patient.patient_id)).allergies
    assert recorded(entry) == LATEX and entry.recorded_by == house.account_id
    change = rec.ChangeAllergyRequest(
        patient_id=patient.patient_id,
        allergy_id=written.allergy_id,
        expected_version=written.version,
        allergy=LATEX.model_copy(update={"status": rec.AllergyStatus.resolved}),
    )
    changed = await w.call(rec.CHANGE_ALLERGY, change, wilson)
    assert changed.version == written.version + 1
    with pytest.raises(Conflict, match="changed since you read it"):
        await w.call(rec.CHANGE_ALLERGY, change, wilson)  # the old version
    assert (await allergy_list(w, patient.patient_id)).allergies == []  # inactive: not shown
    (kept,) = (await allergy_list(w, patient.patient_id, everything=True)).allergies
    assert kept.status is rec.AllergyStatus.resolved
    assert kept.recorded_by == house.account_id and kept.updated_by == wilson.account_id
    assert kept.updated_at > kept.recorded_at
    unknown = change.model_copy(
        update={"allergy_id": str(uuid.uuid4()), "expected_version": changed.version}
    )
    with pytest.raises(NotFound):
        await w.call(rec.CHANGE_ALLERGY, unknown, wilson)
    assert await w.audited(lambda a: a.type == "allergy.change" and a.entity_id == kept.allergy_id)


async def test_codes_must_be_in_the_vocabulary(w: World) -> None:
    patient = await w.register(given_name="Coded")
    bad = rec.Allergy(substance="Unobtainium", code="class:unobtainium")
    with pytest.raises(InvalidRequest) as refused:
        await w.call(
            rec.RECORD_ALLERGY,
            rec.RecordAllergyRequest(patient_id=patient.patient_id, allergy=bad),
            await w.doctor(),
        )
    assert refused.value.details[0]["loc"] == ["allergy", "code"]  # type: ignore[index]
    with pytest.raises(InvalidRequest) as on_encounter:
        await w.encounter(patient.patient_id, allergies=[LATEX, bad])
    assert on_encounter.value.details[0]["loc"] == [  # type: ignore[index]
        "content",
        "allergies",
        1,
        "code",
    ]


async def test_encounters_merge_into_the_list_latest_news_winning(w: World) -> None:
    patient = await w.register(given_name="Merged")
    now = datetime.now(UTC)
    mild = rec.Allergy(substance="Penicillin", reaction="rash", severity="mild")
    severe = mild.model_copy(
        update={"reaction": "anaphylaxis", "severity": rec.AllergySeverity.severe}
    )
    first = await w.encounter(
        patient.patient_id, occurred_at=now - timedelta(days=2), allergies=[mild]
    )
    (entry,) = (await allergy_list(w, patient.patient_id)).allergies
    assert recorded(entry) == mild and entry.source_encounter_id == first.encounter_id
    newer = await w.encounter(
        patient.patient_id, occurred_at=now - timedelta(hours=1), allergies=[severe]
    )
    (entry,) = (await allergy_list(w, patient.patient_id)).allergies
    assert entry.severity is rec.AllergySeverity.severe
    assert entry.source_encounter_id == newer.encounter_id
    # A visit from last year entered today does not undo the newer news.
    await w.encounter(patient.patient_id, occurred_at=now - timedelta(days=365), allergies=[mild])
    (entry,) = (await allergy_list(w, patient.patient_id)).allergies
    assert entry.severity is rec.AllergySeverity.severe
    # An amendment that adds an allergy adds it to the list.
    await w.call(
        rec.AMEND_ENCOUNTER,
        rec.AmendEncounterRequest(
            encounter_id=newer.encounter_id,
            expected_version=1,
            reason="latex allergy mentioned on the way out",
            content=content(occurred_at=now - timedelta(hours=1), allergies=[severe, LATEX]),
        ),
        await w.doctor(),
    )
    names = [e.substance for e in (await allergy_list(w, patient.patient_id)).allergies]
    assert names == ["Latex", "Penicillin"]


async def legacy_patient(w: World, encounters: int, oldest: list[rec.Allergy]) -> str:
    """A patient recorded before allergy lists: `encounters` encounters written straight
    into the database (ciphertexts made by the clinic's keyvault), allergies only on the
    oldest, and no list row."""
    patient = await w.register(given_name=f"Legacy{encounters}")
    doctor = await w.doctor()
    now = datetime.now(UTC)
    ids = [str(uuid.uuid4()) for _ in range(encounters)]
    rows = [
        kv.FieldRow(
            table="encounter_versions",
            row_id=f"{eid}.v1",
            fields={
                "note": json.dumps({"chief_complaint": f"visit {i}"}),
                "allergies": json.dumps(
                    [a.model_dump(mode="json") for a in oldest] if i == 0 else []
                ),
            },
            binding={"patient": patient.patient_id},
        )
        for i, eid in enumerate(ids)
    ]
    cipher = await w.clinic.encrypt(rows)
    heads, versions = [], []
    for i, (eid, c) in enumerate(zip(ids, cipher, strict=True)):
        at = store.naive(now - timedelta(days=encounters - i))  # the first is the oldest
        heads.append((eid, patient.patient_id, doctor.account_id, 1, at, at, at))
        versions.append(
            (eid, 1, patient.patient_id, at, doctor.account_id, at, c["note"], c["allergies"])
        )
    assert w.service.db is not None
    async with w.service.db.transaction() as conn, conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO encounters (encounter_id, patient_id, physician_id, current_version, "
            "occurred_at, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            heads,
        )
        await cur.executemany(
            "INSERT INTO encounter_versions (encounter_id, version, patient_id, occurred_at, "
            "recorded_by, recorded_at, note_enc, allergies_enc) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            versions,
        )
    assert await store.get_allergy_list(w.service.db, patient.patient_id) is None
    return patient.patient_id


async def test_a_severe_latex_allergy_on_the_oldest_of_2001_encounters_is_shown(
    w: World,
) -> None:
    patient_id = await legacy_patient(w, 2001, [LATEX])
    summary = await w.call(
        rec.PATIENT_SUMMARY, rec.PatientSummaryRequest(patient_id=patient_id), await w.doctor()
    )
    assert [recorded(a) for a in summary.allergies] == [LATEX]
    # Built once and kept: the list is stored (audited), and read from now on.
    assert w.service.db is not None
    assert await store.get_allergy_list(w.service.db, patient_id) is not None
    assert await w.audited(lambda a: a.type == "allergy.list_built" and a.patient_id == patient_id)
    w.keyvault.reset()
    again = await w.call(
        rec.PATIENT_SUMMARY, rec.PatientSummaryRequest(patient_id=patient_id), await w.doctor()
    )
    assert again.allergies == summary.allergies  # same ids: the stored list
    assert w.keyvault.decrypted_rows < 20  # patient, 10 encounters, the list


async def test_the_check_and_the_prescription_agree_on_a_list_not_yet_stored(w: World) -> None:
    """A legacy patient's list is built by the check; the prescription right after it
    (before or after the list is stored) names the same allergy ids."""
    patient_id = await legacy_patient(w, 3, [LATEX, rec.Allergy(substance="Penicillin")])
    assert w.service.db is not None
    check = await w.check(patient_id, drug_name="Amoxicillin", strength="500 mg")
    await w.service.db.execute("DELETE FROM allergy_lists WHERE patient_id = %s", (patient_id,))
    again = await w.check(patient_id, drug_name="Amoxicillin", strength="500 mg")
    assert check.codes == again.codes and [a.kind.value for a in check.alerts] == ["allergy"]


async def test_diagnoses_are_codes_of_the_classification(w: World) -> None:
    patient = await w.register(given_name="Coded Dx")
    ok = [rec.Diagnosis(code="J45.9", description="Asthma, unspecified")]
    await w.encounter(patient.patient_id, diagnoses=ok)
    for bad in ("J45.909", "Z99.99", "U99"):
        with pytest.raises(InvalidRequest) as refused:
            await w.encounter(patient.patient_id, diagnoses=[*ok, rec.Diagnosis(code=bad)])
        assert refused.value.details[0]["loc"] == ["content", "diagnoses", 1, "code"]  # type: ignore[index]


async def test_icd10_search_by_code_and_by_words(w: World) -> None:
    doctor = await w.doctor()

    async def search(q: str) -> list[tuple[str, str]]:
        found = await w.call(rec.SEARCH_ICD10, rec.SearchIcd10Request(q=q), doctor)
        assert found.classification == "WHO ICD-10 2019"
        return [(e.code, e.title) for e in found.entries]

    assert ("J45.9", "Asthma, unspecified") in await search("asthma")
    assert [c for c, _ in await search("j45")] == ["J45", "J45.0", "J45.1", "J45.8", "J45.9"]
    assert (await search("E11.9"))[0] == ("E11.9", "Type 2 diabetes mellitus without complications")
    assert any(c.startswith("E11") for c, _ in await search("type 2 diab"))
    # Titles come whole, commas and all.
    assert ("I21.4", "Acute subendocardial myocardial infarction") in await search("subendo")
    assert await search("zzzzqq") == []


async def test_substance_search_names_ingredients_and_classes(w: World) -> None:
    found = await w.call(
        rec.SEARCH_SUBSTANCES, rec.SearchSubstancesRequest(prefix="penic"), await w.doctor()
    )
    codes = [s.code for s in found.substances]
    assert "class:penicillins" in codes and "ingredient:penicillin" in codes
    assert "not clinical advice" in found.notice.lower()
    nsaid = await w.call(
        rec.SEARCH_SUBSTANCES, rec.SearchSubstancesRequest(prefix="anti-infl"), await w.doctor()
    )
    assert [s.code for s in nsaid.substances] == ["class:nsaids"]


async def test_concurrent_changes_to_one_list_both_land(w: World) -> None:
    """Two physicians add an allergy each at the same moment: neither is lost."""
    import asyncio

    patient = await w.register(given_name="Busy List")
    await w.encounter(patient.patient_id, allergies=[])
    substances = ["Latex", "Iodine", "Peanut", "Sulfonamides"]
    doctors = [await w.doctor(f"dr-busy-{i}") for i in range(len(substances))]
    await asyncio.gather(
        *(
            w.call(
                rec.RECORD_ALLERGY,
                rec.RecordAllergyRequest(
                    patient_id=patient.patient_id, allergy=rec.Allergy(substance=name)
                ),
                doctor,
            )
            for name, doctor in zip(substances, doctors, strict=True)
        )
    )
    listed = await allergy_list(w, patient.patient_id)
    assert sorted(e.substance for e in listed.allergies) == sorted(substances)
    assert listed.version == 1 + len(substances)  # the list built from encounters is 1
