"""An auditor's check of every database, with K shares and nothing else: rebuild the root
key from the shares and the keyvault's database, unwrap every key, then read every row
each service declares for the rewrap (`services/<name>/rewrap.py`) and check that every
ciphertext is under an active key, in the current envelope, decrypts in its own context,
every MAC'd row verifies under the active integrity key, and no (key, nonce) pair appears
twice anywhere."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from mesh.db import Database
from mesh.rewrap import RewrapJob, Table
from mesh.settings import Settings
from services.audit.rewrap import JOB as AUDIT
from services.auth.rewrap import JOB as AUTH
from services.chat.rewrap import JOB as CHAT
from services.keyvault import ciphers, shamir, store
from services.records.rewrap import JOB as RECORDS
from services.scheduling.rewrap import JOB as SCHEDULING

JOBS: tuple[RewrapJob, ...] = (AUTH, RECORDS, SCHEDULING, CHAT, AUDIT)


@dataclass
class Findings:
    rows: dict[str, int] = field(default_factory=dict)
    fields: int = 0
    macs: int = 0
    problems: list[str] = field(default_factory=list)
    under: dict[int, int] = field(default_factory=dict)
    """Key id -> fields and tags under it."""


@dataclass
class Keys:
    aeads: dict[int, ChaCha20Poly1305]
    states: dict[int, tuple[str, str]]
    """Key id -> (purpose, state)."""

    def active(self, purpose: str) -> set[int]:
        return {k for k, (p, s) in self.states.items() if p == purpose and s == "active"}


async def keys_from_shares(settings: Settings, shares: Sequence[str]) -> Keys:
    database = await Database.connect(settings, settings.database("keyvault"))
    try:
        meta = await store.load_meta(database)
        stored = await store.load_keys(database)
    finally:
        await database.close()
    assert meta is not None
    secret = ciphers.SecretKey.adopt(shamir.combine_shares([shamir.parse_share(s) for s in shares]))
    assert ciphers.check_root_key(secret, meta.check_value), "the shares are not current"
    root = secret
    if meta.wrapped_root is not None:
        root = ciphers.SecretKey.adopt(
            ciphers.unwrap_key(secret.aead(), 0, "root", meta.wrapped_root)
        )
    root_aead = root.aead()
    aeads = {
        k.key_id: ChaCha20Poly1305(
            bytes(ciphers.unwrap_key(root_aead, k.key_id, k.purpose, k.wrapped))  # type: ignore[arg-type]
        )
        for k in stored
        if k.wrapped is not None
    }
    return Keys(aeads, {k.key_id: (k.purpose, k.state) for k in stored})


async def check_every_database(settings: Settings, shares: Sequence[str]) -> Findings:
    keys = await keys_from_shares(settings, shares)
    found = Findings()
    seen: set[tuple[int, bytes]] = set()
    for job in JOBS:
        database = await Database.connect(settings, settings.database(job.service))
        try:
            for table in job.tables:
                await _check_table(database, table, keys, found, seen)
        finally:
            await database.close()
    return found


async def _check_table(
    database: Database,
    table: Table,
    keys: Keys,
    found: Findings,
    seen: set[tuple[int, bytes]],
) -> None:
    cols = ", ".join(f"`{c}`" for c in table.columns)
    rows = await database.fetchall(f"SELECT {cols} FROM `{table.name}`")
    found.rows[table.name] = len(rows)
    data, integrity = keys.active("data"), keys.active("integrity")
    for values in rows:
        row = dict(zip(table.columns, values, strict=True))
        request = table.request(row, False)
        where = f"{table.name} {request.row_id}"
        for column, value in request.fields.items():
            blob = base64.b64decode(value)
            parsed = ciphers.parse_field(blob)
            found.fields += 1
            found.under[parsed.key_id] = found.under.get(parsed.key_id, 0) + 1
            if parsed.version != ciphers.FIELD_VERSION:
                found.problems.append(f"{where} {column}: envelope {parsed.version}")
            if parsed.key_id not in data:
                found.problems.append(f"{where} {column}: under key {parsed.key_id}")
            if (parsed.key_id, parsed.nonce) in seen:
                found.problems.append(f"{where} {column}: (key, nonce) repeated")
            seen.add((parsed.key_id, parsed.nonce))
            context = ciphers.FieldContext(
                table.logical, column, request.row_id, tuple(sorted(request.binding.items()))
            )
            aead = keys.aeads.get(parsed.key_id)
            try:
                assert aead is not None
                ciphers.decrypt_field(aead, blob, context)
            except (AssertionError, ciphers.KeyvaultCryptoError):
                found.problems.append(f"{where} {column}: does not decrypt")
        if request.mac is not None:
            tag = base64.b64decode(request.mac.tag)
            parsed = ciphers.parse_mac(tag)
            found.macs += 1
            found.under[parsed.key_id] = found.under.get(parsed.key_id, 0) + 1
            if parsed.key_id not in integrity:
                found.problems.append(f"{where}: MAC under key {parsed.key_id}")
            if (parsed.key_id, parsed.nonce) in seen:
                found.problems.append(f"{where}: MAC (key, nonce) repeated")
            seen.add((parsed.key_id, parsed.nonce))
            mac_row = request.mac.row
            digest = ciphers.row_digest(
                ciphers.canonical_row(mac_row.table, mac_row.pk, mac_row.columns)
            )
            aead = keys.aeads.get(parsed.key_id)
            if aead is None or not ciphers.verify_mac(aead, tag, mac_row.table, mac_row.pk, digest):
                found.problems.append(f"{where}: MAC does not verify")
