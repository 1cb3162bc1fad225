"""The keyvault's own signature gate, attacked over the bus.

A forged decrypt request (any principal in the headers) without a fresh, valid signature
by that principal's own registered key is refused, and audited. Account rows come from
a stand-in auth service the tests control, MAC'd by the keyvault under test.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from contracts import keyvault as kv
from contracts.audit import AUDIT_RECORDED, AuditEvent
from contracts.auth import AccountRecord, AccountStatus
from contracts.base import Principal, Role
from mesh.errors import BadRequest, IntegrityError, Unauthenticated
from mesh.events import ReceivedEvent
from mesh.runtime import ConsumerSpec, Runtime
from services.keyvault import ciphers
from tests.support.clinic import Clinic, StaffMember, clinic

AUDITS: list[AuditEvent] = []


def collect(_: Runtime):  # type: ignore[no-untyped-def]
    async def handle(event: ReceivedEvent[AuditEvent]) -> None:
        AUDITS.append(event.payload)

    return handle


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world() -> AsyncIterator[Clinic]:
    consumers = [ConsumerSpec("gatetest-audit", [AUDIT_RECORDED], collect)]
    async with clinic("kvgate", client_consumers=consumers) as c:
        yield c


async def decrypt(
    world: Clinic, rows: list[kv.FieldRow], principal: Principal, proof: str | None
) -> kv.DecryptReply:
    return await world.client.rpc.call(
        kv.DECRYPT,
        kv.DecryptRequest(rows=rows, patient_id="p1"),
        principal=principal,
        proof=proof,
    )


async def encrypted_rows(world: Clinic) -> list[kv.FieldRow]:
    rows = [
        kv.FieldRow(table="patients", row_id="p1", fields={"family_name": "Okafor", "phone": "5"}),
        kv.FieldRow(table="patients", row_id="p2", fields={"family_name": "Lind", "phone": "7"}),
    ]
    reply = await world.client.rpc.call(kv.ENCRYPT, kv.EncryptRequest(rows=rows))
    return [
        kv.FieldRow(table=r.table, row_id=r.row_id, fields=enc)
        for r, enc in zip(rows, reply.rows, strict=True)
    ]


async def refusal_audited(count_before: int) -> bool:
    for _ in range(50):
        if any(a.type == "vault.signature_refused" for a in AUDITS[count_before:]):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_fresh_signature_by_the_principal_decrypts(world: Clinic) -> None:
    staff = await world.add_staff("dr-ok", Role.physician)
    reply = await decrypt(world, await encrypted_rows(world), staff.principal, staff.proof())
    assert reply.rows == [
        {"family_name": "Okafor", "phone": "5"},
        {"family_name": "Lind", "phone": "7"},
    ]


async def test_forged_requests_are_refused_and_audited(world: Clinic) -> None:
    staff = await world.add_staff("dr-victim", Role.physician)
    other = await world.add_staff("dr-other", Role.physician)
    rows = await encrypted_rows(world)
    now = int(time.time())
    cases: dict[str, tuple[str | None, Principal]] = {
        "no proof": (None, staff.principal),
        "stale": (staff.proof(created=now - 120), staff.principal),
        "future": (staff.proof(created=now + 120), staff.principal),
        "signed by another key": (staff.proof(key=other.key), staff.principal),
        "keyid is someone else": (other.proof(), staff.principal),
        "principal claims another role": (
            staff.proof(),
            Principal(account_id=staff.account_id, role=Role.administrator),
        ),
        "garbage proof": ('{"method": "GET"}', staff.principal),
        "unknown account": (
            staff.proof(key_id="nobody"),
            Principal(account_id="nobody", role=Role.physician),
        ),
    }
    query = kv.BlindIndexQuery(terms=[kv.BlindIndexTerm(field="phone", value="555")])
    for name, (proof, principal) in cases.items():
        before = len(AUDITS)
        with pytest.raises(Unauthenticated):
            await decrypt(world, rows, principal, proof)
        assert await refusal_audited(before), f"{name}: no audit event"
        with pytest.raises(Unauthenticated):
            await world.client.rpc.call(
                kv.BLIND_INDEX,
                kv.BlindIndexRequest(queries=[query]),
                principal=principal,
                proof=proof,
            )


async def test_disabled_account_is_refused(world: Clinic) -> None:
    staff = await world.add_staff("dr-gone", Role.physician, status=AccountStatus.disabled)
    with pytest.raises(Unauthenticated, match="disabled"):
        await decrypt(world, await encrypted_rows(world), staff.principal, staff.proof())


def tamper(world: Clinic, staff: StaffMember, **changes: object) -> None:
    """Edit the stored account row as a database attacker would: the MAC stays old."""
    record = world.records[staff.account_id]
    world.records[staff.account_id] = AccountRecord(
        account=record.account.model_copy(update=changes), mac=record.mac
    )
    world.keyvault.state["accounts"].forget(staff.account_id)


async def test_tampered_account_rows_are_refused_with_an_integrity_error(world: Clinic) -> None:
    rows = await encrypted_rows(world)
    clerk = await world.add_staff("rx-clerk", Role.receptionist)
    tamper(world, clerk, role=Role.physician)  # promote a receptionist in the database
    promoted = Principal(account_id=clerk.account_id, role=Role.physician)
    with pytest.raises(IntegrityError):
        await decrypt(world, rows, promoted, clerk.proof())
    # Swap two accounts' public keys: the attacker signs as a with b's key.
    a = await world.add_staff("swap-a", Role.physician)
    b = await world.add_staff("swap-b", Role.physician)
    tamper(world, a, public_key=b.account.public_key)
    with pytest.raises(IntegrityError):
        await decrypt(world, rows, a.principal, b.proof(key_id=a.account_id))


async def test_moved_or_edited_ciphertexts_do_not_decrypt(world: Clinic) -> None:
    staff = await world.add_staff("dr-moves", Role.physician)
    p1, p2 = await encrypted_rows(world)
    moved = [
        kv.FieldRow(
            table="patients", row_id="p1", fields={"family_name": p2.fields["family_name"]}
        ),
        kv.FieldRow(table="patients", row_id="p1", fields={"phone": p1.fields["family_name"]}),
        kv.FieldRow(table="staff", row_id="p1", fields={"family_name": p1.fields["family_name"]}),
    ]
    blob = base64.b64decode(p1.fields["phone"])
    for position in (0, 3, ciphers.HEADER_BYTES, len(blob) - 1):
        flipped = bytearray(blob)
        flipped[position] ^= 0x01
        moved.append(
            kv.FieldRow(
                table="patients", row_id="p1", fields={"phone": base64.b64encode(flipped).decode()}
            )
        )
    for row in moved:
        with pytest.raises(IntegrityError):
            await decrypt(world, [row], staff.principal, staff.proof())


async def test_blind_index_is_deterministic_and_normalised(world: Clinic) -> None:
    staff = await world.add_staff("desk", Role.receptionist)

    async def token(field: str, value: str) -> str:
        query = kv.BlindIndexQuery(terms=[kv.BlindIndexTerm(field=field, value=value)])
        reply = await world.call(kv.BLIND_INDEX, kv.BlindIndexRequest(queries=[query]), staff)
        return reply.tokens[0]

    assert await token("family_name", "Müller") == await token("family_name", "  MULLER ")
    assert await token("phone", "+44 20 7946 0958") == await token("phone", "0044 (20) 7946-0958")
    assert await token("family_name", "Muller") != await token("given_name", "Muller")
    assert await token("mrn", "mh-0001") != await token("mrn", "mh-0002")


async def test_decrypt_checks_row_macs_in_the_same_call(world: Clinic) -> None:
    """A read that decrypts and checks integrity makes one call: MACs of the given rows
    are verified behind the same signature gate; an edited row is named False."""
    staff = await world.add_staff("dr-macs", Role.physician)
    row = kv.MacRow(table="prescriptions", pk="rx-1", columns=[("status", "active"), ("n", 1)])
    (tag,) = (await world.client.rpc.call(kv.MAC, kv.MacRequest(rows=[row]))).tags
    edited = row.model_copy(update={"columns": [("status", "cancelled"), ("n", 1)]})
    moved = row.model_copy(update={"pk": "rx-2"})
    reply = await world.client.rpc.call(
        kv.DECRYPT,
        kv.DecryptRequest(
            rows=await encrypted_rows(world),
            patient_id="p1",
            mac_rows=[row, edited, moved, row],
            mac_tags=[tag, tag, tag, "not base64!"],
        ),
        principal=staff.principal,
        proof=staff.proof(),
    )
    assert reply.mac_valid == [True, False, False, False]
    assert reply.rows[0] == {"family_name": "Okafor", "phone": "5"}
    with pytest.raises(BadRequest, match="differ in number"):
        await world.client.rpc.call(
            kv.DECRYPT,
            kv.DecryptRequest(rows=[], patient_id="p1", mac_rows=[row], mac_tags=[]),
            principal=staff.principal,
            proof=staff.proof(),
        )
    with pytest.raises(Unauthenticated):  # no signature: no MAC answers either
        await world.client.rpc.call(
            kv.DECRYPT,
            kv.DecryptRequest(rows=[], mac_rows=[row], mac_tags=[tag]),
            principal=staff.principal,
        )
