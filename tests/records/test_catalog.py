"""The medicine catalog: search for typing ahead, retirement, and prescriptions that copy
an entry at signing time (so a later catalog edit never changes a signed prescription)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from contracts import records as rec
from mesh.errors import Conflict, Forbidden, InvalidRequest
from tests.records.support import World, world

SEED = Path(__file__).resolve().parents[2] / "services" / "records" / "catalog_seed.json"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("reccatalog") as w:
        admin = await w.admin()
        for details in json.loads(SEED.read_text())["medicines"]:
            await w.call(
                rec.ADD_MEDICINE,
                rec.AddMedicineRequest(details=rec.MedicineDetails(**details)),
                admin,
            )
        yield w


async def search(w: World, **query: object) -> list[rec.Medicine]:
    reply = await w.call(
        rec.SEARCH_MEDICINES, rec.SearchMedicinesRequest(**query), await w.doctor()
    )
    return reply.medicines


async def entry(w: World, name: str) -> rec.Medicine:
    (found,) = [m for m in await search(w, prefix=name, limit=100) if m.details.name == name]
    return found


async def test_search_by_prefix_ingredient_and_type(w: World) -> None:
    names = [m.details.name for m in await search(w, prefix="AMO")]
    assert names == ["Amoxicillin", "Amoxicillin/Clavulanic acid"]
    assert [m.details.name for m in await search(w, prefix="  ator")] == ["Atorvastatin"]
    by_ingredient = await search(w, prefix="budesonide")
    assert [m.details.name for m in by_ingredient] == ["Budesonide/Formoterol"]
    antibiotics = await search(w, type=rec.MedicineType.antibiotic, limit=100)
    assert len(antibiotics) == 9
    assert all(m.details.type is rec.MedicineType.antibiotic for m in antibiotics)
    both = await search(w, prefix="c", type=rec.MedicineType.antibiotic)
    assert [m.details.name for m in both] == ["Cefalexin", "Ciprofloxacin", "Clarithromycin"]
    assert await search(w, prefix="amoxicillinx") == []  # a near miss finds nothing
    assert await search(w, prefix="%") == []  # LIKE wildcards are plain text
    with pytest.raises(InvalidRequest):
        await search(w)


async def test_roles(w: World) -> None:
    details = rec.MedicineDetails(
        name="Test",
        active_ingredient="t",
        strength="1 mg",
        dosage_form="tablet",
        route="oral",
        type="other",
    )
    for member in (await w.doctor(), await w.desk()):
        with pytest.raises(Forbidden):
            await w.call(rec.ADD_MEDICINE, rec.AddMedicineRequest(details=details), member)
    with pytest.raises(Forbidden):
        await w.call(rec.SEARCH_MEDICINES, rec.SearchMedicinesRequest(prefix="a"), await w.desk())
    admin_view = await w.call(
        rec.SEARCH_MEDICINES, rec.SearchMedicinesRequest(prefix="para"), await w.admin()
    )
    assert admin_view.medicines
    paracetamol = await entry(w, "Paracetamol")
    with pytest.raises(Conflict):
        await w.call(
            rec.ADD_MEDICINE, rec.AddMedicineRequest(details=paracetamol.details), await w.admin()
        )


def copied(medicine: rec.Medicine, **overrides: Any) -> dict[str, Any]:
    d = medicine.details
    values: dict[str, Any] = {
        "drug_name": d.name,
        "strength": d.strength,
        "dosage_form": d.dosage_form,
        "route": d.route,
        "medicine_id": medicine.medicine_id,
        "free_text": False,
        "instructions": d.default_instructions,
    }
    values.update(overrides)
    return values


async def test_prescriptions_copy_the_entry_and_survive_catalog_edits(w: World) -> None:
    patient = await w.register(family_name="Catalogue")
    encounter = await w.encounter(patient.patient_id)
    amox = await entry(w, "Amoxicillin")
    written = await w.prescribe(patient.patient_id, encounter.encounter_id, **copied(amox))
    # the administrator edits the entry afterwards: the signed prescription is unchanged
    edited = amox.details.model_copy(update={"strength": "250 mg"})
    await w.call(
        rec.UPDATE_MEDICINE,
        rec.UpdateMedicineRequest(medicine_id=amox.medicine_id, details=edited),
        await w.admin(),
    )
    doctor = await w.doctor()
    stored = await w.call(
        rec.GET_PRESCRIPTION,
        rec.GetPrescriptionRequest(prescription_id=written.prescription_id),
        doctor,
    )
    assert (
        stored.medication.strength == "500 mg" and stored.medication.medicine_id == amox.medicine_id
    )
    check = await w.call(
        rec.VERIFY_PRESCRIPTION,
        rec.VerifyPrescriptionRequest(prescription_id=written.prescription_id),
        doctor,
    )
    assert check.valid
    # the old details no longer match the catalog: a new prescription must copy the new ones
    with pytest.raises(InvalidRequest, match="catalog"):
        await w.prescribe(patient.patient_id, encounter.encounter_id, **copied(amox))
    fresh = await entry(w, "Amoxicillin")
    await w.prescribe(patient.patient_id, encounter.encounter_id, **copied(fresh))


async def test_retired_medicines_cannot_be_newly_prescribed(w: World) -> None:
    patient = await w.register(family_name="Retiree")
    encounter = await w.encounter(patient.patient_id)
    codeine = await entry(w, "Codeine phosphate")
    await w.prescribe(patient.patient_id, encounter.encounter_id, **copied(codeine))
    await w.call(
        rec.RETIRE_MEDICINE,
        rec.RetireMedicineRequest(medicine_id=codeine.medicine_id),
        await w.admin(),
    )
    assert not [m for m in await search(w, prefix="codeine")]
    assert [m.active for m in await search(w, prefix="codeine", include_retired=True)] == [False]
    with pytest.raises(InvalidRequest, match="retired"):
        await w.prescribe(patient.patient_id, encounter.encounter_id, **copied(codeine))


async def test_free_text_needs_the_explicit_flag_and_is_marked(w: World) -> None:
    patient = await w.register(family_name="Freetext")
    encounter = await w.encounter(patient.patient_id)
    with pytest.raises(InvalidRequest, match="free_text"):
        await w.prescribe(patient.patient_id, encounter.encounter_id, free_text=False)
    amox = await entry(w, "Amoxicillin/Clavulanic acid")
    with pytest.raises(InvalidRequest):
        await w.prescribe(
            patient.patient_id, encounter.encounter_id, **copied(amox, free_text=True)
        )
    written = await w.prescribe(
        patient.patient_id, encounter.encounter_id, drug_name="Magistral cream"
    )
    stored = await w.call(
        rec.GET_PRESCRIPTION,
        rec.GetPrescriptionRequest(prescription_id=written.prescription_id),
        await w.doctor(),
    )
    assert stored.medication.free_text is True and stored.medication.medicine_id == ""


async def test_development_mode_loads_the_sample_catalog_on_first_run_only() -> None:
    from services.records.catalog import load_sample_when_empty

    async with world("recseed") as fresh:
        runtime = fresh.service
        seeded = len(json.loads(SEED.read_text())["medicines"])
        production = runtime.settings
        assert await load_sample_when_empty(runtime) == 0  # not development mode: nothing
        runtime.settings = production.model_copy(update={"dev_mode": True})
        try:
            assert await load_sample_when_empty(runtime) == seeded
            assert await load_sample_when_empty(runtime) == 0  # once
        finally:
            runtime.settings = production
        found = await fresh.call(
            rec.SEARCH_MEDICINES,
            rec.SearchMedicinesRequest(prefix="amox", limit=10),
            await fresh.doctor(),
        )
        assert [m.details.name for m in found.medicines] == [
            "Amoxicillin",
            "Amoxicillin/Clavulanic acid",
        ]
        assert found.medicines[0].classes == ["beta-lactams", "penicillins"]
        assert await fresh.audited(lambda a: a.type == "catalog.sample_loaded")
