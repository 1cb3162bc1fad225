"""What a user's signature lets the keyvault do, attacked over the bus.

The keyvault decrypts and computes blind indexes only on behalf of one signed user
operation: the runtime verifies the forwarded proof before any handler (a fresh
signature by the signer's own registered key, of a real routed request, forwarded by
the service that serves that request, used once), and the keyvault does only what that
operation's grant allows (tables, the patient every row is bound to, the signed search
terms). Every refusal is audited: "bus.signature_refused" for the proof,
"vault.grant_refused" for what it does not allow. Account rows come from a stand-in auth
service the tests control, MAC'd by the keyvault under test.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date

import pytest
import pytest_asyncio

from contracts import auth as au
from contracts import keyvault as kv
from contracts import records as rc
from contracts.audit import AUDIT_RECORDED, AuditEvent
from contracts.auth import AccountRecord, AccountStatus
from contracts.base import Principal, Role
from mesh.context import CallContext
from mesh.errors import BadRequest, Forbidden, Unauthenticated
from mesh.events import ReceivedEvent
from mesh.rpc import RpcRouter
from mesh.runtime import ConsumerSpec, Runtime
from services.keyvault import ciphers
from tests.support.clinic import TEST_ORIGIN, Clinic, StaffMember, clinic

AUDITS: list[AuditEvent] = []
SIGNATURE_REFUSED = "bus.signature_refused"
GRANT_REFUSED = "vault.grant_refused"


def collect(_: Runtime):  # type: ignore[no-untyped-def]
    async def handle(event: ReceivedEvent[AuditEvent]) -> None:
        AUDITS.append(event.payload)

    return handle


@dataclass
class Gate:
    clinic: Clinic
    records: Runtime
    """Connected as records: the service that serves patient reads, and asks the keyvault."""
    chat: Runtime
    """Connected as chat: a service that does not serve records' operations."""


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world() -> AsyncIterator[Gate]:
    consumers = [ConsumerSpec("gatetest-audit", [AUDIT_RECORDED], collect)]
    async with clinic("kvgate", client_consumers=consumers) as c:
        records = await Runtime.start(
            "kvgate-records",
            c.settings,
            router=no_care_relationships(),
            use_database=False,
            identity="records",
        )
        chat = await Runtime.start("kvgate-chat", c.settings, use_database=False, identity="chat")
        try:
            yield Gate(c, records, chat)
        finally:
            await chat.stop()
            await records.stop()


def no_care_relationships() -> RpcRouter:
    """Records' access rule, as the keyvault asks it: no physician is related to anyone."""
    router = RpcRouter(rc.ACCESS_SERVICE)

    @router.handler(rc.MAY_READ)
    async def may_read(req: rc.MayReadRequest, ctx: CallContext) -> rc.MayReadReply:
        return rc.MayReadReply(allowed=False)

    return router


def new_patient() -> str:
    return str(uuid.uuid4())


def read(staff: StaffMember, patient_id: str, *, created: int | None = None) -> tuple[str, bytes]:
    """(proof, body) of the staff member's signed `GET /api/v1/patients/{patient_id}`."""
    return staff.signed(
        rc.GET_PATIENT, rc.GetPatientRequest(patient_id=patient_id), created=created
    )


async def decrypt(
    world: Gate,
    rows: list[kv.FieldRow],
    signed: tuple[str | None, bytes],
    *,
    principal: Principal | None = None,
    via: Runtime | None = None,
    mac_rows: list[kv.MacRow] | None = None,
    mac_tags: list[str] | None = None,
) -> kv.DecryptReply:
    """DECRYPT as records (or `via`) asks it while serving the signed operation."""
    proof, body = signed
    return await (via or world.records).rpc.call(
        kv.DECRYPT,
        kv.DecryptRequest(rows=rows, mac_rows=mac_rows or [], mac_tags=mac_tags or []),
        principal=principal,
        proof=proof,
        signed_body=body,
    )


