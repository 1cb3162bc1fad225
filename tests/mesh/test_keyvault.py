"""`mesh.keyvault`, the keyvault client every service uses: batches, bindings, one call
per kind, and nothing asked of the keyvault when there is nothing to ask."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest

from contracts import keyvault as kv
from mesh import keyvault
from mesh.runtime import Runtime
from mesh.settings import Settings
from tests.conftest import isolated_settings
from tests.keyvault.support import unsealed_keyvault
from tests.mesh.fixtures import client_runtime


def test_a_batch_drops_absent_fields_and_binds_each_row_as_told() -> None:
    batch = keyvault.Batch()
    first = batch.add("patients", "p1", {"name": "Ada", "phone": None}, patient="p1")
    second = batch.add("appointments", "a1", {"reason": "cough"}, patient="p1", physician="d1")
    third = batch.add("messages", "m1", {"text": "hi"}, conversation="c1")
    assert (first, second, third) == (0, 1, 2)
    assert batch.rows[0].fields == {"name": "Ada"}
    assert [r.binding for r in batch.rows] == [
        {"patient": "p1"},
        {"patient": "p1", "physician": "d1"},
        {"conversation": "c1"},
    ]


def test_a_copy_is_its_own_batch() -> None:
    batch = keyvault.Batch()
    batch.add("patients", "p1", {"name": "Ada"}, patient="p1")
    copy = batch.copy()
    copy.add("patients", "p2", {"name": "Bob"}, patient="p2")
    assert len(batch.rows) == 1 and len(copy.rows) == 2


class NoBus:
    """A runtime whose every keyvault call fails the test."""

    class rpc:
        @staticmethod
        async def call(*_: Any, **__: Any) -> Any:
            raise AssertionError("the keyvault was asked although there was nothing to ask")


async def test_nothing_to_encrypt_or_decrypt_asks_the_keyvault_nothing() -> None:
    runtime = cast(Runtime, NoBus())
    assert await keyvault.encrypt(runtime, keyvault.Batch()) == []
    empty = await keyvault.decrypt(runtime, keyvault.Batch())
    assert empty.rows == [] and empty.failed == frozenset() and empty.mac_valid == []
    assert await keyvault.verify_macs(runtime, [], []) == []


@pytest.fixture(scope="module")
def kv_settings() -> Iterator[Settings]:
    with isolated_settings("meshkv") as settings:
        yield settings


async def test_one_row_and_a_batch_are_encrypted_bound_to_their_row(kv_settings: Settings) -> None:
    """Through a real keyvault, as records: each field's ciphertext is bound to its table,
    column, row and binding (the keyvault's format), one call for the whole batch."""
    async with (
        unsealed_keyvault(kv_settings),
        client_runtime(kv_settings, "meshkv-records", "records") as records,
    ):
        one = await keyvault.encrypt_row(
            records, "patients", "p1", {"given_name": "Ada"}, patient="p1"
        )
        assert set(one) == {"given_name"} and "Ada" not in one["given_name"]
        batch = keyvault.Batch()
        batch.add("patients", "p2", {"given_name": "Bob", "phone": None}, patient="p2")
        batch.add("patients", "p3", {"given_name": "Cy"}, patient="p3")
        two, three = await keyvault.encrypt(records, batch)
        assert set(two) == {"given_name"} and set(three) == {"given_name"}
        assert len({one["given_name"], two["given_name"], three["given_name"]}) == 3
        # the same plaintext under another row is another ciphertext (fresh nonce, other AAD)
        again = await keyvault.encrypt_row(
            records, "patients", "p9", {"given_name": "Ada"}, patient="p9"
        )
        assert again["given_name"] != one["given_name"]
        tags = await keyvault.mac(
            records, [kv.MacRow(table="patients", pk="p1", columns=[("x", "1")])]
        )
        assert await keyvault.verify_macs(
            records, [kv.MacRow(table="patients", pk="p1", columns=[("x", "1")])], tags
        ) == [True]
        assert await keyvault.verify_macs(
            records, [kv.MacRow(table="patients", pk="p1", columns=[("x", "2")])], tags
        ) == [False]
