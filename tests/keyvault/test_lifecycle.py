"""Keyvault lifecycle over the real bus and database: init, unseal, seal, restart, rotate.

Init, unseal and status are the operator's calls (its own broker identity); seal and
rotate are routed operations: the gateway forwards an administrator's signed
`POST /api/v1/vault/seal` or `/rotate`, which the keyvault verifies itself against the
account row (from a stand-in auth service, MAC'd by the keyvault under test).
"""

from __future__ import annotations

import base64
import itertools
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from pydantic import BaseModel

from contracts import keyvault as kv
from contracts import records as rc
from contracts.auth import AccountRecord
from contracts.base import GATEWAY, Role, RpcMethod
from mesh.errors import BadRequest, Conflict, Forbidden, Sealed, Unauthenticated
from mesh.runtime import Runtime
from mesh.settings import Settings
from services.keyvault import ciphers, shamir
from services.keyvault.sealedbox import seal_share
from tests.conftest import isolated_settings
from tests.keyvault.support import (
    Initialised,
    initialise,
    keyvault_runtime,
    operator,
    unseal,
    vault_of,
)
from tests.support.clinic import Clinic, StaffMember, stand_in_auth

ROW = kv.FieldRow(table="patients", row_id="p1", fields={"family_name": "Okafor"})


@pytest.fixture(scope="module")
def kv_settings() -> Iterator[Settings]:
    with isolated_settings("kvlife") as settings:
        yield settings


@dataclass
class Life:
    """One keyvault replica (initialised, sealed at first) and who talks to it."""

    runtime: Runtime
    init: Initialised
    operator: Runtime
    """The operator's tool: init, unseal, status."""
    records: Runtime
    """A process with records' broker identity (the owner of the `patients` table)."""
    clinic: Clinic
    """The gateway side: staff with keys, and `call` forwarding a signed request."""
    _admin: StaffMember | None = None

    async def admin(self) -> StaffMember:
        """An administrator (their account row MAC'd once, while the vault is unsealed)."""
        if self._admin is None:
            self._admin = await self.clinic.add_staff("vault-admin", Role.administrator)
        return self._admin


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def vault_rt(kv_settings: Settings) -> AsyncIterator[Life]:
    records: dict[str, AccountRecord] = {}
    auth = await Runtime.start(
        "auth", kv_settings, router=stand_in_auth(records), use_database=False
    )
    gateway = await Runtime.start(
        "kvlife-gateway", kv_settings, use_database=False, identity=GATEWAY
    )
    owner = await Runtime.start(
        "kvlife-records", kv_settings, use_database=False, identity="records"
    )
    try:
        async with keyvault_runtime(kv_settings) as runtime, operator(kv_settings) as tool:
            init = await initialise(tool.rpc)
            clinic = Clinic(kv_settings, runtime, gateway, records, services=[runtime])
            yield Life(runtime, init, tool, owner, clinic)
    finally:
        await owner.stop()
        await gateway.stop()
        await auth.stop()


async def seal(life: Life, staff: StaffMember | None = None) -> kv.StatusReply:
    """Seal the replica with an administrator's signed `POST /api/v1/vault/seal`, as the
    gateway forwards it (to each replica's own queue)."""
    staff = staff or await life.admin()
    return await life.clinic.call(kv.SEAL, kv.SealRequest(), staff, instance=life.runtime.instance)


async def reset(life: Life) -> None:
    """Reset a sealed replica's unseal progress. (A signed seal cannot: a sealed replica
    cannot check any signer's account row, see `test_a_sealed_replica_refuses_signed_calls`.)"""
    await vault_of(life.runtime).seal()


async def status(life: Life) -> kv.StatusReply:
    return await life.operator.rpc.call(
        kv.STATUS, kv.StatusRequest(), instance=life.runtime.instance
    )


async def encrypt(life: Life, rows: list[kv.FieldRow]) -> kv.EncryptReply:
    return await life.records.rpc.call(kv.ENCRYPT, kv.EncryptRequest(rows=rows))