async def encrypted_rows(world: Gate, patient_id: str) -> list[kv.FieldRow]:
    """One `patients` row of this patient, encrypted through the bus by its owner."""
    rows = [
        kv.FieldRow(
            table="patients",
            row_id=patient_id,
            fields={"family_name": "Okafor", "phone": "5"},
            binding={"patient": patient_id},
        ),
        kv.FieldRow(
            table="patients",
            row_id=f"{patient_id}.v2",
            fields={"family_name": "Lind", "phone": "7"},
            binding={"patient": patient_id},
        ),
    ]
    reply = await world.records.rpc.call(kv.ENCRYPT, kv.EncryptRequest(rows=rows))
    return [r.model_copy(update={"fields": enc}) for r, enc in zip(rows, reply.rows, strict=True)]


async def audited(type: str, since: int) -> bool:
    for _ in range(100):
        if any(a.type == type for a in AUDITS[since:]):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_fresh_signature_by_the_principal_decrypts(world: Gate) -> None:
    staff = await world.clinic.add_staff("dr-ok", Role.physician)
    patient = new_patient()
    reply = await decrypt(
        world, await encrypted_rows(world, patient), read(staff, patient), principal=staff.principal
    )
    assert reply.rows == [
        {"family_name": "Okafor", "phone": "5"},
        {"family_name": "Lind", "phone": "7"},
    ]
    assert reply.failed == []


async def test_forged_requests_are_refused_and_audited(world: Gate) -> None:
    staff = await world.clinic.add_staff("dr-victim", Role.physician)
    other = await world.clinic.add_staff("dr-other", Role.physician)
    patient = new_patient()
    rows = await encrypted_rows(world, patient)
    target = f"{TEST_ORIGIN}/api/v1/patients/{patient}"
    now = int(time.time())
    cases: dict[str, tuple[str | None, Principal | None]] = {
        "no proof": (None, staff.principal),
        "stale": (read(staff, patient, created=now - 120)[0], staff.principal),
        "future": (read(staff, patient, created=now + 120)[0], staff.principal),
        "signed by another key": (staff.proof("GET", target, key=other.key), staff.principal),
        "keyid is someone else": (read(other, patient)[0], staff.principal),
        "garbage proof": ('{"method": "GET"}', staff.principal),
        "unknown account": (
            staff.proof("GET", target, key_id="nobody"),
            Principal(account_id="nobody", role=Role.physician),
        ),
        "not a request of any route": (staff.proof("GET", f"{TEST_ORIGIN}/api/v1/test"), None),
        "signed for another method": (staff.proof("DELETE", target), None),
    }
    query = kv.BlindIndexQuery(terms=[kv.BlindIndexTerm(field="phone", value="555")])
    for name, (proof, principal) in cases.items():
        before = len(AUDITS)
        with pytest.raises(Unauthenticated):
            await decrypt(world, rows, (proof, b""), principal=principal)
        assert await audited(SIGNATURE_REFUSED, before), f"{name}: no audit event"
        before = len(AUDITS)
        with pytest.raises(Unauthenticated):
            await world.records.rpc.call(
                kv.BLIND_INDEX,
                kv.BlindIndexRequest(queries=[query]),
                principal=principal,
                proof=proof,
                signed_body=b"",
            )
        assert await audited(SIGNATURE_REFUSED, before), f"{name}: blind index not audited"


async def test_a_proof_is_used_once(world: Gate) -> None:
    staff = await world.clinic.add_staff("dr-once", Role.physician)
    patient = new_patient()
    rows = await encrypted_rows(world, patient)
    signed = read(staff, patient)
    assert (await decrypt(world, rows, signed)).rows[0]["family_name"] == "Okafor"
    before = len(AUDITS)
    with pytest.raises(Unauthenticated, match="already used"):
        await decrypt(world, rows, signed)
    assert await audited(SIGNATURE_REFUSED, before)
    search = rc.SearchPatientsRequest(phone="+44 20 7946 0958")
    query = kv.BlindIndexQuery(terms=[kv.BlindIndexTerm(field="phone", value=search.phone)])
    signed = staff.signed(rc.SEARCH_PATIENTS, search)
    await blind_index(world, signed, [query])
    before = len(AUDITS)
    with pytest.raises(Unauthenticated, match="already used"):
        await blind_index(world, signed, [query])
    assert await audited(SIGNATURE_REFUSED, before)


