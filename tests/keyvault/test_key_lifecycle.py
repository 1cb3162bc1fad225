"""Key lifecycle past rotation, on the real bus and database: a minimum decryption version
per purpose, destroying a key no row uses (proved by the last complete rewrap and every
owner's fresh scan, gone from a dump), rekeying the shares (old shares dead, new K-of-N,
no ciphertext changed) and rotating the root key (every key rewrapped, new shares,
handed over to the other replicas), each an administrator's own signed request."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from nacl.public import PrivateKey

from contracts import keyvault as kv
from contracts.base import Role
from mesh.errors import BadRequest, Conflict, Forbidden
from mesh.runtime import Runtime
from mesh.settings import Settings
from services.keyvault import lifecycle, store
from services.keyvault import vault as vault_module
from services.keyvault.sealedbox import public_key_b64, seal_share
from tests.conftest import isolated_settings
from tests.keyvault.lifecycle_support import (
    World,
    opened,
    owner_router,
    recipient,
    sealed_to,
    world,
)
from tests.keyvault.support import keyvault_runtime, vault_of
from tests.keyvault.test_dump import encodings
from tests.mesh.fixtures import client_runtime
from tests.support.dump import DUMP, dump

ROW = kv.FieldRow(
    table="patients", row_id="life-1", fields={"identity": "Ada"}, binding={"patient": "p1"}
)


@pytest.fixture(scope="module")
def life_settings() -> Iterator[Settings]:
    with isolated_settings("kvkeys") as settings:
        yield settings


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w(life_settings: Settings) -> AsyncIterator[World]:
    async with world(life_settings) as found:
        yield found


async def complete_run(w: World, usage: dict[str, dict[int, int]] | None = None) -> str:
    """A rewrap run that every owner reports done (with the given usage for records)."""
    status = await w.clinic.call(kv.REWRAP_START, kv.RewrapStartRequest(), await w.admin())
    assert status.run_id is not None
    for service, runtime in sorted(w.owners.items()):
        table = next(t for t, owner in kv.TABLE_OWNERS.items() if owner == service)
        counts = (usage or {}).get(service, {})
        reply = await runtime.rpc.call(
            kv.REWRAP_REPORT,
            kv.RewrapReportRequest(
                run_id=status.run_id,
                tables=[kv.TableProgress(table=table, usage=counts, done=True)],
                done=True,
            ),
        )
    assert reply.state is kv.RewrapState.complete
    return status.run_id


async def encrypted_row(w: World, row_id: str = ROW.row_id) -> tuple[kv.FieldRow, int]:
    plain = ROW.model_copy(update={"row_id": row_id})
    reply = await w.owners["records"].rpc.call(kv.ENCRYPT, kv.EncryptRequest(rows=[plain]))
    row = plain.model_copy(update={"fields": reply.rows[0]})
    key_id = int.from_bytes(base64.b64decode(reply.rows[0]["identity"])[1:5], "big")
    return row, key_id


async def test_minimum_decryption_version_on_every_replica_at_once(w: World) -> None:
    """Set on one replica, refused by the others with no wait for their periodic sync; a
    destroyed key is wiped from every replica likewise."""
    row, old_key = await encrypted_row(w)
    async with keyvault_runtime(w.settings) as other:
        await w.unseal(other, w.init.shares)
        assert (await vault_of(other).decrypt([row]))[0] == [{"identity": "Ada"}]
        rotated = await w.clinic.call(kv.ROTATE, kv.RotateRequest(add=2), await w.admin())
        await complete_run(w)
        minimum = kv.MinDecryptionRequest(purpose=kv.KeyPurpose.data, min_key_id=min(rotated.added))
        await w.clinic.call(kv.SET_MIN_DECRYPTION, minimum, await w.admin())
        for replica in (w.keyvault, other):
            assert (await vault_of(replica).decrypt([row]))[1] == [0], replica.instance
        destroyed = await w.clinic.call(
            kv.DESTROY_KEY, kv.DestroyKeyRequest(key_id=old_key), await w.admin()
        )
        assert destroyed.state is kv.KeyState.destroyed
        for replica in (w.keyvault, other):
            assert old_key in vault_of(replica).destroyed_keys, replica.instance
        lowered = kv.MinDecryptionRequest(purpose=kv.KeyPurpose.data, min_key_id=0)
        await w.clinic.call(kv.SET_MIN_DECRYPTION, lowered, await w.admin())
        # lowered again: what was refused decrypts again on both, the destroyed key never
        fresh, _ = await encrypted_row(w, "life-3")
        for replica in (w.keyvault, other):
            assert (await vault_of(replica).decrypt([fresh]))[0] == [{"identity": "Ada"}]
            assert (await vault_of(replica).decrypt([row]))[1] == [0]


async def test_minimum_decryption_version_refuses_older_keys_reversibly(w: World) -> None:
    row, old_key = await encrypted_row(w)
    rotated = await w.clinic.call(kv.ROTATE, kv.RotateRequest(add=2), await w.admin())
    minimum = min(rotated.added)
    request = kv.MinDecryptionRequest(purpose=kv.KeyPurpose.data, min_key_id=minimum)
    # nothing proves yet that no row needs the old keys: refused unless forced
    with pytest.raises(Conflict):
        await w.clinic.call(kv.SET_MIN_DECRYPTION, request, await w.admin())
    await complete_run(w, {"records": {old_key: 1}})
    with pytest.raises(Conflict, match="rows under keys"):
        await w.clinic.call(kv.SET_MIN_DECRYPTION, request, await w.admin())
    await complete_run(w)
    reply = await w.clinic.call(kv.SET_MIN_DECRYPTION, request, await w.admin())
    assert old_key in reply.refused_keys and reply.min_decryption[kv.KeyPurpose.data] == minimum
    assert (await w.vault.decrypt([row]))[1] == [0]  # refused, reported in `failed`
    status = await w.status(w.keyvault)
    assert status.min_decryption[kv.KeyPurpose.data] == minimum
    assert not next(k for k in status.keys if k.key_id == old_key).decrypts
    # not above an active key
    with pytest.raises(Conflict, match="active"):
        await w.clinic.call(
            kv.SET_MIN_DECRYPTION,
            kv.MinDecryptionRequest(purpose=kv.KeyPurpose.data, min_key_id=max(rotated.added) + 1),
            await w.admin(),
        )
    # lowered again: the old key decrypts again (nothing was destroyed)
    await w.clinic.call(
        kv.SET_MIN_DECRYPTION,
        kv.MinDecryptionRequest(purpose=kv.KeyPurpose.data, min_key_id=0),
        await w.admin(),
    )
    assert (await w.vault.decrypt([row]))[0] == [{"identity": "Ada"}]
    # a physician may not move it at all
    doctor = await w.clinic.add_staff("life-doctor", Role.physician)
    with pytest.raises(Forbidden):
        await w.clinic.call(kv.SET_MIN_DECRYPTION, request, doctor)


async def test_an_older_integrity_key_no_longer_verifies(w: World) -> None:
    mac_row = kv.MacRow(table="prescriptions", pk="rx-min", columns=[("status", "active")])
    (tag,) = await w.vault.mac([mac_row])
    rotated = await w.clinic.call(
        kv.ROTATE, kv.RotateRequest(purpose=kv.KeyPurpose.integrity), await w.admin()
    )
    (new,) = rotated.added
    await w.clinic.call(
        kv.SET_MIN_DECRYPTION,
        kv.MinDecryptionRequest(purpose=kv.KeyPurpose.integrity, min_key_id=new, force=True),
        await w.admin(),
    )
    assert await w.vault.verify_macs([mac_row], [tag]) == [False]
    (fresh,) = await w.vault.mac([mac_row])
    assert await w.vault.verify_macs([mac_row], [fresh]) == [True]
    # (forced: the staff rows, MAC'd under the old key, no longer verify either, so no
    # one can sign in; without `force` the last complete rewrap must have re-MAC'd them)
    admin = await w.admin()
    w.clinic.forget(admin.account_id)
    with pytest.raises(Exception, match="signing key"):
        await w.clinic.call(kv.REWRAP_STATUS, kv.RewrapStatusRequest(), admin)
    await vault_of(w.keyvault).set_min_versions("integrity", 0, None)
    w.clinic.forget(admin.account_id)


async def test_destroy_only_a_key_no_row_uses_and_gone_from_a_dump(w: World) -> None:
    row, key_id = await encrypted_row(w)
    admin = await w.admin()
    destroy = kv.DestroyKeyRequest(key_id=key_id)
    # active: refused
    with pytest.raises(Conflict, match="active"):
        await w.clinic.call(kv.DESTROY_KEY, destroy, admin)
    rotated = await w.clinic.call(kv.ROTATE, kv.RotateRequest(add=2), admin)
    # retired, but it still decrypts: refused until the minimum is above it
    with pytest.raises(Conflict, match="minimum decryption"):
        await w.clinic.call(kv.DESTROY_KEY, destroy, admin)
    await complete_run(w)
    await w.clinic.call(
        kv.SET_MIN_DECRYPTION,
        kv.MinDecryptionRequest(purpose=kv.KeyPurpose.data, min_key_id=min(rotated.added)),
        admin,
    )
    # the last rewrap counted it in use somewhere: refused
    await complete_run(w, {"records": {key_id: 3}})
    with pytest.raises(Conflict, match="rewrap"):
        await w.clinic.call(kv.DESTROY_KEY, destroy, admin)
    # the rewrap says none, but a fresh scan of one owner still finds a row: refused
    await complete_run(w)
    w.usage.set("scheduling", "appointments", {key_id: 1})
    with pytest.raises(Conflict, match="still use"):
        await w.clinic.call(kv.DESTROY_KEY, destroy, admin)
    # an owner that cannot scan (gone) proves nothing: refused
    await w.owners["chat"].stop()
    try:
        w.usage.set("scheduling", "appointments", {})
        with pytest.raises(Conflict, match="chat"):
            await w.clinic.call(kv.DESTROY_KEY, destroy, admin, timeout=30)
    finally:
        chat = await Runtime.start(
            "chat", w.settings, router=owner_router("chat", w.usage), use_database=False
        )
        w.stack.push_async_callback(chat.stop)
        w.owners["chat"] = chat
    (stored,) = await store.load_keys(w.vault.db, key_id)
    assert stored.wrapped is not None
    wrapped = stored.wrapped
    reply = await w.clinic.call(kv.DESTROY_KEY, destroy, admin)
    assert reply.state is kv.KeyState.destroyed and set(reply.checked) == kv.REWRAP_SERVICES
    (after,) = await store.load_keys(w.vault.db, key_id)
    assert after.state == "destroyed" and after.wrapped is None
    # its ciphertext is reported, never silently dropped
    plain, failed = await w.vault.decrypt([row])
    assert failed == [0] and plain == [{}]
    run = await w.clinic.call(kv.REWRAP_START, kv.RewrapStartRequest(), admin)
    assert run.run_id is not None
    moved = await w.owners["records"].rpc.call(
        kv.REWRAP,
        kv.RewrapRequest(
            run_id=run.run_id,
            rows=[
                kv.RewrapRow(
                    table=row.table, row_id=row.row_id, binding=row.binding, fields=row.fields
                )
            ],
        ),
    )
    assert moved.rows[0].error is not None and "destroyed" in moved.rows[0].error
    await w.clinic.call(kv.REWRAP_CANCEL, kv.RewrapCancelRequest(), admin)
    with pytest.raises(Conflict, match="destroyed already"):
        await w.clinic.call(kv.DESTROY_KEY, destroy, admin)
    if DUMP is not None:
        for form in (*encodings(wrapped),):
            for text in (
                dump(w.settings, w.settings.database("keyvault")),
                dump(w.settings, w.settings.database("keyvault"), "--hex-blob"),
            ):
                assert form not in text


async def submit(w: World, status: kv.CeremonyStatus, share: str) -> kv.CeremonyStatus:
    assert status.ceremony_id is not None and status.coordinator is not None
    return await w.clinic.call(
        kv.CEREMONY_SHARE,
        kv.CeremonyShareRequest(
            ceremony_id=status.ceremony_id,
            instance=status.coordinator,
            sealed_share=sealed_to(status, share),
        ),
        await w.admin(),
        instance=status.coordinator,
    )


async def ceremony(
    w: World, kind: kv.CeremonyKind, threshold: int, shares: int
) -> tuple[kv.CeremonyStatus, list[str]]:
    """Start a ceremony, submit K current shares; returns its status and the new shares."""
    key, public = recipient()
    started = await w.clinic.call(
        kv.CEREMONY_START,
        kv.CeremonyStartRequest(
            kind=kind, threshold=threshold, shares=shares, recipient_public_key=public
        ),
        await w.admin(),
        instance=w.keyvault.instance,
    )
    assert started.state is kv.CeremonyState.collecting
    assert started.coordinator == w.keyvault.instance
    status = started
    for share in w.init.shares[: started.required]:
        status = await submit(w, started, share)
    assert status.state is kv.CeremonyState.prepared
    return status, opened(key, status.sealed_shares)


async def commit(w: World, status: kv.CeremonyStatus, new_shares: list[str]) -> kv.CeremonyStatus:
    assert status.ceremony_id is not None and status.coordinator is not None
    return await w.clinic.call(
        kv.CEREMONY_COMMIT,
        kv.CeremonyCommitRequest(
            ceremony_id=status.ceremony_id,
            instance=status.coordinator,
            shares_digest=kv.ceremony_digest(status.ceremony_id, new_shares),
        ),
        await w.admin(),
        instance=status.coordinator,
    )


async def test_rekey_old_shares_dead_new_shares_unseal_no_ciphertext_changes(
    life_settings: Settings,
) -> None:
    with isolated_settings("kvrekey") as settings:
        async with world(settings) as w:
            row, _ = await encrypted_row(w)
            keys_before = {k.key_id: k.wrapped for k in await store.load_keys(w.vault.db)}
            admin = await w.admin()
            # a physician may not start one; one pending at a time
            doctor = await w.clinic.add_staff("rekey-doctor", Role.physician)
            _, public = recipient()
            start = kv.CeremonyStartRequest(
                kind=kv.CeremonyKind.rekey, threshold=2, shares=3, recipient_public_key=public
            )
            with pytest.raises(Forbidden):
                await w.clinic.call(kv.CEREMONY_START, start, doctor)
            status, new_shares = await ceremony(w, kv.CeremonyKind.rekey, 2, 3)
            assert len(new_shares) == 3 and not set(new_shares) & set(w.init.shares)
            with pytest.raises(Conflict, match="pending"):
                await w.clinic.call(kv.CEREMONY_START, start, admin)
            # prepared, not committed: the old shares still unseal a replica
            early = await w.replica()
            assert (await w.unseal(early, w.init.shares)).state is kv.VaultState.unsealed
            # a commit needs the digest of the new shares (only their recipient can make it)
            with pytest.raises(Forbidden):
                await commit(w, status, ["mhs1-not-the-shares"])
            committed = await commit(w, status, new_shares)
            assert committed.state is kv.CeremonyState.committed
            assert committed.sealed_shares == []  # dropped from the database
            # a sealed replica: the old shares are refused, K-1 new ones leave it sealed
            other = await w.replica()
            with pytest.raises(BadRequest):
                await w.unseal(other, w.init.shares)
            assert (await w.status(other)).state is kv.VaultState.sealed
            first = await w.tool.rpc.call(
                kv.UNSEAL,
                kv.UnsealRequest(
                    sealed_share=seal_share(
                        (await w.status(other)).transport_public_key, new_shares[0]
                    )
                ),
                instance=other.instance,
            )
            assert first.state is kv.VaultState.sealed and first.threshold == 2
            assert (await w.unseal(other, new_shares[1:2])).state is kv.VaultState.unsealed
            # no field ciphertext (and no wrapped key) changed; the data decrypts everywhere
            keys_after = {k.key_id: k.wrapped for k in await store.load_keys(w.vault.db)}
            assert keys_after == keys_before
            for replica in (w.keyvault, early, other):
                assert (await vault_of(replica).decrypt([row]))[0] == [{"identity": "Ada"}]
            # the replica unsealed with old shares before the commit keeps working: it holds
            # the same root key (a rekey changes only what the shares rebuild)
            assert (await w.status(early)).state is kv.VaultState.unsealed


async def test_ceremony_shares_go_to_the_coordinator_sealed_to_it(
    life_settings: Settings,
) -> None:
    with isolated_settings("kvcerem") as settings:
        async with world(settings) as w:
            other = await w.replica()
            await w.unseal(other, w.init.shares)
            _, public = recipient()
            started = await w.clinic.call(
                kv.CEREMONY_START,
                kv.CeremonyStartRequest(
                    kind=kv.CeremonyKind.rotate_root, recipient_public_key=public
                ),
                await w.admin(),
                instance=w.keyvault.instance,
            )
            assert started.ceremony_id is not None
            share = w.init.shares[0]
            # to another replica than the coordinator: refused there
            with pytest.raises(BadRequest, match="coordinated"):
                await w.clinic.call(
                    kv.CEREMONY_SHARE,
                    kv.CeremonyShareRequest(
                        ceremony_id=started.ceremony_id,
                        instance=other.instance,
                        sealed_share=seal_share(vault_of(other).transport_public_key(), share),
                    ),
                    await w.admin(),
                    instance=other.instance,
                )
            # sealed to another key than the coordinator's: it cannot be opened
            stranger = public_key_b64(PrivateKey.generate().public_key)
            with pytest.raises(BadRequest, match="opened"):
                await w.clinic.call(
                    kv.CEREMONY_SHARE,
                    kv.CeremonyShareRequest(
                        ceremony_id=started.ceremony_id,
                        instance=w.keyvault.instance,
                        sealed_share=seal_share(stranger, share),
                    ),
                    await w.admin(),
                    instance=w.keyvault.instance,
                )
            # a share of another set (a made-up one) is refused and changes nothing
            with pytest.raises(BadRequest):
                await submit(w, started, "mhs1-AAAA")
            cancelled = await w.clinic.call(
                kv.CEREMONY_CANCEL,
                kv.CeremonyCancelRequest(ceremony_id=started.ceremony_id),
                await w.admin(),
            )
            assert cancelled.state is kv.CeremonyState.cancelled
            with pytest.raises(Conflict):
                await submit(w, started, share)


async def test_a_coordinator_lost_mid_ceremony_changes_nothing_and_is_cancelled(
    life_settings: Settings,
) -> None:
    """The shares given and the prepared root key live only in the coordinator's memory
    (never at rest): if it dies, the ceremony cannot be finished anywhere, nothing has
    changed, and an administrator cancels it from any replica and starts again."""
    with isolated_settings("kvlost") as settings:
        async with world(settings) as w:
            row, _ = await encrypted_row(w)
            key, public = recipient()
            async with keyvault_runtime(settings) as coordinator:
                await w.unseal(coordinator, w.init.shares)
                started = await w.clinic.call(
                    kv.CEREMONY_START,
                    kv.CeremonyStartRequest(
                        kind=kv.CeremonyKind.rotate_root,
                        threshold=2,
                        shares=3,
                        recipient_public_key=public,
                    ),
                    await w.admin(),
                    instance=coordinator.instance,
                )
                assert started.coordinator == coordinator.instance and started.required
                status = started
                for share in w.init.shares[: started.required]:
                    status = await submit(w, started, share)
                assert status.state is kv.CeremonyState.prepared
                never_committed = opened(key, status.sealed_shares)
            # the coordinator is gone, its prepared root key with it; the ceremony waits
            assert started.ceremony_id is not None
            pending = await w.clinic.call(
                kv.CEREMONY_STATUS, kv.CeremonyStatusRequest(), await w.admin()
            )
            assert pending.state is kv.CeremonyState.prepared
            assert pending.coordinator == coordinator.instance
            # no other replica can commit it (it never held the new root key)
            with pytest.raises(BadRequest, match="coordinated"):
                await w.clinic.call(
                    kv.CEREMONY_COMMIT,
                    kv.CeremonyCommitRequest(
                        ceremony_id=started.ceremony_id,
                        instance=w.keyvault.instance,
                        shares_digest=kv.ceremony_digest(started.ceremony_id, never_committed),
                    ),
                    await w.admin(),
                    instance=w.keyvault.instance,
                )
            # nothing changed: the old shares unseal a new replica, the new ones do not
            third = await w.replica()
            with pytest.raises(BadRequest):
                await w.unseal(third, never_committed[:2])
            assert (await w.unseal(third, w.init.shares)).state is kv.VaultState.unsealed
            assert (await vault_of(third).decrypt([row]))[0] == [{"identity": "Ada"}]
            # another one waits until it is cancelled, from any replica; then it can start
            with pytest.raises(Conflict, match="pending"):
                await ceremony(w, kv.CeremonyKind.rotate_root, 2, 3)
            cancelled = await w.clinic.call(
                kv.CEREMONY_CANCEL,
                kv.CeremonyCancelRequest(ceremony_id=started.ceremony_id),
                await w.admin(),
            )
            assert cancelled.state is kv.CeremonyState.cancelled
            status, new_shares = await ceremony(w, kv.CeremonyKind.rotate_root, 2, 3)
            assert (await commit(w, status, new_shares)).state is kv.CeremonyState.committed
            fourth = await w.replica()
            assert (await w.unseal(fourth, new_shares[:2])).state is kv.VaultState.unsealed
            assert (await vault_of(fourth).decrypt([row]))[0] == [{"identity": "Ada"}]


async def test_root_rotation_rewraps_every_key_and_hands_it_over(
    life_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with isolated_settings("kvroot") as settings:
        async with world(settings) as w:
            row, _ = await encrypted_row(w)
            other = await w.replica()
            await w.unseal(other, w.init.shares)
            before = {k.key_id: k.wrapped for k in await store.load_keys(w.vault.db)}
            status, new_shares = await ceremony(w, kv.CeremonyKind.rotate_root, 3, 5)
            committed = await commit(w, status, new_shares)
            assert committed.state is kv.CeremonyState.committed
            assert committed.generation == 1 and other.instance in (committed.message or "")
            after = {k.key_id: k.wrapped for k in await store.load_keys(w.vault.db)}
            assert set(after) == set(before)
            assert all(after[k] != before[k] for k in before)  # every key rewrapped
            # the other replica took the new root key: it serves, and new keys work on both
            assert vault_of(other).generation == 1
            rotated = await w.clinic.call(kv.ROTATE, kv.RotateRequest(add=2), await w.admin())
            await vault_of(other).sync_keys()
            fresh = await vault_of(other).encrypt([ROW.model_copy(update={"row_id": "life-2"})])
            assert int.from_bytes(base64.b64decode(fresh[0]["identity"])[1:5], "big") in (
                rotated.added
            )
            for replica in (w.keyvault, other):
                assert (await vault_of(replica).decrypt([row]))[0] == [{"identity": "Ada"}]
            # a new replica: the old shares are refused, the new ones unseal it, data intact
            third = await w.replica()
            with pytest.raises(BadRequest):
                await w.unseal(third, w.init.shares)
            assert (await w.unseal(third, new_shares[:3])).state is kv.VaultState.unsealed
            assert (await vault_of(third).decrypt([row]))[0] == [{"identity": "Ada"}]
            # the handover only from a keyvault, only made with the replica's own root key
            async with client_runtime(settings, "root-outsider", "records") as records:
                with pytest.raises(Forbidden):
                    await records.rpc.call(
                        kv.ADOPT_ROOT,
                        kv.AdoptRootRequest(generation=2, sealed_root="x"),
                        instance=third.instance,
                    )
            forged = seal_share(vault_of(third).transport_public_key(), "AAAA")
            with pytest.raises((Forbidden, Conflict)):
                await vault_of(third).adopt_root(1 + vault_of(third).generation, forged)
            # a replica the new root never reaches seals itself after the grace period
            monkeypatch.setattr(lifecycle, "_hand_over", _no_handover)
            monkeypatch.setattr(vault_module, "HANDOVER_GRACE_S", 0.0)
            w.init.shares[:] = new_shares
            status, newer = await ceremony(w, kv.CeremonyKind.rotate_root, 3, 5)
            await commit(w, status, newer)
            await vault_of(third).sync_keys()
            await vault_of(third).sync_keys()
            assert vault_of(third).state is kv.VaultState.sealed
            assert (await w.unseal(third, newer[:3])).state is kv.VaultState.unsealed


async def _no_handover(*args: object) -> list[str]:
    return []