async def test_init_returns_shares_once_and_refuses_a_second_init(vault_rt: Life) -> None:
    life, init = vault_rt, vault_rt.init
    assert len(init.shares) == 5 and len(set(init.shares)) == 5
    assert all(s.startswith(shamir.SHARE_PREFIX) for s in init.shares)
    current = await status(life)
    assert current.state is kv.VaultState.sealed  # initialised, not yet unsealed
    assert (current.threshold, current.shares) == (3, 5)
    assert {k.purpose for k in current.keys} == set(kv.KeyPurpose)
    assert sum(k.purpose is kv.KeyPurpose.data for k in current.keys) == 16
    with pytest.raises(Conflict):
        await initialise(life.operator.rpc)
    # init is the operator's alone: not the gateway's, not a service's
    for other in (life.clinic.client, life.records):
        with pytest.raises(Forbidden):
            await initialise(other.rpc)


@pytest.mark.parametrize(("k", "n"), [(1, 5), (4, 3), (3, 256), (0, 0)])
async def test_init_refuses_bad_parameters(kv_settings: Settings, k: int, n: int) -> None:
    with isolated_settings(f"kvbad{k}x{n}") as settings:
        async with keyvault_runtime(settings), operator(settings) as tool:
            with pytest.raises(BadRequest):
                await initialise(tool.rpc, threshold=k, shares=n)
            current = await tool.rpc.call(kv.STATUS, kv.StatusRequest())
            assert current.state is kv.VaultState.uninitialized


async def test_any_k_of_n_shares_unseal(vault_rt: Life) -> None:
    life = vault_rt
    for subset in itertools.combinations(life.init.shares, 3):
        current = await unseal(life.operator.rpc, list(subset))
        assert current.state is kv.VaultState.unsealed, subset
        await encrypt(life, [ROW])
        assert (await seal(life)).state is kv.VaultState.sealed


async def test_k_minus_one_shares_stay_sealed(vault_rt: Life) -> None:
    life = vault_rt
    current = await unseal(life.operator.rpc, life.init.shares[:2])
    assert current.state is kv.VaultState.sealed and current.progress == 2
    with pytest.raises(Sealed):
        await encrypt(life, [ROW])
    await reset(life)
    assert (await status(life)).progress == 0


def forged_share(text: str) -> str:
    """A well-formed share (valid checksum) whose value is wrong: only the check value
    can tell."""
    share = shamir.parse_share(text)
    wrong = bytes([share.value[0] ^ 1]) + share.value[1:]
    return shamir.format_share(
        shamir.Share(share.version, share.k, share.index, share.set_id, wrong)
    )


async def test_wrong_share_leaves_it_sealed_with_a_clear_error(vault_rt: Life) -> None:
    life, init = vault_rt, vault_rt.init
    rpc = life.operator.rpc
    await unseal(rpc, init.shares[:2])
    key = (await status(life)).transport_public_key
    with pytest.raises(BadRequest) as err:
        await rpc.call(
            kv.UNSEAL, kv.UnsealRequest(sealed_share=seal_share(key, forged_share(init.shares[2])))
        )
    assert "do not reconstruct the root key" in err.value.message
    current = await status(life)
    assert current.state is kv.VaultState.sealed and current.progress == 0
    # The right shares still work afterwards.
    assert (await unseal(rpc, init.shares[2:])).state is kv.VaultState.unsealed
    await seal(life)


