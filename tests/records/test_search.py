"""Search finds patients by each blind index, names that sound alike and numbers in any
notation, a near miss finds nothing, and a search never decrypts the table: one
BLIND_INDEX call, an indexed lookup, and one DECRYPT batch holding only the matches
(counted at the keyvault and in MariaDB's query plan)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pytest
import pytest_asyncio

from contracts import keyvault as kv
from contracts import records as rec
from mesh.errors import Conflict, RpcError
from services.keyvault.state import vault_of
from services.records import store
from tests.records.support import World, demographics, world
from tests.support.raw import gateway_reasons, is_4xx

CROWD = 30


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("recsearch") as w:
        for i in range(CROWD):  # a table worth not decrypting
            await w.register(
                given_name=f"Crowd{chr(65 + i % 26)}",
                family_name=f"Filler{i}",
                date_of_birth=date(1950 + i, 1 + i % 12, 1 + i % 28),
                phone=f"+49 30 {5550000 + i}",
            )
        yield w


async def mrn_of(w: World, patient_id: str) -> str:
    desk = await w.desk()
    return (await w.call(rec.GET_PATIENT, rec.GetPatientRequest(patient_id=patient_id), desk)).mrn


async def search(w: World, **criteria: object) -> list[str]:
    found = await w.call(rec.SEARCH_PATIENTS, rec.SearchPatientsRequest(**criteria), await w.desk())
    return [p.patient_id for p in found.patients]


async def test_each_blind_index_finds_the_patient(w: World) -> None:
    target = await w.register(
        given_name="Zoë",
        family_name="Ó Briain-Müller",
        date_of_birth=date(1971, 11, 2),
        phone="+353 1 555 0142",
    )
    mrn = await mrn_of(w, target.patient_id)
    pid = [target.patient_id]
    # Exact match after the keyvault's normalisation: case, accents, apostrophes, hyphens.
    assert await search(w, family_name="Ó Briain-Müller", date_of_birth=date(1971, 11, 2)) == pid
    assert await search(w, family_name="o briain muller", date_of_birth=date(1971, 11, 2)) == pid
    # Phone in any notation of the same digits (country code via + or 00).
    assert await search(w, phone="+353 1 555 0142") == pid
    assert await search(w, phone="00353 (1) 555-0142") == pid
    # Record number with or without the hyphen, any case.
    assert await search(w, mrn=mrn) == pid
    assert await search(w, mrn=mrn.lower().replace("-", "")) == pid
    listed = await w.call(rec.SEARCH_PATIENTS, rec.SearchPatientsRequest(mrn=mrn), await w.desk())
    assert listed.patients[0].given_name == "Zoë" and listed.patients[0].mrn == mrn


async def test_a_near_miss_finds_nothing(w: World) -> None:
    target = await w.register(
        given_name="Near",
        family_name="Castellanos",
        date_of_birth=date(1990, 6, 15),
        phone="+34 91 555 0123",
    )
    mrn = await mrn_of(w, target.patient_id)
    near_mrn = mrn[:-1] + ("A" if mrn[-1] != "A" else "B")
    misses: list[dict[str, Any]] = [
        {"family_name": "Castellano", "date_of_birth": date(1990, 6, 15)},
        {"family_name": "Castellanos", "date_of_birth": date(1990, 6, 16)},
        {"family_name": "Castellanos Ruiz", "date_of_birth": date(1990, 6, 15)},
        {"phone": "+34 91 555 0124"},
        {"phone": "91 555 0123"},  # national notation: a number of the clinic's region (DE)
        {"mrn": near_mrn},
    ]
    for criteria in misses:
        assert await search(w, **criteria) == [], criteria
    # The given name is not a search key (family name + date of birth is): a family
    # name alone is not a valid search (the gateway's 422 says why), refused on the bus.
    lone = rec.SearchPatientsRequest.model_construct(family_name="Castellanos")
    raw = lone.model_dump_json(exclude_unset=True).encode()
    assert "needs both" in (gateway_reasons(rec.SEARCH_PATIENTS, raw) or "")
    with pytest.raises(RpcError) as refused:
        await w.call(rec.SEARCH_PATIENTS, lone, await w.desk())
    assert is_4xx(refused.value.code), refused.value


async def test_searching_never_decrypts_the_table(w: World) -> None:
    twins = [
        await w.register(given_name=g, family_name="Haddad", date_of_birth=date(2001, 2, 3))
        for g in ("Lina", "Omar")
    ]
    w.keyvault.reset()
    found = await search(w, family_name="Haddad", date_of_birth=date(2001, 2, 3))
    assert sorted(found) == sorted(t.patient_id for t in twins)
    # One token, one batch holding exactly the two matches, out of 30+ patients.
    assert w.keyvault.blind_index_calls == 1
    assert w.keyvault.decrypt_calls == 1 and w.keyvault.decrypted_rows == 2
    w.keyvault.reset()
    assert await search(w, family_name="Haddad", date_of_birth=date(2001, 2, 4)) == []
    assert w.keyvault.blind_index_calls == 1 and w.keyvault.decrypted_rows == 0
    # MariaDB touches only the matching rows: an index lookup, not a scan.
    assert w.service.db is not None
    total = await w.service.db.fetchone("SELECT COUNT(*) FROM patients")
    assert total is not None and total[0] > CROWD
    tokens = await w.service.db.fetchone(
        "SELECT name_dob_bidx, phone_bidx, mrn_bidx FROM patients WHERE patient_id = %s",
        (twins[0].patient_id,),
    )
    assert tokens is not None
    for (kind, column), token in zip(store.SEARCH_COLUMNS.items(), tokens, strict=True):
        plan = await w.service.db.fetchall(
            f"EXPLAIN SELECT {store.PATIENT_COLUMNS} FROM patients WHERE {column} = %s",
            (token,),
        )
        key_used, rows_examined = plan[0][5], int(plan[0][8])
        assert key_used == f"by_{kind}", (kind, plan)
        assert rows_examined <= 2, (kind, plan)


async def test_schmitt_finds_schmidt_without_decrypting_the_table(w: World) -> None:
    born = date(1979, 4, 5)
    schmidt = await w.register(given_name="Anna", family_name="Schmidt", date_of_birth=born)
    schmid = await w.register(given_name="Jonas", family_name="Schmid", date_of_birth=born)
    other = await w.register(given_name="Anna", family_name="Becker", date_of_birth=born)
    w.keyvault.reset()
    found = await search(w, family_name="Schmitt", date_of_birth=born)
    assert sorted(found) == sorted([schmidt.patient_id, schmid.patient_id])
    assert other.patient_id not in found
    assert w.keyvault.blind_index_calls == 1
    assert w.keyvault.decrypt_calls == 1 and w.keyvault.decrypted_rows == 2
    # The exact spelling comes first.
    assert (await search(w, family_name="Schmid", date_of_birth=born))[0] == schmid.patient_id
    # The birth date is still exact.
    assert await search(w, family_name="Schmitt", date_of_birth=date(1979, 4, 6)) == []
    # MariaDB finds sound tokens by index too.
    assert w.service.db is not None
    token = await w.service.db.fetchone(
        "SELECT token FROM patient_sounds WHERE patient_id = %s", (schmidt.patient_id,)
    )
    assert token is not None
    plan = await w.service.db.fetchall(
        "EXPLAIN SELECT patient_id FROM patient_sounds WHERE token = %s", (token[0],)
    )
    assert plan[0][5] == "PRIMARY" and int(plan[0][8]) <= 3, plan


async def test_a_phone_number_in_any_notation_of_the_clinic_region(w: World) -> None:
    """The clinic is in Germany (region DE): `030 1234567` is `+49 30 1234567`."""
    intl = await w.register(given_name="Ilse", family_name="Vogel", phone="+49 30 1234567")
    national = await w.register(given_name="Otto", family_name="Fink", phone="030 7654321")
    assert await search(w, phone="030 1234567") == [intl.patient_id]
    assert await search(w, phone="0049 30 7654321") == [national.patient_id]
    assert await search(w, phone="+49 (0)30 765 43 21") == [national.patient_id]
    got = await w.call(
        rec.GET_PATIENT, rec.GetPatientRequest(patient_id=national.patient_id), await w.desk()
    )
    assert got.demographics.phone == "+49 30 7654321"  # kept in international format


async def test_a_phone_token_stored_before_regions_is_still_found(w: World) -> None:
    """Numbers stored before the region was used have digit-only tokens: still found."""
    old = await w.register(given_name="Alt", family_name="Bestand", phone="089 5550199")
    vault = vault_of(w.clinic.keyvault)
    (legacy,) = vault.blind_indexes(
        [kv.BlindIndexQuery(terms=[kv.BlindIndexTerm(field="phone_digits", value="089 5550199")])]
    )
    assert w.service.db is not None
    await w.service.db.execute(
        "UPDATE patients SET phone_bidx = %s WHERE patient_id = %s", (legacy, old.patient_id)
    )
    assert await search(w, phone="089 555 01 99") == [old.patient_id]


async def test_a_similar_name_warns_at_registration_but_other_twins_do_not(w: World) -> None:
    desk = await w.desk()
    born = date(1988, 8, 8)
    anna = demographics(given_name="Anna", family_name="Schmidt", date_of_birth=born)
    first = await w.call(rec.CREATE_PATIENT, rec.CreatePatientRequest(demographics=anna), desk)
    similar = anna.model_copy(update={"family_name": "Schmitt"})
    with pytest.raises(Conflict) as warned:
        await w.call(rec.CREATE_PATIENT, rec.CreatePatientRequest(demographics=similar), desk)
    details = warned.value.details
    assert isinstance(details, dict)
    (existing,) = details["existing"]
    assert existing["patient_id"] == first.patient_id
    assert (existing["given_name"], existing["family_name"]) == ("Anna", "Schmidt")
    # A twin brother of another name (same family, same birth date) is no duplicate.
    brother = anna.model_copy(update={"given_name": "Hans"})
    await w.call(rec.CREATE_PATIENT, rec.CreatePatientRequest(demographics=brother), desk)
