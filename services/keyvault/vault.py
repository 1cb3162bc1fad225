"""The keyvault's state in memory: sealed or unsealed, and the keys while unsealed.

Only this object ever holds the root key and unwrapped keys, each in a `SecretKey`
(a bytearray zeroed on seal) with one cached AEAD object per key. Nonces come from
blocks of counters leased in the database before use (see `store.lease_counters`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from nacl.public import PrivateKey

from contracts.keyvault import (
    BlindIndexQuery,
    FieldRow,
    KeyInfo,
    KeyPurpose,
    KeyState,
    MacRow,
    VaultState,
)
from mesh.db import Database, is_duplicate_key
from mesh.errors import BadRequest, Conflict, IntegrityError, Sealed
from mesh.logging import get_logger
from services.keyvault import ciphers, shamir, store
from services.keyvault.sealedbox import SealedShareError, new_transport_key, open_share

log = get_logger("keyvault.vault")

DATA_KEYS = 16
NONCE_PREFIX_BYTES = 4


@dataclass
class LiveKey:
    """An unwrapped key with its cached AEAD and this replica's current nonce block."""

    key_id: int
    purpose: str
    state: str
    secret: ciphers.SecretKey
    aead: ChaCha20Poly1305
    prefix: bytes
    block: ciphers.NonceBlock | None = None
    lease_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def wipe(self) -> None:
        self.secret.wipe()
        self.block = None


def b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{what} is not valid base64") from None


