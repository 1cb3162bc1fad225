"""A full dump of the keyvault's database holds no usable key.

The attacker's view: `mysqldump` of medihaven_keyvault, searched for the root key and
every unwrapped key, as raw bytes, hex (either case) and base64.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from contracts import keyvault as kv
from mesh.settings import Settings
from services.keyvault import shamir
from tests.conftest import isolated_settings
from tests.keyvault.support import unsealed_keyvault, vault_of
from tests.mesh.fixtures import client_runtime
from tests.support.dump import DUMP, dump


def encodings(secret: bytes) -> list[bytes]:
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret).rstrip(b"="),
    ]


@pytest.fixture(scope="module")
def dump_settings() -> Iterator[Settings]:
    with isolated_settings("kvdump") as settings:
        yield settings


@pytest.mark.skipif(DUMP is None, reason="mysqldump / mariadb-dump is not installed")
async def test_database_dump_holds_no_root_key_and_no_unwrapped_key(
    dump_settings: Settings,
) -> None:
    async with (
        unsealed_keyvault(dump_settings) as (runtime, init),
        client_runtime(dump_settings, "dump-records", "records") as records,
    ):
        # Encrypted through the bus by the table's owner, as records would.
        rows = [kv.FieldRow(table="patients", row_id=str(i), fields={"x": "y"}) for i in range(50)]
        await records.rpc.call(kv.ENCRYPT, kv.EncryptRequest(rows=rows))
        root = bytes(shamir.combine_shares([shamir.parse_share(s) for s in init.shares[:3]]))
        keys = [bytes(k.secret.reveal()) for k in vault_of(runtime)._keys.values()]
        assert len(keys) == 18
        dumps = [
            dump(dump_settings, dump_settings.database("keyvault")),
            dump(dump_settings, dump_settings.database("keyvault"), "--hex-blob"),
        ]
    assert all(b"vault_keys" in d for d in dumps)
    for secret in [root, *keys]:
        for form in encodings(secret):
            for d in dumps:
                assert form not in d
    # and no share either
    for share in init.shares:
        for d in dumps:
            assert share.encode() not in d
