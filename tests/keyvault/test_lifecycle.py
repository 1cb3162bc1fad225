"""Keyvault lifecycle over the real bus and database: init, unseal, seal, restart, rotate."""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from contracts import keyvault as kv
from contracts.base import Principal, Role
from mesh.errors import BadRequest, Conflict, Forbidden, Sealed
from mesh.runtime import Runtime
from mesh.settings import Settings
from services.keyvault import ciphers, shamir
from services.keyvault.sealedbox import seal_share
from tests.conftest import isolated_settings
from tests.keyvault.support import Initialised, initialise, keyvault_runtime, unseal, vault_of

ADMIN = Principal(account_id="admin-1", role=Role.administrator)
ROW = kv.FieldRow(table="patients", row_id="p1", fields={"family_name": "Okafor"})


@pytest.fixture(scope="module")
def kv_settings() -> Iterator[Settings]:
    with isolated_settings("kvlife") as settings:
        yield settings


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def vault_rt(kv_settings: Settings) -> AsyncIterator[tuple[Runtime, Initialised]]:
    async with keyvault_runtime(kv_settings) as runtime:
        init = await initialise(runtime.rpc)
        yield runtime, init


async def seal(runtime: Runtime) -> None:
    await runtime.rpc.call(kv.SEAL, kv.SealRequest(), principal=ADMIN)


async def test_init_returns_shares_once_and_refuses_a_second_init(
    vault_rt: tuple[Runtime, Initialised],
) -> None:
    runtime, init = vault_rt
    assert len(init.shares) == 5 and len(set(init.shares)) == 5
    assert all(s.startswith(shamir.SHARE_PREFIX) for s in init.shares)
    status = await runtime.rpc.call(kv.STATUS, kv.StatusRequest())
    assert status.state is kv.VaultState.sealed  # initialised, not yet unsealed
    assert (status.threshold, status.shares) == (3, 5)
    assert {k.purpose for k in status.keys} == set(kv.KeyPurpose)
    assert sum(k.purpose is kv.KeyPurpose.data for k in status.keys) == 16
    with pytest.raises(Conflict):
        await initialise(runtime.rpc)


@pytest.mark.parametrize(("k", "n"), [(1, 5), (4, 3), (3, 256), (0, 0)])
async def test_init_refuses_bad_parameters(kv_settings: Settings, k: int, n: int) -> None:
    with isolated_settings(f"kvbad{k}x{n}") as settings:
        async with keyvault_runtime(settings) as runtime:
            with pytest.raises(BadRequest):
                await initialise(runtime.rpc, threshold=k, shares=n)
            status = await runtime.rpc.call(kv.STATUS, kv.StatusRequest())
            assert status.state is kv.VaultState.uninitialized


async def test_any_k_of_n_shares_unseal(vault_rt: tuple[Runtime, Initialised]) -> None:
    runtime, init = vault_rt
    for subset in itertools.combinations(init.shares, 3):
        status = await unseal(runtime.rpc, list(subset))
        assert status.state is kv.VaultState.unsealed, subset
        await runtime.rpc.call(kv.ENCRYPT, kv.EncryptRequest(rows=[ROW]))
        await seal(runtime)


async def test_k_minus_one_shares_stay_sealed(vault_rt: tuple[Runtime, Initialised]) -> None:
    runtime, init = vault_rt
    status = await unseal(runtime.rpc, init.shares[:2])
    assert status.state is kv.VaultState.sealed and status.progress == 2
    with pytest.raises(Sealed):
        await runtime.rpc.call(kv.ENCRYPT, kv.EncryptRequest(rows=[ROW]))
    await seal(runtime)  # resets progress
    status = await runtime.rpc.call(kv.STATUS, kv.StatusRequest())
    assert status.progress == 0


def forged_share(text: str) -> str:
    """A well-formed share (valid checksum) whose value is wrong: only the check value
    can tell."""
    share = shamir.parse_share(text)
    wrong = bytes([share.value[0] ^ 1]) + share.value[1:]
    return shamir.format_share(
        shamir.Share(share.version, share.k, share.index, share.set_id, wrong)
    )


async def test_wrong_share_leaves_it_sealed_with_a_clear_error(
    vault_rt: tuple[Runtime, Initialised],
) -> None:
    runtime, init = vault_rt
    await unseal(runtime.rpc, init.shares[:2])
    key = (await runtime.rpc.call(kv.STATUS, kv.StatusRequest())).transport_public_key
    with pytest.raises(BadRequest) as err:
        await runtime.rpc.call(
            kv.UNSEAL, kv.UnsealRequest(sealed_share=seal_share(key, forged_share(init.shares[2])))
        )
    assert "do not reconstruct the root key" in err.value.message
    status = await runtime.rpc.call(kv.STATUS, kv.StatusRequest())
    assert status.state is kv.VaultState.sealed and status.progress == 0
    # The right shares still work afterwards.
    assert (await unseal(runtime.rpc, init.shares[2:])).state is kv.VaultState.unsealed
    await seal(runtime)