async def test_duplicate_garbage_and_misaddressed_shares_are_refused(vault_rt: Life) -> None:
    life, init = vault_rt, vault_rt.init
    rpc = life.operator.rpc
    key = (await status(life)).transport_public_key
    first = seal_share(key, init.shares[0])
    await rpc.call(kv.UNSEAL, kv.UnsealRequest(sealed_share=first))
    with pytest.raises(BadRequest, match="already submitted"):
        await rpc.call(kv.UNSEAL, kv.UnsealRequest(sealed_share=seal_share(key, init.shares[0])))
    garbage = [
        "",
        "not base64 at all!",
        base64.b64encode(b"x" * 80).decode(),
        seal_share(key, "mhs1-garbage"),
        seal_share(key, init.shares[1][:-3] + "AAA"),  # checksum fails
    ]
    for sealed in garbage:
        with pytest.raises(BadRequest):
            await rpc.call(kv.UNSEAL, kv.UnsealRequest(sealed_share=sealed))
    from nacl.public import PrivateKey

    from services.keyvault.sealedbox import public_key_b64

    other_key = public_key_b64(PrivateKey.generate().public_key)
    with pytest.raises(BadRequest, match="transport_public_key"):
        await rpc.call(
            kv.UNSEAL, kv.UnsealRequest(sealed_share=seal_share(other_key, init.shares[1]))
        )
    current = await status(life)
    assert current.state is kv.VaultState.sealed and current.progress == 1
    # a share is its own authority, but only the operator and the gateway may hand one in
    with pytest.raises(Forbidden):
        await life.records.rpc.call(
            kv.UNSEAL, kv.UnsealRequest(sealed_share=seal_share(key, init.shares[1]))
        )
    assert (await status(life)).progress == 1
    await reset(life)


def get_patient(patient_id: str) -> tuple[rc.GetPatientRequest, kv.FieldRow]:
    request = rc.GetPatientRequest(patient_id=patient_id)
    row = kv.FieldRow(
        table="patients",
        row_id=patient_id,
        fields={"family_name": "x"},
        binding={"patient": patient_id},
    )
    return request, row


async def test_seal_wipes_keys_and_refuses_operations(vault_rt: Life) -> None:
    life = vault_rt
    await unseal(life.operator.rpc, life.init.shares[:3])
    doctor = await life.clinic.add_staff("dr-sealed", Role.physician)
    vault = vault_of(life.runtime)
    secrets = [k.secret for k in vault._keys.values()]
    assert secrets and not any(s.wiped for s in secrets)
    current = await seal(life)
    assert current.state is kv.VaultState.sealed
    assert all(s.wiped for s in secrets)
    assert all(bytes(s._buf) == bytes(32) for s in secrets)
    patient_id = str(uuid.uuid4())
    read, row = get_patient(patient_id)
    read_proof, read_body = doctor.signed(rc.GET_PATIENT, read)
    search = rc.SearchPatientsRequest(phone="+44 20 7946 0958")
    search_proof, search_body = doctor.signed(rc.SEARCH_PATIENTS, search)
    query = kv.BlindIndexQuery(terms=[kv.BlindIndexTerm(field="phone", value=search.phone)])
    # Every operation is refused as sealed, even with a good signature for it (the
    # signer's account row cannot even be checked without the keys).
    with pytest.raises(Sealed):
        await encrypt(life, [ROW])
    with pytest.raises(Sealed):
        await life.records.rpc.call(kv.MAC, kv.MacRequest(rows=[]))
    with pytest.raises(Sealed):
        await life.records.rpc.call(
            kv.DECRYPT, kv.DecryptRequest(rows=[row]), proof=read_proof, signed_body=read_body
        )
    with pytest.raises(Sealed):
        await life.records.rpc.call(
            kv.BLIND_INDEX,
            kv.BlindIndexRequest(queries=[query]),
            proof=search_proof,
            signed_body=search_body,
        )


async def test_a_sealed_replica_refuses_signed_calls(vault_rt: Life) -> None:
    """A sealed replica cannot check an account row's MAC, so it verifies no signature:
    even an administrator's signed seal is refused (closed), and changes nothing."""
    life = vault_rt
    await unseal(life.operator.rpc, life.init.shares[:1])
    with pytest.raises(Sealed):
        await seal(life)
    assert (await status(life)).progress == 1
    await reset(life)