async def test_a_proof_serves_only_its_own_operation_and_patient(world: Gate) -> None:
    staff = await world.clinic.add_staff("dr-scope", Role.physician)
    patient, someone_else = new_patient(), new_patient()
    rows = await encrypted_rows(world, patient)
    # Refused by the grant of the signed operation: audited "vault.grant_refused".
    by_grant = {
        "a read of another patient": read(staff, someone_else),
        "an operation on another table": staff.signed(
            rc.LIST_ENCOUNTERS, rc.ListEncountersRequest(patient_id=patient)
        ),
        "an operation that decrypts nothing": staff.signed(
            rc.SET_CLINICAL_FLAGS,
            rc.SetClinicalFlagsRequest(patient_id=patient, flags=[]),
        ),
    }
    for name, signed in by_grant.items():
        before = len(AUDITS)
        with pytest.raises(Forbidden):
            await decrypt(world, rows, signed)
        assert await audited(GRANT_REFUSED, before), f"{name}: no audit event"
    # Refused with the proof itself: audited "bus.signature_refused".
    by_proof = {
        "another service's operation": (staff.signed(au.ME, au.MeRequest()), world.records),
        "records' operation, forwarded by chat": (read(staff, patient), world.chat),
    }
    for name, (signed, via) in by_proof.items():
        before = len(AUDITS)
        with pytest.raises(Unauthenticated):
            await decrypt(world, rows, signed, via=via)
        assert await audited(SIGNATURE_REFUSED, before), f"{name}: no audit event"
    # Rows bound to no patient are not rows of the signed patient either.
    unbound = [r.model_copy(update={"binding": {}}) for r in rows]
    with pytest.raises(Forbidden):
        await decrypt(world, unbound, read(staff, patient))


async def test_the_principal_is_the_signer_not_the_header(world: Gate) -> None:
    """A physician's signed read of encounters, with headers claiming an administrator:
    the keyvault acts for the signing physician (care checked, and refused here, since
    no care relationship exists), not for the role in the headers."""
    staff = await world.clinic.add_staff("dr-claims", Role.physician)
    patient = new_patient()
    (fields,) = await world.clinic.encrypt(
        [
            kv.FieldRow(
                table="encounter_versions",
                row_id="enc-1",
                fields={"note": "private"},
                binding={"patient": patient},
            )
        ]
    )
    row = kv.FieldRow(
        table="encounter_versions", row_id="enc-1", fields=fields, binding={"patient": patient}
    )
    signed = staff.signed(rc.LIST_ENCOUNTERS, rc.ListEncountersRequest(patient_id=patient))
    claimed = Principal(account_id=staff.account_id, role=Role.administrator)
    before = len(AUDITS)
    with pytest.raises(Forbidden, match="care relationship"):
        await decrypt(world, [row], signed, principal=claimed)
    assert await audited("vault.care_refused", before)


async def test_disabled_account_is_refused(world: Gate) -> None:
    staff = await world.clinic.add_staff("dr-gone", Role.physician, status=AccountStatus.disabled)
    patient = new_patient()
    with pytest.raises(Unauthenticated, match="disabled"):
        await decrypt(world, await encrypted_rows(world, patient), read(staff, patient))


def tamper(world: Gate, staff: StaffMember, **changes: object) -> None:
    """Edit the stored account row as a database attacker would: the MAC stays old."""
    records = world.clinic.records
    record = records[staff.account_id]
    records[staff.account_id] = AccountRecord(
        account=record.account.model_copy(update=changes), mac=record.mac
    )
    world.clinic.forget(staff.account_id)


