"""The records service's keyvault calls: one batch per kind of operation per request.

A request collects every field of every row it needs into one `Batch` and makes one
DECRYPT (or ENCRYPT) call with it, never one call per field. DECRYPT and BLIND_INDEX are
served only on the acting user's forwarded request signature (the keyvault checks it),
so reads always make their DECRYPT call, even with nothing to decrypt: that call is
what proves the caller signed the request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from contracts import keyvault as kv
from mesh.runtime import Runtime

Terms = Sequence[tuple[str, str]]
"""A blind-index query: one (field, value) term, or several for a compound token."""


@dataclass
class Batch:
    """Fields of many rows for one keyvault call; `add` returns the row's index in it."""

    rows: list[kv.FieldRow] = field(default_factory=list)

    def add(self, table: str, row_id: str, fields: dict[str, str | None]) -> int:
        present = {k: v for k, v in fields.items() if v is not None}
        self.rows.append(kv.FieldRow(table=table, row_id=row_id, fields=present))
        return len(self.rows) - 1


async def encrypt(runtime: Runtime, batch: Batch) -> list[dict[str, str]]:
    if not batch.rows:
        return []
    reply = await runtime.rpc.call(kv.ENCRYPT, kv.EncryptRequest(rows=batch.rows))
    return reply.rows


async def decrypt(
    runtime: Runtime, batch: Batch, patient_id: str | None = None
) -> list[dict[str, str]]:
    """Plaintext of every row of `batch`; always asks (the signature check), see above."""
    reply = await runtime.rpc.call(
        kv.DECRYPT, kv.DecryptRequest(rows=batch.rows, patient_id=patient_id)
    )
    return reply.rows


async def decrypt_verified(
    runtime: Runtime,
    batch: Batch,
    patient_id: str | None,
    mac_rows: Sequence[kv.MacRow],
    tags: Sequence[str],
) -> tuple[list[dict[str, str]], list[bool]]:
    """`decrypt`, with the MACs of `mac_rows` checked in the same keyvault call."""
    reply = await runtime.rpc.call(
        kv.DECRYPT,
        kv.DecryptRequest(
            rows=batch.rows, patient_id=patient_id, mac_rows=list(mac_rows), mac_tags=list(tags)
        ),
    )
    return reply.rows, reply.mac_valid


async def blind_index(runtime: Runtime, queries: Sequence[Terms]) -> list[str]:
    request = kv.BlindIndexRequest(
        queries=[
            kv.BlindIndexQuery(terms=[kv.BlindIndexTerm(field=f, value=v) for f, v in terms])
            for terms in queries
        ]
    )
    return (await runtime.rpc.call(kv.BLIND_INDEX, request)).tokens


async def mac(runtime: Runtime, rows: Sequence[kv.MacRow]) -> list[str]:
    return (await runtime.rpc.call(kv.MAC, kv.MacRequest(rows=list(rows)))).tags


async def verify_macs(
    runtime: Runtime, rows: Sequence[kv.MacRow], tags: Sequence[str]
) -> list[bool]:
    if not rows:
        return []
    reply = await runtime.rpc.call(
        kv.VERIFY_MAC, kv.VerifyMacRequest(rows=list(rows), tags=list(tags))
    )
    return reply.valid