async def test_seal_and_rotate_are_for_administrators(vault_rt: Life) -> None:
    life = vault_rt
    await unseal(life.operator.rpc, life.init.shares[:3])
    admin = await life.admin()
    doctor = await life.clinic.add_staff("dr-no-seal", Role.physician)
    instance = life.runtime.instance
    cases: list[tuple[RpcMethod[Any, Any], BaseModel]] = [
        (kv.SEAL, kv.SealRequest()),
        (kv.ROTATE, kv.RotateRequest()),
    ]
    for method, request in cases:
        # a physician's own signature for this very request: refused by role
        with pytest.raises(Forbidden):
            await life.clinic.call(method, request, doctor, instance=instance)
        # no signature at all, whatever principal the headers claim
        for principal in (None, admin.principal):
            with pytest.raises(Unauthenticated):
                await life.clinic.client.rpc.call(
                    method,
                    request,
                    principal=principal,
                    instance=instance,
                )
        # an administrator's signature for another operation (seal for rotate and
        # rotate for seal), or for this one with other values
        other = kv.ROTATE if method is kv.SEAL else kv.SEAL
        other_request: BaseModel = kv.RotateRequest() if method is kv.SEAL else kv.SealRequest()
        proof, body = admin.signed(other, other_request)
        with pytest.raises(Unauthenticated):
            await life.clinic.client.rpc.call(
                method,
                request,
                principal=admin.principal,
                proof=proof,
                signed_body=body,
                instance=instance,
            )
        # an administrator's good signature, but not sent by the gateway
        proof, body = admin.signed(method, request)
        with pytest.raises(Forbidden):
            await life.records.rpc.call(
                method,
                request,
                principal=admin.principal,
                proof=proof,
                signed_body=body,
                instance=instance,
            )
    proof, body = admin.signed(kv.ROTATE, kv.RotateRequest(add=1))
    with pytest.raises(Unauthenticated):  # signed add=1, sent with add=16
        await life.clinic.client.rpc.call(
            kv.ROTATE,
            kv.RotateRequest(),
            principal=admin.principal,
            proof=proof,
            signed_body=body,
            instance=instance,
        )
    assert (await status(life)).state is kv.VaultState.unsealed  # nothing above sealed it
    await seal(life, admin)


async def test_restart_is_sealed(kv_settings: Settings, vault_rt: Life) -> None:
    life = vault_rt
    await unseal(life.operator.rpc, life.init.shares[:3])
    async with keyvault_runtime(kv_settings) as second:
        current = await life.operator.rpc.call(
            kv.STATUS, kv.StatusRequest(), instance=second.instance
        )
        assert current.state is kv.VaultState.sealed
        assert current.threshold == 3
    await seal(life)


async def test_rotate_adds_keys_and_retires_old_ones(vault_rt: Life) -> None:
    life = vault_rt
    await unseal(life.operator.rpc, life.init.shares[:3])
    admin = await life.admin()
    before = await encrypt(life, [ROW] * 20)
    old_ids = {_key_id(r["family_name"]) for r in before.rows}
    reply = await life.clinic.call(
        kv.ROTATE,
        kv.RotateRequest(add=4, retire_existing=True),
        admin,
        instance=life.runtime.instance,
    )
    assert len(reply.added) == 4 and old_ids <= set(reply.retired)
    after = await encrypt(life, [ROW] * 50)
    assert {_key_id(r["family_name"]) for r in after.rows} <= set(reply.added)
    current = await status(life)
    states = {k.key_id: k.state for k in current.keys}
    assert all(states[k] is kv.KeyState.retired for k in reply.retired)
    used = {k.key_id: k.use_count for k in current.keys}
    assert sum(used[k] for k in reply.added) == 50
    await seal(life)


async def test_keys_are_picked_uniformly_at_random_per_row(vault_rt: Life) -> None:
    life = vault_rt
    await unseal(life.operator.rpc, life.init.shares[:3])
    rows = [
        kv.FieldRow(table="patients", row_id=str(i), fields={"a": "x", "b": "y"})
        for i in range(400)
    ]
    reply = await encrypt(life, rows)
    per_row = [{_key_id(v) for v in r.values()} for r in reply.rows]
    assert all(len(ids) == 1 for ids in per_row), "all fields of a row share one key"
    counts: dict[int, int] = {}
    for ids in per_row:
        (key_id,) = ids
        counts[key_id] = counts.get(key_id, 0) + 1
    active = [
        k.key_id
        for k in vault_of(life.runtime)._keys.values()
        if k.purpose == "data" and k.state == "active"
    ]
    assert set(counts) == set(active)  # 400 rows over the active keys: every key used
    await seal(life)


def _key_id(value: str) -> int:
    return ciphers.parse_field(base64.b64decode(value)).key_id