async def test_tampered_account_rows_are_refused(world: Gate) -> None:
    """An account row whose MAC fails is no signer at all (the keyvault checks it with
    its own integrity key): refused and audited."""
    patient = new_patient()
    rows = await encrypted_rows(world, patient)
    clerk = await world.clinic.add_staff("rx-clerk", Role.receptionist)
    tamper(world, clerk, role=Role.physician)  # promote a receptionist in the database
    before = len(AUDITS)
    with pytest.raises(Unauthenticated, match="not known"):
        await decrypt(world, rows, read(clerk, patient))
    assert await audited(SIGNATURE_REFUSED, before)
    # Swap two accounts' public keys: the attacker signs as a with b's key.
    a = await world.clinic.add_staff("swap-a", Role.physician)
    b = await world.clinic.add_staff("swap-b", Role.physician)
    tamper(world, a, public_key=b.account.public_key)
    target = f"{TEST_ORIGIN}/api/v1/patients/{patient}"
    before = len(AUDITS)
    with pytest.raises(Unauthenticated):
        await decrypt(world, rows, (b.proof("GET", target, key_id=a.account_id), b""))
    assert await audited(SIGNATURE_REFUSED, before)


async def test_moved_or_edited_ciphertexts_do_not_decrypt(world: Gate) -> None:
    """Each ciphertext is bound to its table, column, row id and patient: moved, edited
    or claimed for another patient, it does not decrypt (named in `failed`)."""
    staff = await world.clinic.add_staff("dr-moves", Role.physician)
    patient, someone_else = new_patient(), new_patient()
    mine, second = await encrypted_rows(world, patient)
    cases: list[tuple[kv.FieldRow, str]] = [
        (
            mine.model_copy(update={"fields": {"family_name": second.fields["family_name"]}}),
            patient,
        ),
        (mine.model_copy(update={"fields": {"phone": mine.fields["family_name"]}}), patient),
        # the same ciphertext claimed for another patient, with that patient's signed read
        (mine.model_copy(update={"binding": {"patient": someone_else}}), someone_else),
    ]
    blob = base64.b64decode(mine.fields["phone"])
    for position in (0, 3, ciphers.HEADER_BYTES, len(blob) - 1):
        flipped = bytearray(blob)
        flipped[position] ^= 0x01
        edited = {"phone": base64.b64encode(flipped).decode()}
        cases.append((mine.model_copy(update={"fields": edited}), patient))
    # Not a ciphertext at all (strict base64: alphabet, padding, nothing after it), or cut
    # short: the row fails like an edited one, never the whole request.
    phone = mine.fields["phone"]
    for garbage in (
        "not base64!",
        "é" + phone[1:],
        phone.rstrip("=") + "===",
        phone + "\n",
        phone + "QUFB",
        "=" + phone,
        base64.b64encode(blob[: ciphers.HEADER_BYTES]).decode(),
        "",
    ):
        cases.append((mine.model_copy(update={"fields": {"phone": garbage}}), patient))
    for row, signed_for in cases:
        # with an untouched row of the same patient, which still decrypts
        rows = [row, second] if signed_for == patient else [row]
        reply = await decrypt(world, rows, read(staff, signed_for))
        assert reply.failed == [0], row
        assert reply.rows[0] == {}
        assert reply.rows[1:] == [{"family_name": "Lind", "phone": "7"}][: len(rows) - 1]
    # Moved to another table: not a table the signed read lets the keyvault decrypt.
    moved = mine.model_copy(update={"table": "prescriptions"})
    with pytest.raises(Forbidden):
        await decrypt(world, [moved], read(staff, patient))


async def blind_index(
    world: Gate, signed: tuple[str, bytes], queries: list[kv.BlindIndexQuery]
) -> list[str]:
    proof, body = signed
    reply = await world.records.rpc.call(
        kv.BLIND_INDEX, kv.BlindIndexRequest(queries=queries), proof=proof, signed_body=body
    )
    return reply.tokens


def term(field: str, value: str) -> kv.BlindIndexQuery:
    return kv.BlindIndexQuery(terms=[kv.BlindIndexTerm(field=field, value=value)])


