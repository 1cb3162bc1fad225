"""The patients a list shows, in one read (`records.patient_briefs`): who gets which
names, one keyvault call and one audit event for them all, and what a taken-over records
service holding such a signed request can make the keyvault decrypt (only the patients it
names)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from pydantic import ValidationError

from contracts import keyvault as kv
from contracts import records as rec
from mesh.errors import Forbidden
from mesh.runtime import Runtime
from tests.records.support import ALL, World, world


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("recbriefs") as w:
        w.appointments.discard(ALL)  # who is related to whom is set by each test
        yield w


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rogue(w: World) -> AsyncIterator[Runtime]:
    """A taken-over records service: on the bus as records' own broker identity."""
    runtime = await Runtime.start(
        "recbriefs-rogue", w.clinic.settings, use_database=False, identity=rec.SERVICE
    )
    try:
        yield runtime
    finally:
        await runtime.stop()


async def patients(w: World, n: int) -> list[str]:
    return [
        (await w.register(family_name=f"Brief{uuid.uuid4().hex[:6]}")).patient_id for _ in range(n)
    ]


async def test_the_desk_reads_many_names_in_one_keyvault_call_and_one_audit_event(
    w: World,
) -> None:
    ids = await patients(w, 5)
    unknown = str(uuid.uuid4())
    w.keyvault.reset()
    request = rec.PatientBriefsRequest(patient_ids=[ids[3], *ids, unknown])
    got = await w.call(rec.PATIENT_BRIEFS, request, await w.desk())
    assert [b.patient_id for b in got.patients] == [ids[3], ids[0], ids[1], ids[2], ids[4]]
    assert all(b.mrn.startswith(rec.MRN_PREFIX) and b.family_name for b in got.patients)
    assert got.withheld == [unknown]
    assert w.keyvault.decrypt_calls == 1 and w.keyvault.decrypted_rows == 5
    events = await w.audited(lambda a: a.type == "patient.briefs" and a.concerns(ids[0]))
    assert len(events) == 1
    assert sorted(events[0].patients) == sorted(ids)


async def test_a_physician_gets_only_the_names_of_patients_in_their_care(w: World) -> None:
    mine, other = await patients(w, 2)
    doctor = await w.doctor("dr-briefs")
    w.appointments.add((doctor.account_id, mine))
    request = rec.PatientBriefsRequest(patient_ids=[mine, other])
    got = await w.call(rec.PATIENT_BRIEFS, request, doctor)
    assert [b.patient_id for b in got.patients] == [mine]
    assert got.withheld == [other]
    # As for reading one patient: refused without care, allowed with it.
    with pytest.raises(Forbidden):
        await w.call(rec.GET_PATIENT, rec.GetPatientRequest(patient_id=other), doctor)
    events = await w.audited(lambda a: a.type == "patient.briefs" and a.concerns(mine))
    assert events and not any(e.concerns(other) for e in events)


async def test_an_administrator_gets_no_names(w: World) -> None:
    (pid,) = await patients(w, 1)
    with pytest.raises(Forbidden):
        await w.call(
            rec.PATIENT_BRIEFS, rec.PatientBriefsRequest(patient_ids=[pid]), await w.admin()
        )


def test_a_list_names_one_to_briefs_max_patients() -> None:
    """Bounded, so one signed request never opens the whole table."""
    with pytest.raises(ValidationError):
        rec.PatientBriefsRequest(patient_ids=[])
    with pytest.raises(ValidationError):
        rec.PatientBriefsRequest(patient_ids=[str(uuid.uuid4()) for _ in range(rec.BRIEFS_MAX + 1)])
    same = str(uuid.uuid4())
    assert rec.PatientBriefsRequest(patient_ids=[same, same]).count == 1


async def stored_rows(w: World, patient_ids: list[str]) -> list[kv.FieldRow]:
    assert w.service.db is not None
    rows = []
    for pid in patient_ids:
        found = await w.service.db.fetchone(
            "SELECT mrn_enc FROM patients WHERE patient_id = %s", (pid,)
        )
        assert found is not None
        rows.append(
            kv.FieldRow(
                table="patients", row_id=pid, fields={"mrn": found[0]}, binding={"patient": pid}
            )
        )
    return rows


async def test_a_signed_list_opens_no_other_patient_for_a_taken_over_service(
    w: World, rogue: Runtime
) -> None:
    """Holding a receptionist's signed briefs request for patient A and the stored rows
    of patient B, a taken-over records service gets nothing of B from the keyvault."""
    a, b = await patients(w, 2)
    desk = await w.desk()
    request = rec.PatientBriefsRequest(patient_ids=[a])
    rows = await stored_rows(w, [a, b])

    async def decrypt(wanted: list[kv.FieldRow]) -> kv.DecryptReply:
        proof, body = desk.signed(rec.PATIENT_BRIEFS, request)
        return await rogue.rpc.call(
            kv.DECRYPT,
            kv.DecryptRequest(rows=wanted),
            principal=desk.principal,
            proof=proof,
            signed_body=body,
        )

    with pytest.raises(Forbidden, match="does not name"):
        await decrypt(rows[1:])
    with pytest.raises(Forbidden):  # nor B along with A (more rows than the list, too)
        await decrypt(rows)
    # The same rows, claimed to be A's, do not decrypt: the binding is in the ciphertext.
    claimed = [rows[1].model_copy(update={"binding": {"patient": a}})]
    reply = await decrypt(claimed)
    assert reply.failed == [0] and reply.rows == [{}]
    # A's own row, with A's signed request: served.
    plain = await decrypt(rows[:1])
    assert plain.rows[0]["mrn"].startswith(rec.MRN_PREFIX)