async def test_duplicate_garbage_and_misaddressed_shares_are_refused(
    vault_rt: tuple[Runtime, Initialised],
) -> None:
    runtime, init = vault_rt
    key = (await runtime.rpc.call(kv.STATUS, kv.StatusRequest())).transport_public_key
    first = seal_share(key, init.shares[0])
    await runtime.rpc.call(kv.UNSEAL, kv.UnsealRequest(sealed_share=first))
    with pytest.raises(BadRequest, match="already submitted"):
        await runtime.rpc.call(
            kv.UNSEAL, kv.UnsealRequest(sealed_share=seal_share(key, init.shares[0]))
        )
    garbage = [
        "",
        "not base64 at all!",
        base64.b64encode(b"x" * 80).decode(),
        seal_share(key, "mhs1-garbage"),
        seal_share(key, init.shares[1][:-3] + "AAA"),  # checksum fails
    ]
    for sealed in garbage:
        with pytest.raises(BadRequest):
            await runtime.rpc.call(kv.UNSEAL, kv.UnsealRequest(sealed_share=sealed))
    from nacl.public import PrivateKey

    from services.keyvault.sealedbox import public_key_b64

    other_key = public_key_b64(PrivateKey.generate().public_key)
    with pytest.raises(BadRequest, match="transport_public_key"):
        await runtime.rpc.call(
            kv.UNSEAL, kv.UnsealRequest(sealed_share=seal_share(other_key, init.shares[1]))
        )
    status = await runtime.rpc.call(kv.STATUS, kv.StatusRequest())
    assert status.state is kv.VaultState.sealed and status.progress == 1
    await seal(runtime)


async def test_seal_wipes_keys_and_refuses_operations(
    vault_rt: tuple[Runtime, Initialised],
) -> None:
    runtime, init = vault_rt
    await unseal(runtime.rpc, init.shares[:3])
    vault = vault_of(runtime)
    secrets = [k.secret for k in vault._keys.values()]
    assert secrets and not any(s.wiped for s in secrets)
    status = await runtime.rpc.call(kv.SEAL, kv.SealRequest(), principal=ADMIN)
    assert status.state is kv.VaultState.sealed
    assert all(s.wiped for s in secrets)
    assert all(bytes(s._buf) == bytes(32) for s in secrets)
    for method, request in [
        (kv.ENCRYPT, kv.EncryptRequest(rows=[ROW])),
        (kv.DECRYPT, kv.DecryptRequest(rows=[ROW])),
        (kv.MAC, kv.MacRequest(rows=[])),
        (kv.BLIND_INDEX, kv.BlindIndexRequest(queries=[])),
    ]:
        with pytest.raises(Sealed):
            await runtime.rpc.call(method, request)  # type: ignore[arg-type]


async def test_seal_and_rotate_are_for_administrators(
    vault_rt: tuple[Runtime, Initialised],
) -> None:
    runtime, _ = vault_rt
    for principal in (None, Principal(account_id="p", role=Role.physician)):
        with pytest.raises(Forbidden):
            await runtime.rpc.call(kv.SEAL, kv.SealRequest(), principal=principal)
        with pytest.raises(Forbidden):
            await runtime.rpc.call(kv.ROTATE, kv.RotateRequest(), principal=principal)


async def test_restart_is_sealed(
    kv_settings: Settings, vault_rt: tuple[Runtime, Initialised]
) -> None:
    runtime, init = vault_rt
    await unseal(runtime.rpc, init.shares[:3])
    async with keyvault_runtime(kv_settings) as second:
        status = await second.rpc.call(kv.STATUS, kv.StatusRequest(), instance=second.instance)
        assert status.state is kv.VaultState.sealed
        assert status.threshold == 3
    await seal(runtime)


async def test_rotate_adds_keys_and_retires_old_ones(
    vault_rt: tuple[Runtime, Initialised],
) -> None:
    runtime, init = vault_rt
    await unseal(runtime.rpc, init.shares[:3])
    before = await runtime.rpc.call(kv.ENCRYPT, kv.EncryptRequest(rows=[ROW] * 20))
    old_ids = {_key_id(r["family_name"]) for r in before.rows}
    reply = await runtime.rpc.call(
        kv.ROTATE, kv.RotateRequest(add=4, retire_existing=True), principal=ADMIN
    )
    assert len(reply.added) == 4 and old_ids <= set(reply.retired)
    after = await runtime.rpc.call(kv.ENCRYPT, kv.EncryptRequest(rows=[ROW] * 50))
    assert {_key_id(r["family_name"]) for r in after.rows} <= set(reply.added)
    status = await runtime.rpc.call(kv.STATUS, kv.StatusRequest())
    states = {k.key_id: k.state for k in status.keys}
    assert all(states[k] is kv.KeyState.retired for k in reply.retired)
    used = {k.key_id: k.use_count for k in status.keys}
    assert sum(used[k] for k in reply.added) == 50
    await seal(runtime)


async def test_keys_are_picked_uniformly_at_random_per_row(
    vault_rt: tuple[Runtime, Initialised],
) -> None:
    runtime, init = vault_rt
    await unseal(runtime.rpc, init.shares[:3])
    rows = [kv.FieldRow(table="t", row_id=str(i), fields={"a": "x", "b": "y"}) for i in range(400)]
    reply = await runtime.rpc.call(kv.ENCRYPT, kv.EncryptRequest(rows=rows))
    per_row = [{_key_id(v) for v in r.values()} for r in reply.rows]
    assert all(len(ids) == 1 for ids in per_row), "all fields of a row share one key"
    counts: dict[int, int] = {}
    for ids in per_row:
        (key_id,) = ids
        counts[key_id] = counts.get(key_id, 0) + 1
    active = [
        k.key_id
        for k in vault_of(runtime)._keys.values()
        if k.purpose == "data" and k.state == "active"
    ]
    assert set(counts) == set(active)  # 400 rows over the active keys: every key used
    await seal(runtime)


def _key_id(value: str) -> int:
    return ciphers.parse_field(base64.b64decode(value)).key_id
