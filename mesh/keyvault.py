"""The keyvault client every service uses: one batch per kind of operation per request.

A request collects every field of every row it needs into one `Batch` and makes one
DECRYPT (or ENCRYPT) call with it, never one call per field. Every row names whose it is
(its binding: the patient; for appointments also the physician; for chat the
conversation): the keyvault binds that into each ciphertext, and decrypts a row only for
a signed request whose grant names it (`contracts.grants`). DECRYPT and BLIND_INDEX
serve each signed request once, so a request makes each at most once; a row that does
not decrypt (moved or edited) comes back in `failed` without spoiling the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from contracts import fhirexport as fx
from contracts import keyvault as kv
from mesh.runtime import Runtime

Terms = Sequence[tuple[str, str]]
"""A blind-index query: one (field, value) term, or several for a compound token."""


@dataclass
class Batch:
    """Fields of many rows for one keyvault call (`add` returns the row's index in it) and,
    for a DECRYPT, row MACs to check in the same call (`check` returns the MAC's index)."""

    rows: list[kv.FieldRow] = field(default_factory=list)
    mac_rows: list[kv.MacRow] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    def add(self, table: str, row_id: str, fields: Mapping[str, str | None], **binding: str) -> int:
        """The row's fields (those not None), bound to `binding` (`patient=...`,
        `physician=...`, `conversation=...`); returns the row's index in the batch."""
        present = {k: v for k, v in fields.items() if v is not None}
        self.rows.append(
            kv.FieldRow(table=table, row_id=row_id, fields=present, binding=dict(binding))
        )
        return len(self.rows) - 1

    def check(self, row: kv.MacRow, tag: str) -> int:
        self.mac_rows.append(row)
        self.tags.append(tag)
        return len(self.mac_rows) - 1

    def copy(self) -> Batch:
        return Batch(list(self.rows), list(self.mac_rows), list(self.tags))


@dataclass(frozen=True)
class Decrypted:
    """Plaintext per row of a batch ({} for the rows in `failed`: they do not decrypt)."""

    rows: list[dict[str, str]]
    failed: frozenset[int]
    mac_valid: list[bool]


async def encrypt(runtime: Runtime, batch: Batch) -> list[dict[str, str]]:
    if not batch.rows:
        return []
    reply = await runtime.rpc.call(kv.ENCRYPT, kv.EncryptRequest(rows=batch.rows))
    return reply.rows


async def encrypt_row(
    runtime: Runtime, table: str, row_id: str, fields: Mapping[str, str], **binding: str
) -> dict[str, str]:
    """The ciphertexts of one row's fields (a batch of one)."""
    batch = Batch()
    batch.add(table, row_id, fields, **binding)
    (cipher,) = await encrypt(runtime, batch)
    return cipher


async def decrypt(
    runtime: Runtime,
    batch: Batch,
    *,
    countersigned: kv.Countersigned | None = None,
    export_page: tuple[str, str] | None = None,
) -> Decrypted:
    """Plaintext of every row of `batch`, with its MACs checked in the same keyvault call
    (none made when there is nothing to decrypt or check). `countersigned`: the other
    signed operation a `countersigned` grant needs (a bulk export's kick-off).
    `export_page`: (job id, page's first patient) of an approved bulk export, decrypted
    under its keyvault session instead of a user's signature."""
    if not batch.rows and not batch.mac_rows:
        return Decrypted([], frozenset(), [])
    if export_page is not None:
        job_id, first = export_page
        page = await runtime.rpc.call(
            fx.EXPORT_DECRYPT,
            fx.ExportDecryptRequest(
                job_id=job_id,
                page_first=first,
                rows=batch.rows,
                mac_rows=batch.mac_rows,
                mac_tags=batch.tags,
            ),
        )
        return Decrypted(page.rows, frozenset(page.failed), page.mac_valid)
    reply = await runtime.rpc.call(
        kv.DECRYPT,
        kv.DecryptRequest(
            rows=batch.rows,
            mac_rows=batch.mac_rows,
            mac_tags=batch.tags,
            countersigned=countersigned,
        ),
    )
    return Decrypted(reply.rows, frozenset(reply.failed), reply.mac_valid)


async def open_export_session(runtime: Runtime, countersigned: kv.Countersigned) -> None:
    """A DECRYPT of no rows: only has the keyvault check both signatures of a bulk
    export (the approval this call is made for, and the kick-off it countersigns) and
    open the job's session."""
    await runtime.rpc.call(kv.DECRYPT, kv.DecryptRequest(rows=[], countersigned=countersigned))


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
