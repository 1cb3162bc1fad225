"""Writes at four times the database pool size all complete: no write handler takes a
second pool connection while it holds its transaction's (`mesh.db.PoolStarvation` makes
that an error instead of a hang), and the keyvault's access questions, asked while those
writes wait, are answered from a pool of their own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio

from contracts import records as rec
from tests.records.support import World, world


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("recpool") as w:
        yield w


async def test_clinical_writes_at_four_times_the_pool_size(w: World) -> None:
    many = 4 * w.service.settings.db_pool_size
    patients = [(await w.register(given_name=f"Pool{i}")).patient_id for i in range(many)]
    encounters = await asyncio.wait_for(
        asyncio.gather(*(w.encounter(p, allergies=[]) for p in patients)), timeout=120
    )
    allergies = [
        w.call(
            rec.RECORD_ALLERGY,
            rec.RecordAllergyRequest(patient_id=p, allergy=rec.Allergy(substance="Latex")),
            await w.doctor(),
        )
        for p in patients
    ]
    assert len(await asyncio.wait_for(asyncio.gather(*allergies), timeout=120)) == many
    prescribed = await asyncio.wait_for(
        asyncio.gather(
            *(
                w.prescribe(p, e.encounter_id, drug_name="Paracetamol", strength="500 mg")
                for p, e in zip(patients, encounters, strict=True)
            )
        ),
        timeout=120,
    )
    assert {p.status for p in prescribed} == {rec.PrescriptionStatus.active}
