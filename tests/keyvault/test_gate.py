"""The keyvault's own signature gate, attacked over the bus.

A forged decrypt request (any principal in the headers) without a fresh, valid signature
by that principal's own registered key is refused, and audited. Account rows come from
a stand-in auth service that these tests control, MAC'd by the keyvault under test.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from mesh.httpsig import proof_from_headers, sign_request

from contracts import keyvault as kv
from contracts.audit import AUDIT_RECORDED, AuditEvent
from contracts.auth import (
    RESOLVE_KEY,
    Account,
    AccountRecord,
    AccountStatus,
    ResolveKeyRequest,
    account_mac_row,
)
from contracts.base import Principal, Role
from mesh.context import CallContext
from mesh.errors import IntegrityError, NotFound, Unauthenticated
from mesh.events import ReceivedEvent
from mesh.rpc import RpcRouter
from mesh.runtime import ConsumerSpec, Runtime
from mesh.settings import Settings
from services.keyvault import ciphers
from tests.conftest import isolated_settings
from tests.keyvault.support import unsealed_keyvault, vault_of

URI = "http://gateway.test/api/v1/patients/p1"


@dataclass
class Staff:
    key: Ed25519PrivateKey
    account: Account

    @property
    def principal(self) -> Principal:
        return Principal(account_id=self.account.account_id, role=self.account.role)


@dataclass
class World:
    keyvault: Runtime
    auth: Runtime
    client: Runtime
    records: dict[str, AccountRecord] = field(default_factory=dict)
    audits: list[AuditEvent] = field(default_factory=list)

    async def add_staff(
        self, account_id: str, role: Role, status: AccountStatus = AccountStatus.active
    ) -> Staff:
        key = Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        now = datetime.now(UTC)
        account = Account(
            account_id=account_id,
            username=account_id,
            display_name=account_id.title(),
            role=role,
            status=status,
            public_key=base64.b64encode(public).decode(),
            created_at=now,
            updated_at=now,
        )
        (tag,) = (
            await self.client.rpc.call(kv.MAC, kv.MacRequest(rows=[account_mac_row(account)]))
        ).tags
        self.records[account_id] = AccountRecord(account=account, mac=tag)
        return Staff(key, account)

    async def decrypt(
        self,
        staff: Staff,
        proof: str | None,
        rows: list[kv.FieldRow],
        principal: Principal | None = None,
    ) -> kv.DecryptReply:
        return await self.client.rpc.call(
            kv.DECRYPT,
            kv.DecryptRequest(rows=rows, patient_id="p1"),
            principal=principal or staff.principal,
            proof=proof,
        )


def signed_proof(
    staff: Staff,
    *,
    created: int | None = None,
    key_id: str | None = None,
    key: Ed25519PrivateKey | None = None,
) -> str:
    headers = sign_request(
        key or staff.key,
        key_id or staff.account.account_id,
        "GET",
        URI,
        b"",
        created=created,
    )
    return proof_from_headers("GET", URI, headers).model_dump_json()


def stand_in_auth(world_records: dict[str, AccountRecord]) -> RpcRouter:
    router = RpcRouter("auth")

    @router.handler(RESOLVE_KEY)
    async def resolve(req: ResolveKeyRequest, ctx: CallContext) -> AccountRecord:
        record = world_records.get(req.account_id)
        if record is None:
            raise NotFound("no such account")
        return record

    return router


@pytest.fixture(scope="module")
def gate_settings() -> Iterator[Settings]:
    with isolated_settings("kvgate") as settings:
        yield settings


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(gate_settings: Settings) -> AsyncIterator[World]:
    records: dict[str, AccountRecord] = {}
    audits: list[AuditEvent] = []

    def collect(_: Runtime):  # type: ignore[no-untyped-def]
        async def handle(event: ReceivedEvent[AuditEvent]) -> None:
            audits.append(event.payload)

        return handle

    auth = await Runtime.start(
        "auth", gate_settings, router=stand_in_auth(records), use_database=False
    )
    client = await Runtime.start(
        "gatetest",
        gate_settings,
        use_database=False,
        consumers=[ConsumerSpec("gatetest-audit", [AUDIT_RECORDED], collect)],
    )
    try:
        async with unsealed_keyvault(gate_settings) as (keyvault, _):
            w = World(keyvault, auth, client, records, audits)
            yield w
    finally:
        await client.stop()
        await auth.stop()


async def encrypted_rows(world: World) -> list[kv.FieldRow]:
    rows = [
        kv.FieldRow(
            table="patients", row_id="p1", fields={"family_name": "Okafor", "phone": "555"}
        ),
        kv.FieldRow(
            table="patients", row_id="p2", fields={"family_name": "Lindqvist", "phone": "777"}
        ),
    ]
    reply = await world.client.rpc.call(kv.ENCRYPT, kv.EncryptRequest(rows=rows))
    return [
        kv.FieldRow(table=r.table, row_id=r.row_id, fields=enc)
        for r, enc in zip(rows, reply.rows, strict=True)
    ]


async def refused_audits(world: World, count_before: int) -> list[AuditEvent]:
    for _ in range(50):
        new = [a for a in world.audits[count_before:] if a.type == "keyvault.signature_refused"]
        if new:
            return new
        await asyncio.sleep(0.05)
    return []


async def test_a_fresh_signature_by_the_principal_decrypts(world: World) -> None:
    staff = await world.add_staff("dr-ok", Role.physician)
    rows = await encrypted_rows(world)
    reply = await world.decrypt(staff, signed_proof(staff), rows)
    assert reply.rows == [
        {"family_name": "Okafor", "phone": "555"},
        {"family_name": "Lindqvist", "phone": "777"},
    ]


async def test_forged_requests_are_refused_and_audited(world: World) -> None:
    staff = await world.add_staff("dr-victim", Role.physician)
    other = await world.add_staff("dr-other", Role.physician)
    rows = await encrypted_rows(world)
    cases = {
        "no proof": (None, staff.principal),
        "stale": (signed_proof(staff, created=int(time.time()) - 120), staff.principal),
        "future": (signed_proof(staff, created=int(time.time()) + 120), staff.principal),
        "signed by another key": (signed_proof(staff, key=other.key), staff.principal),
        "keyid is someone else": (signed_proof(other), staff.principal),
        "principal claims another role": (
            signed_proof(staff),
            Principal(account_id=staff.account.account_id, role=Role.administrator),
        ),
        "garbage proof": ('{"method": "GET"}', staff.principal),
        "unknown account": (
            signed_proof(staff, key_id="nobody"),
            Principal(account_id="nobody", role=Role.physician),
        ),
    }
    for name, (proof, principal) in cases.items():
        before = len(world.audits)
        with pytest.raises(Unauthenticated):
            await world.decrypt(staff, proof, rows, principal=principal)
        assert await refused_audits(world, before), f"{name}: no audit event"
        with pytest.raises(Unauthenticated):
            await world.client.rpc.call(
                kv.BLIND_INDEX,
                kv.BlindIndexRequest(
                    queries=[
                        kv.BlindIndexQuery(terms=[kv.BlindIndexTerm(field="phone", value="555")])
                    ]
                ),
                principal=principal,
                proof=proof,
            )


async def test_disabled_account_is_refused(world: World) -> None:
    staff = await world.add_staff("dr-gone", Role.physician, AccountStatus.disabled)
    with pytest.raises(Unauthenticated, match="disabled"):
        await world.decrypt(staff, signed_proof(staff), await encrypted_rows(world))


async def test_tampered_account_row_is_refused_with_an_integrity_error(world: World) -> None:
    staff = await world.add_staff("rx-clerk", Role.receptionist)
    record = world.records[staff.account.account_id]
    # The attacker edits the stored row (role → physician) but cannot recompute the MAC.
    forged = record.account.model_copy(update={"role": Role.physician})
    world.records[staff.account.account_id] = AccountRecord(account=forged, mac=record.mac)
    principal = Principal(account_id=staff.account.account_id, role=Role.physician)
    vault_of(world.keyvault)  # the cache may hold the old row: drop it as auth would
    world.keyvault.state["accounts"].clear()
    with pytest.raises(IntegrityError):
        await world.decrypt(staff, signed_proof(staff), await encrypted_rows(world), principal)
    # Swapping two accounts' public keys is caught the same way.
    a = await world.add_staff("swap-a", Role.physician)
    b = await world.add_staff("swap-b", Role.physician)
    ra, rb = world.records["swap-a"], world.records["swap-b"]
    world.records["swap-a"] = AccountRecord(
        account=ra.account.model_copy(update={"public_key": rb.account.public_key}), mac=ra.mac
    )
    with pytest.raises(IntegrityError):
        await world.decrypt(a, signed_proof(b, key_id="swap-a"), await encrypted_rows(world))


async def test_moved_or_edited_ciphertexts_do_not_decrypt(world: World) -> None:
    staff = await world.add_staff("dr-moves", Role.physician)
    rows = await encrypted_rows(world)
    p1, p2 = rows
    moved_row = kv.FieldRow(
        table="patients", row_id="p1", fields={"family_name": p2.fields["family_name"]}
    )
    moved_column = kv.FieldRow(
        table="patients", row_id="p1", fields={"phone": p1.fields["family_name"]}
    )
    moved_table = kv.FieldRow(
        table="staff", row_id="p1", fields={"family_name": p1.fields["family_name"]}
    )
    blob = bytearray(base64.b64decode(p1.fields["phone"]))
    for position in (0, 3, ciphers.HEADER_BYTES, len(blob) - 1):
        flipped = bytearray(blob)
        flipped[position] ^= 0x01
        row = kv.FieldRow(
            table="patients", row_id="p1", fields={"phone": base64.b64encode(flipped).decode()}
        )
        with pytest.raises(IntegrityError):
            await world.decrypt(staff, signed_proof(staff), [row])
    for row in (moved_row, moved_column, moved_table):
        with pytest.raises(IntegrityError):
            await world.decrypt(staff, signed_proof(staff), [row])


async def test_blind_index_is_deterministic_and_normalised(world: World) -> None:
    staff = await world.add_staff("desk", Role.receptionist)

    async def token(field: str, value: str) -> str:
        reply = await world.client.rpc.call(
            kv.BLIND_INDEX,
            kv.BlindIndexRequest(
                queries=[kv.BlindIndexQuery(terms=[kv.BlindIndexTerm(field=field, value=value)])]
            ),
            principal=staff.principal,
            proof=signed_proof(staff),
        )
        return reply.tokens[0]

    assert await token("family_name", "Müller") == await token("family_name", "  MULLER ")
    assert await token("phone", "+44 20 7946 0958") == await token("phone", "0044 (20) 7946-0958")
    assert await token("family_name", "Muller") != await token("given_name", "Muller")
    assert await token("mrn", "mh-0001") != await token("mrn", "mh-0002")