async def test_blind_index_is_deterministic_and_normalised(world: Gate) -> None:
    staff = await world.clinic.add_staff("desk", Role.receptionist)
    by_name = staff.signed(
        rc.SEARCH_PATIENTS,
        rc.SearchPatientsRequest(family_name="Müller", date_of_birth=date(1980, 1, 2)),
    )
    a, b = await blind_index(
        world, by_name, [term("family_name", "Müller"), term("family_name", "  MULLER ")]
    )
    assert a == b
    by_phone = staff.signed(rc.SEARCH_PATIENTS, rc.SearchPatientsRequest(phone="+44 20 7946 0958"))
    a, b = await blind_index(
        world, by_phone, [term("phone", "+44 20 7946 0958"), term("phone", "0044 (20) 7946-0958")]
    )
    assert a == b
    # A registration's own terms (and a few free record numbers to draw from).
    demographics = rc.Demographics(
        given_name="Muller",
        family_name="Muller",
        date_of_birth=date(1980, 1, 2),
        sex=rc.Sex.female,
    )
    create = staff.signed(rc.CREATE_PATIENT, rc.CreatePatientRequest(demographics=demographics))
    family, given, first, second = await blind_index(
        world,
        create,
        [
            term("family_name", "Muller"),
            term("given_name", "Muller"),
            term("mrn", "mh-0001"),
            term("mrn", "mh-0002"),
        ],
    )
    assert family != given
    assert first != second


async def test_blind_index_serves_only_the_signed_terms(world: Gate) -> None:
    staff = await world.clinic.add_staff("desk-2", Role.receptionist)
    search = rc.SearchPatientsRequest(phone="+44 20 7946 0958")
    for query in (term("phone", "+44 20 7946 0959"), term("family_name", "Okafor")):
        before = len(AUDITS)
        with pytest.raises(Forbidden):
            await blind_index(world, staff.signed(rc.SEARCH_PATIENTS, search), [query])
        assert await audited(GRANT_REFUSED, before)
    # a read of one patient indexes nothing
    before = len(AUDITS)
    with pytest.raises(Forbidden):
        await blind_index(world, read(staff, new_patient()), [term("phone", search.phone or "")])
    assert await audited(GRANT_REFUSED, before)
    # only records may ask at all, even with the right proof
    proof, body = staff.signed(rc.SEARCH_PATIENTS, search)
    with pytest.raises(Forbidden):
        await world.chat.rpc.call(
            kv.BLIND_INDEX,
            kv.BlindIndexRequest(queries=[term("phone", search.phone or "")]),
            proof=proof,
            signed_body=body,
        )


async def test_decrypt_checks_row_macs_in_the_same_call(world: Gate) -> None:
    """A read that decrypts and checks integrity makes one call: MACs of the given rows
    are verified behind the same signature check; an edited row is named False."""
    staff = await world.clinic.add_staff("dr-macs", Role.physician)
    patient = new_patient()
    row = kv.MacRow(table="prescriptions", pk="rx-1", columns=[("status", "active"), ("n", 1)])
    (tag,) = (await world.records.rpc.call(kv.MAC, kv.MacRequest(rows=[row]))).tags
    edited = row.model_copy(update={"columns": [("status", "cancelled"), ("n", 1)]})
    moved = row.model_copy(update={"pk": "rx-2"})
    reply = await decrypt(
        world,
        await encrypted_rows(world, patient),
        read(staff, patient),
        mac_rows=[row, edited, moved, row],
        mac_tags=[tag, tag, tag, "not base64!"],
    )
    assert reply.mac_valid == [True, False, False, False]
    assert reply.rows[0] == {"family_name": "Okafor", "phone": "5"}
    with pytest.raises(BadRequest, match="differ in number"):
        await decrypt(world, [], read(staff, patient), mac_rows=[row], mac_tags=[])
    with pytest.raises(Unauthenticated):  # no signature: no MAC answers either
        await decrypt(world, [], (None, b""), mac_rows=[row], mac_tags=[tag])
    # and only for rows of the calling service's own tables
    staff_row = kv.MacRow(table="staff_accounts", pk=staff.account_id, columns=[])
    before = len(AUDITS)
    with pytest.raises(Forbidden):
        await decrypt(world, [], read(staff, patient), mac_rows=[staff_row], mac_tags=[tag])
    assert await audited(GRANT_REFUSED, before)