def b64encode(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


class Vault:
    """Lifecycle (uninitialised → sealed → unsealed) and every cryptographic operation."""

    def __init__(self, database: Database, instance: str, *, block_size: int = 65536) -> None:
        self.db = database
        self.instance = instance
        self.block_size = block_size
        self.transport: PrivateKey = new_transport_key()
        self.meta: store.VaultMeta | None = None
        self._root: ciphers.SecretKey | None = None
        self._root_aead: ChaCha20Poly1305 | None = None
        self._keys: dict[int, LiveKey] = {}
        self._active_data: list[int] = []
        self._shares: list[shamir.Share] = []
        self._uses: dict[int, int] = {}
        self._lifecycle = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle

    @property
    def state(self) -> VaultState:
        if self.meta is None:
            return VaultState.uninitialized
        return VaultState.unsealed if self._root is not None else VaultState.sealed

    @property
    def progress(self) -> int:
        return len(self._shares)

    async def load(self) -> None:
        """Read the metadata (every start is sealed: nothing secret is read)."""
        self.meta = await store.load_meta(self.db)

    async def initialise(self, threshold: int, shares: int) -> list[str]:
        """Make the root key and the first keys; return the N shares (never stored)."""
        async with self._lifecycle:
            await self.load()
            if self.meta is not None:
                raise Conflict("the keyvault is already initialised")
            set_id = secrets.token_bytes(shamir.SET_ID_BYTES)
            root = ciphers.SecretKey.generate()
            try:
                try:
                    share_texts = shamir.split_root_key(root.reveal(), threshold, shares, set_id)
                except ValueError as exc:
                    raise BadRequest(str(exc)) from None
                root_aead = root.aead()
                meta = store.VaultMeta(threshold, shares, set_id, ciphers.make_check_value(root))
                purposes = ["data"] * DATA_KEYS + ["integrity", "blind_index"]
                keys = [
                    self._new_stored_key(root_aead, key_id, purpose)
                    for key_id, purpose in enumerate(purposes, start=1)
                ]
                try:
                    await store.save_initialisation(self.db, meta, keys)
                except Exception as exc:
                    if is_duplicate_key(exc):
                        raise Conflict("the keyvault is already initialised") from None
                    raise
            finally:
                root.wipe()
            self.meta = meta
            log.info("keyvault.initialised", threshold=threshold, shares=shares)
            return share_texts

    def _new_stored_key(
        self, root_aead: ChaCha20Poly1305, key_id: int, purpose: str
    ) -> store.StoredKey:
        key = ciphers.SecretKey.generate()
        try:
            wrapped = ciphers.wrap_key(root_aead, key_id, purpose, key)  # type: ignore[arg-type]
        finally:
            key.wipe()
        prefix = secrets.token_bytes(NONCE_PREFIX_BYTES)
        return store.StoredKey(key_id, purpose, "active", wrapped, prefix, 0)

    async def submit_share(self, sealed_share: str) -> None:
        """Take one sealed share; after K of them, unseal if the check value agrees."""
        async with self._lifecycle:
            await self.load()
            if self.meta is None:
                raise BadRequest("the keyvault is not initialised yet")
            if self._root is not None:
                return
            try:
                text = open_share(self.transport, sealed_share)
            except SealedShareError as exc:
                raise BadRequest(
                    f"the share could not be opened ({exc}); it must be sealed to this "
                    "replica's transport_public_key"
                ) from None
            try:
                share = shamir.parse_share(text, set_id=self.meta.set_id)
            except shamir.ShareFormatError as exc:
                raise BadRequest(f"share refused: {exc.reason}") from None
            if any(s.index == share.index for s in self._shares):
                raise BadRequest(f"share {share.index} was already submitted")
            self._shares.append(share)
            if len(self._shares) < self.meta.threshold:
                return
            shares, self._shares = self._shares, []
            try:
                root = ciphers.SecretKey.adopt(shamir.combine_shares(shares))
            except shamir.ShareCombineError as exc:
                raise BadRequest(f"the shares do not combine ({exc}); progress reset") from None
            if not ciphers.check_root_key(root, self.meta.check_value):
                root.wipe()
                raise BadRequest(
                    "the shares do not reconstruct the root key (a wrong or corrupt share); "
                    "the keyvault stays sealed and progress is reset"
                )
            try:
                await self._open(root)
            except BaseException:
                root.wipe()
                self._wipe_keys()
                raise
            log.info("keyvault.unsealed", keys=len(self._keys))

    async def _open(self, root: ciphers.SecretKey) -> None:
        root_aead = root.aead()
        for stored in await store.load_keys(self.db):
            self._keys[stored.key_id] = self._unwrap(root_aead, stored)
        self._root, self._root_aead = root, root_aead
        self._refresh_active()

    def _unwrap(self, root_aead: ChaCha20Poly1305, stored: store.StoredKey) -> LiveKey:
        try:
            material = ciphers.unwrap_key(
                root_aead,
                stored.key_id,
                stored.purpose,  # type: ignore[arg-type]
                stored.wrapped,
            )
        except ciphers.KeyvaultCryptoError:
            raise IntegrityError(f"wrapped key {stored.key_id} does not unwrap") from None
        secret = ciphers.SecretKey.adopt(material)
        return LiveKey(
            stored.key_id, stored.purpose, stored.state, secret, secret.aead(), stored.nonce_prefix
        )

    def _refresh_active(self) -> None:
        self._active_data = sorted(
            k.key_id for k in self._keys.values() if k.purpose == "data" and k.state == "active"
        )

    async def seal(self) -> None:
        """Wipe every key from memory (best effort: see ciphers.SecretKey)."""
        async with self._lifecycle:
            await self.flush_use_counts()
            self._wipe_keys()
            self._shares = []
            log.info("keyvault.sealed")

    def _wipe_keys(self) -> None:
        for key in self._keys.values():
            key.wipe()
        self._keys.clear()
        self._active_data = []
        if self._root is not None:
            self._root.wipe()
        self._root = None
        self._root_aead = None

    async def sync_keys(self) -> None:
        """Pick up keys added or retired by another replica (rotation)."""
        if self._root_aead is None:
            return
        for stored in await store.load_keys(self.db):
            live = self._keys.get(stored.key_id)
            if live is None and self._root_aead is not None:
                self._keys[stored.key_id] = self._unwrap(self._root_aead, stored)
            elif live is not None:
                live.state = stored.state
        self._refresh_active()

    async def rotate(self, add: int, retire_existing: bool) -> tuple[list[int], list[int]]:
        root_aead = self._require_unsealed_root()
        async with self._lifecycle:
            first = await store.max_key_id(self.db) + 1
            keys = [self._new_stored_key(root_aead, first + i, "data") for i in range(add)]
            retire = list(self._active_data) if retire_existing else []
            await store.add_keys(self.db, keys, retire)
            await self.sync_keys()
        log.info("keyvault.rotated", added=len(keys), retired=len(retire))
        return [k.key_id for k in keys], retire

    def require_unsealed(self) -> None:
        """Refuse with `sealed` unless this replica holds its keys."""
        self._require_unsealed_root()

    def _require_unsealed_root(self) -> ChaCha20Poly1305:
        if self._root_aead is None:
            raise Sealed("the keyvault is sealed")
        return self._root_aead

    # ------------------------------------------------------------------ status

    async def key_infos(self) -> list[KeyInfo]:
        pending = dict(self._uses)
        return [
            KeyInfo(
                key_id=k.key_id,
                purpose=KeyPurpose(k.purpose),
                state=KeyState(k.state),
                use_count=k.use_count + pending.get(k.key_id, 0),
            )
            for k in await store.load_keys(self.db)
        ]

    async def flush_use_counts(self) -> None:
        counts, self._uses = self._uses, {}
        if counts:
            await store.add_use_counts(self.db, counts)

    # ------------------------------------------------------------------ operations

    def _key(self, key_id: int) -> LiveKey:
        key = self._keys.get(key_id)
        if key is None:
            raise KeyError(key_id)
        return key

    async def _live_key(self, key_id: int) -> LiveKey:
        """A key by id, loading it if another replica created it since we unsealed."""
        try:
            return self._key(key_id)
        except KeyError:
            await self.sync_keys()
        try:
            return self._key(key_id)
        except KeyError:
            raise IntegrityError(f"unknown key {key_id}") from None

    def _purpose_key(self, purpose: str) -> LiveKey:
        self._require_unsealed_root()
        for key in self._keys.values():
            if key.purpose == purpose and key.state == "active":
                return key
        raise IntegrityError(f"no active {purpose} key")

    async def _counters(self, key: LiveKey, count: int) -> int:
        """Reserve `count` consecutive nonce counters of `key`; returns the first.

        Leases a new block (one committed database update) when the current one cannot
        hold them all; the rest of the old block is abandoned, never reused.
        """
        block = key.block
        if block is None or block.remaining < count:
            async with key.lease_lock:
                block = key.block
                if block is None or block.remaining < count:
                    size = max(self.block_size, count)
                    start = await store.lease_counters(self.db, key.key_id, size, self.instance)
                    block = ciphers.NonceBlock(key.key_id, key.prefix, start, start + size)
                    key.block = block
        self._uses[key.key_id] = self._uses.get(key.key_id, 0) + count
        return block.take(count)

    async def _nonce(self, key: LiveKey) -> bytes:
        return ciphers.nonce_for(key.prefix, await self._counters(key, 1))

    async def encrypt(self, rows: Sequence[FieldRow]) -> list[dict[str, str]]:
        """Encrypt each row's fields under one active data key picked at random per row."""
        self._require_unsealed_root()
        active = self._active_data
        if not active:
            raise IntegrityError("no active data key")
        out: list[dict[str, str]] = [{} for _ in rows]
        per_key: dict[int, list[tuple[int, str, bytes, ciphers.FieldContext]]] = {}
        for index, (row, pick) in enumerate(
            zip(rows, _uniform_picks(len(active), len(rows)), strict=True)
        ):
            items = per_key.setdefault(active[pick], [])
            for column, plaintext in row.fields.items():
                items.append(
                    (
                        index,
                        column,
                        plaintext.encode("utf-8"),
                        _context(row.table, column, row.row_id),
                    )
                )
        for key_id, items in per_key.items():
            key = self._keys[key_id]
            first = await self._counters(key, len(items))
            blobs = ciphers.encrypt_fields(
                key.aead, key_id, key.prefix, first, [(pt, ctx) for _, _, pt, ctx in items]
            )
            for (index, column, _, _), blob in zip(items, blobs, strict=True):
                out[index][column] = b64encode(blob)
        return out

    async def decrypt(self, rows: Sequence[FieldRow]) -> list[dict[str, str]]:
        self._require_unsealed_root()
        out: list[dict[str, str]] = []
        for row in rows:
            plain: dict[str, str] = {}
            for column, value in row.fields.items():
                context = _context(row.table, column, row.row_id)
                blob = b64decode(value, f"ciphertext of {context}")
                try:
                    parsed = ciphers.parse_field(blob)
                except ciphers.CiphertextFormatError:
                    raise IntegrityError(f"ciphertext of {context} is malformed") from None
                key = await self._live_key(parsed.key_id)
                try:
                    data = ciphers.decrypt_field(key.aead, blob, context, key_id=key.key_id)
                    plain[column] = data.decode("utf-8")
                except (ciphers.DecryptionError, UnicodeDecodeError):
                    raise IntegrityError(
                        f"ciphertext of {context} does not decrypt: moved, edited or wrong key",
                        details={"table": row.table, "column": column, "row_id": row.row_id},
                    ) from None
            out.append(plain)
        return out

    async def mac(self, rows: Sequence[MacRow]) -> list[str]:
        key = self._purpose_key("integrity")
        tags = []
        for row in rows:
            digest = _row_digest(row)
            nonce = await self._nonce(key)
            tags.append(
                b64encode(ciphers.mac_tag(key.aead, key.key_id, nonce, digest, row.table, row.pk))
            )
        return tags

    async def verify_macs(self, rows: Sequence[MacRow], tags: Sequence[str]) -> list[bool]:
        self._require_unsealed_root()
        if len(rows) != len(tags):
            raise BadRequest("rows and tags differ in number")
        results = []
        for row, tag in zip(rows, tags, strict=True):
            results.append(await self.verify_one(row, tag))
        return results

    async def verify_one(self, row: MacRow, tag: str) -> bool:
        """True only if `tag` is the MAC of exactly this row; never raises on garbage."""
        try:
            blob = base64.b64decode(tag, validate=True)
            key = await self._live_key(ciphers.parse_mac(blob).key_id)
        except (binascii.Error, ValueError, IntegrityError):
            return False
        if key.purpose != "integrity":
            return False
        return ciphers.verify_mac(key.aead, blob, row.table, row.pk, _row_digest(row))

    def blind_indexes(self, queries: Sequence[BlindIndexQuery]) -> list[str]:
        key = self._purpose_key("blind_index")
        tokens = []
        for query in queries:
            terms = [(t.field, t.value) for t in query.terms]
            try:
                if len(terms) == 1:
                    tokens.append(ciphers.blind_index(key.secret, *terms[0]))
                else:
                    tokens.append(ciphers.blind_index_compound(key.secret, terms))
            except (ValueError, TypeError) as exc:
                raise BadRequest(f"cannot index this value: {exc}") from None
        return tokens


def _uniform_picks(choices: int, count: int) -> list[int]:
    """`count` independent uniform picks in range(choices), from the OS CSPRNG.

    One urandom call for the batch; 32-bit values reduced modulo `choices` are biased by
    at most choices / 2**32 (none at all for the default 16 keys, a power of two).
    """
    raw = os.urandom(4 * count)
    return [int.from_bytes(raw[i : i + 4], "big") % choices for i in range(0, 4 * count, 4)]


def _context(table: str, column: str, row_id: str) -> ciphers.FieldContext:
    try:
        return ciphers.FieldContext(table, column, row_id)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"invalid field context: {exc}") from None


def _row_digest(row: MacRow) -> bytes:
    try:
        return ciphers.row_digest(ciphers.canonical_row(row.table, row.pk, row.columns))
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"invalid MAC row: {exc}") from None
