"""Nonce uniqueness under pressure: two keyvault processes, one killed half-way.

Two replicas encrypt 50,000 fields between them while one is SIGKILLed half-way and
restarted; afterwards no (key, nonce) pair appears twice across every ciphertext made,
and no two leased counter blocks overlap.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts import keyvault as kv
from contracts.base import OPERATOR
from mesh.db import Database
from mesh.errors import RpcError
from mesh.settings import Settings
from services.keyvault import ciphers
from tests.conftest import isolated_settings
from tests.keyvault.support import initialise, unseal
from tests.mesh.fixtures import client_runtime
from tests.processes import Process

TOTAL_FIELDS = 50_000
BATCH_ROWS = 250  # two fields per row: 500 fields per call
FIELDS_PER_ROW = 2


@pytest.fixture(scope="module")
def nonce_settings() -> Iterator[Settings]:
    with isolated_settings("kvnonce") as settings:
        # Small blocks, so both replicas lease many blocks and a kill abandons one.
        yield settings


def start_replica(settings: Settings, tmp_path: Path) -> Process:
    proc = Process("services.keyvault", settings, tmp_path, MEDIHAVEN_KEYVAULT_BLOCK_SIZE="2000")
    proc.wait_ready()
    return proc


async def unseal_all(client_rpc, shares: list[str], count: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(50):
        replies = await client_rpc.gather(kv.STATUS, kv.StatusRequest(), window_s=0.3)
        statuses = [r for r in replies if isinstance(r, kv.StatusReply)]
        for status in statuses:
            if status.state is kv.VaultState.sealed:
                await unseal(client_rpc, shares, instance=status.instance)
        if len(statuses) >= count and all(s.state is kv.VaultState.unsealed for s in statuses):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("replicas did not all unseal")


async def test_no_nonce_reuse_across_replicas_and_a_crash(
    nonce_settings: Settings, tmp_path: Path
) -> None:
    settings = nonce_settings
    first = start_replica(settings, tmp_path)
    second = start_replica(settings, tmp_path)
    procs = [first, second]
    try:
        # The operator initialises and unseals; records (the owner of the `patients`
        # table) is the one who may have its rows encrypted.
        async with (
            client_runtime(settings, "nonce-operator", OPERATOR) as operator,
            client_runtime(settings, "nonce-records", "records") as client,
        ):
            init = await initialise(operator.rpc)
            await unseal_all(operator.rpc, init.shares, 2)
            ciphertexts: list[str] = []
            batches = TOTAL_FIELDS // (BATCH_ROWS * FIELDS_PER_ROW)
            done = 0

            async def encrypt_batch(n: int) -> None:
                rows = [
                    kv.FieldRow(
                        table="patients", row_id=f"{n}-{i}", fields={"a": "alpha", "b": "beta"}
                    )
                    for i in range(BATCH_ROWS)
                ]
                for _ in range(20):  # a batch lost with the killed replica is retried
                    try:
                        reply = await client.rpc.call(
                            kv.ENCRYPT, kv.EncryptRequest(rows=rows), timeout=3
                        )
                    except RpcError:
                        await asyncio.sleep(0.2)
                        continue
                    ciphertexts.extend(v for r in reply.rows for v in r.values())
                    return
                raise AssertionError(f"batch {n} never succeeded")

            replacement_ready = asyncio.Event()

            async def worker(start: int) -> None:
                nonlocal done
                for n in range(start, batches, 4):
                    if done >= batches * 0.6:
                        # The survivor carried on alone for a while; the last 40 % is
                        # shared with the restarted replica.
                        await replacement_ready.wait()
                    await encrypt_batch(n)
                    done += 1

            workers = asyncio.gather(*(worker(s) for s in range(4)))
            while done < batches // 2:
                await asyncio.sleep(0.02)
            first.stop(signal.SIGKILL)
            replacement = await asyncio.to_thread(start_replica, settings, tmp_path)
            procs.append(replacement)
            await unseal_all(operator.rpc, init.shares, 2)
            replacement_ready.set()
            await workers
    finally:
        for proc in procs:
            proc.stop()

    assert len(ciphertexts) >= TOTAL_FIELDS
    pairs = set()
    for value in ciphertexts:
        parsed = ciphers.parse_field(base64.b64decode(value))
        pairs.add((parsed.key_id, parsed.nonce))
    assert len(pairs) == len(ciphertexts), "a (key, nonce) pair was used twice"

    database = await Database.connect(settings, settings.database("keyvault"))
    try:
        leases = await database.fetchall(
            "SELECT key_id, start_counter, end_counter, instance FROM nonce_leases "
            "ORDER BY key_id, start_counter"
        )
    finally:
        await database.close()
    assert len({row[3] for row in leases}) == 3, "both replicas and the replacement leased"
    for (key_a, _, end_a, _), (key_b, start_b, _, _) in itertools.pairwise(leases):
        if key_a == key_b:
            assert end_a <= start_b, "two leased blocks overlap"
    # every nonce used lies inside a block leased by someone
    blocks: dict[int, list[tuple[int, int]]] = {}
    for key_id, start, end, _ in leases:
        blocks.setdefault(int(key_id), []).append((int(start), int(end)))
    for key_id, nonce in pairs:
        counter = int.from_bytes(nonce[4:], "big")
        assert any(s <= counter < e for s, e in blocks[key_id])
