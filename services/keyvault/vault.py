"""The keyvault's state in memory: sealed or unsealed, and the keys while unsealed.

Only this object ever holds the root key and unwrapped keys, each in a `SecretKey`
(a bytearray zeroed on seal) with one cached AEAD object per key. Nonces come from
blocks of counters leased in the database before use (see `store.lease_counters`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from nacl.public import PrivateKey

from contracts import keyvault as kv
from contracts.keyvault import (
    BlindIndexQuery,
    FieldRow,
    KeyInfo,
    KeyPurpose,
    KeyState,
    VaultState,
)
from contracts.rows import MacRow
from mesh.db import Database, is_duplicate_key
from mesh.errors import BadRequest, Conflict, Forbidden, IntegrityError, NotFound, Sealed
from mesh.logging import get_logger
from services.keyvault import ciphers, shamir, store
from services.keyvault.sealedbox import (
    SealedShareError,
    new_transport_key,
    open_share,
    public_key_b64,
    seal_share,
)

log = get_logger("keyvault.vault")

DATA_KEYS = 16
NONCE_PREFIX_BYTES = 4
ROOT_KEY_ID = 0
"""Key id in the AAD of the root key wrapped under the unseal key."""
HANDOVER_GRACE_S = 30.0
"""How long a replica keeps serving with an older root key after a root rotation on
another replica, waiting for the new one to be handed over, before it seals itself."""


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
        self._generation = 0
        """The generation of the root key this replica holds."""
        self._stale_since: float | None = None
        self._destroyed: set[int] = set()
        self._ceremony_id: str | None = None
        self._ceremony_shares: list[shamir.Share] = []
        self._prepared: Prepared | None = None

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
            # The shares rebuild an unseal key that wraps the root key (Vault's shape): a
            # rekey then makes new shares whose key wraps the same root, and the old
            # shares unwrap nothing in the database any more.
            unseal_key = ciphers.SecretKey.generate()
            try:
                try:
                    share_texts = shamir.split_root_key(
                        unseal_key.reveal(), threshold, shares, set_id
                    )
                except ValueError as exc:
                    raise BadRequest(str(exc)) from None
                root_aead = root.aead()
                meta = store.VaultMeta(
                    threshold,
                    shares,
                    set_id,
                    ciphers.make_check_value(unseal_key),
                    ciphers.wrap_key(unseal_key.aead(), ROOT_KEY_ID, "root", root),
                )
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
                unseal_key.wipe()
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
            if self._shares and self._shares[0].set_id != self.meta.set_id:
                self._shares = []  # the shares were rekeyed meanwhile: start again
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
            root = self._root_from_shares(shares, self.meta)
            try:
                await self._open(root)
            except BaseException:
                root.wipe()
                self._wipe_keys()
                raise
            log.info("keyvault.unsealed", keys=len(self._keys))

    @staticmethod
    def _secret_from_shares(
        shares: Sequence[shamir.Share], meta: store.VaultMeta
    ) -> ciphers.SecretKey:
        """What K shares rebuild, checked against the stored check value."""
        try:
            secret = ciphers.SecretKey.adopt(shamir.combine_shares(shares))
        except shamir.ShareCombineError as exc:
            raise BadRequest(f"the shares do not combine ({exc}); progress reset") from None
        if not ciphers.check_root_key(secret, meta.check_value):
            secret.wipe()
            raise BadRequest(
                "the shares do not reconstruct the root key (a wrong or corrupt share, or a "
                "share of a set that was rekeyed); progress is reset"
            )
        return secret

    @classmethod
    def _root_from_shares(
        cls, shares: Sequence[shamir.Share], meta: store.VaultMeta
    ) -> ciphers.SecretKey:
        """The root key: what the shares rebuild, or what that unwraps (an unseal key)."""
        secret = cls._secret_from_shares(shares, meta)
        if meta.wrapped_root is None:
            return secret
        try:
            material = ciphers.unwrap_key(secret.aead(), ROOT_KEY_ID, "root", meta.wrapped_root)
        except ciphers.KeyvaultCryptoError:
            raise IntegrityError("the stored root key does not unwrap under the shares") from None
        finally:
            secret.wipe()
        return ciphers.SecretKey.adopt(material)

    async def _open(self, root: ciphers.SecretKey) -> None:
        root_aead = root.aead()
        assert self.meta is not None
        for stored in await store.load_keys(self.db):
            if stored.state == "destroyed" or stored.wrapped is None:
                self._destroyed.add(stored.key_id)
                continue
            self._keys[stored.key_id] = self._unwrap(root_aead, stored)
        self._root, self._root_aead = root, root_aead
        self._generation = self.meta.generation
        self._stale_since = None
        self._refresh_active()

    def _unwrap(self, root_aead: ChaCha20Poly1305, stored: store.StoredKey) -> LiveKey:
        if stored.wrapped is None:
            raise IntegrityError(f"key {stored.key_id} was destroyed")
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
            self._forget_ceremony()
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
        """Pick up what other replicas changed: keys added, retired or destroyed, the
        minimum decryption versions, a rekey, a rotated root key."""
        if self._root_aead is None:
            return
        meta = await store.load_meta(self.db)
        if meta is None:
            return
        self.meta = meta
        if meta.generation != self._generation:
            if self._stale_since is None:
                self._stale_since = time.monotonic()
                log.warning("keyvault.root_rotated_elsewhere", generation=meta.generation)
            elif time.monotonic() - self._stale_since > HANDOVER_GRACE_S:
                log.error(
                    "keyvault.sealed_after_root_rotation",
                    message="the root key was rotated on another replica and never handed "
                    "over: this replica sealed itself; unseal it with the new shares",
                )
                self._wipe_keys()
                return
        for stored in await store.load_keys(self.db):
            live = self._keys.get(stored.key_id)
            if stored.state == "destroyed" or stored.wrapped is None:
                self._destroyed.add(stored.key_id)
                if live is not None:
                    live.wipe()
                    del self._keys[stored.key_id]
            elif live is None and self._root_aead is not None:
                try:
                    self._keys[stored.key_id] = self._unwrap(self._root_aead, stored)
                except IntegrityError:
                    # Wrapped under a newer root key than this replica's (a root rotation
                    # elsewhere): picked up once the new root is handed over.
                    log.warning("keyvault.key_not_unwrapped", key_id=stored.key_id)
            elif live is not None:
                live.state = stored.state
        self._refresh_active()

    async def rotate(
        self, add: int, retire_existing: bool, purpose: str = "data"
    ) -> tuple[list[int], list[int]]:
        """New keys of `purpose` (data: `add` of them; integrity, blind_index: one), and
        the current ones of that purpose retired (always, for the single-key purposes)."""
        root_aead = self._require_unsealed_root()
        async with self._lifecycle:
            count = add if purpose == "data" else 1
            retire = retire_existing or purpose != "data"

            def build(first: int) -> list[store.StoredKey]:
                return [self._new_stored_key(root_aead, first + i, purpose) for i in range(count)]

            try:
                keys, retired = await store.add_keys(
                    self.db, build, purpose if retire else None, self._generation
                )
            except store.StaleRoot:
                raise Conflict(
                    "the root key was rotated on another replica; try again in a moment"
                ) from None
            await self.sync_keys()
        log.info("keyvault.rotated", purpose=purpose, added=len(keys), retired=len(retired))
        return [k.key_id for k in keys], retired

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
        meta = self.meta
        minimum = meta.min_keys if meta else {}
        return [
            KeyInfo(
                key_id=k.key_id,
                purpose=KeyPurpose(k.purpose),
                state=KeyState(k.state),
                use_count=k.use_count + pending.get(k.key_id, 0),
                decrypts=k.state != "destroyed" and k.key_id >= minimum.get(k.purpose, 0),
            )
            for k in await store.load_keys(self.db)
        ]

    @property
    def generation(self) -> int:
        return self._generation

    def minimum(self, purpose: str) -> int:
        """The smallest key id of `purpose` that still decrypts or verifies."""
        return self.meta.min_keys.get(purpose, 0) if self.meta else 0

    @property
    def min_field_version(self) -> int:
        return self.meta.min_field_version if self.meta else 1

    @property
    def active_data_keys(self) -> list[int]:
        return list(self._active_data)

    def active_key(self, purpose: str) -> int | None:
        for key in self._keys.values():
            if key.purpose == purpose and key.state == "active":
                return key.key_id
        return None

    @property
    def destroyed_keys(self) -> list[int]:
        return sorted(self._destroyed)

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
            if key_id not in self._destroyed:
                await self.sync_keys()
        try:
            return self._key(key_id)
        except KeyError:
            if key_id in self._destroyed:
                raise IntegrityError(f"key {key_id} was destroyed") from None
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
                        _context(row.table, column, row.row_id, row.binding),
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

    async def decrypt(self, rows: Sequence[FieldRow]) -> tuple[list[dict[str, str]], list[int]]:
        """Plaintext per row, and the indexes of rows that do not decrypt (moved, edited,
        claimed for another patient, or under an unknown key): those come back empty, so
        one tampered row does not hide the others."""
        self._require_unsealed_root()
        out: list[dict[str, str]] = []
        failed: list[int] = []
        for index, row in enumerate(rows):
            plain: dict[str, str] = {}
            if not row.fields:
                out.append(plain)
                continue
            # The row's context is checked and encoded once, for all of its fields.
            context = _row_context(row.table, row.row_id, row.binding)
            try:
                for column, value in row.fields.items():
                    plain[column] = await self._decrypt_one(value, context, column)
            except IntegrityError as exc:
                log.warning("keyvault.row_not_decrypted", table=row.table, reason=exc.message)
                failed.append(index)
                plain = {}
            out.append(plain)
        return out, failed

    async def _decrypt_one(self, value: str, row: ciphers.RowContext, column: str) -> str:
        """The plaintext of `column`'s ciphertext (base64) in the row of `row`."""
        if not column:  # a str (the request's model says so), never empty
            raise BadRequest("invalid field context: FieldContext.column must not be empty")
        try:
            # strict: only the base64 alphabet, correct padding, nothing after it
            blob = binascii.a2b_base64(value, strict_mode=True)
            parsed = ciphers.parse_field(blob)
        except ValueError:  # binascii.Error too, and a str that is not ASCII
            raise IntegrityError(f"ciphertext of {row.describe(column)} is malformed") from None
        key = self._keys.get(parsed.key_id)
        if key is None:  # created by another replica since we unsealed, or gone
            key = await self._live_key(parsed.key_id)
        if key.purpose != "data":
            raise IntegrityError(f"ciphertext of {row.describe(column)} is not under a data key")
        if key.key_id < self.minimum("data"):
            raise IntegrityError(
                f"key {key.key_id} is below the minimum decryption version of data keys"
            )
        if parsed.version < self.min_field_version:
            raise IntegrityError(f"envelope version {parsed.version} is no longer accepted")
        try:
            return ciphers.open_field(key.aead, parsed, row, column).decode("utf-8")
        except (ciphers.DecryptionError, UnicodeDecodeError):
            raise IntegrityError(
                f"ciphertext of {row.describe(column)} does not decrypt: moved, edited, "
                "another patient's, or wrong key"
            ) from None

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
            blob = binascii.a2b_base64(tag, strict_mode=True)  # as a field's ciphertext
            key_id = ciphers.parse_mac(blob).key_id
            key = self._keys.get(key_id)
            if key is None:
                key = await self._live_key(key_id)
        except (ValueError, IntegrityError):  # binascii.Error and a non-ASCII str too
            return False
        if key.purpose != "integrity" or key.key_id < self.minimum("integrity"):
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

    # ------------------------------------------------------------------ key lifecycle

    async def set_min_versions(
        self, purpose: str | None, min_key_id: int | None, min_field_version: int | None
    ) -> tuple[store.VaultMeta, list[int]]:
        """Refuse keys of `purpose` below `min_key_id` (and envelopes below a version) for
        decryption and MAC checks, on every replica (each reads it at its next sync). It
        can be lowered again: nothing is destroyed."""
        self._require_unsealed_root()
        async with self._lifecycle:
            meta = await store.load_meta(self.db)
            assert meta is not None
            minimum = dict(meta.min_keys)
            keys = await store.load_keys(self.db)
            if purpose is not None and min_key_id is not None:
                active = [k.key_id for k in keys if k.purpose == purpose and k.state == "active"]
                if active and min_key_id > min(active):
                    raise Conflict(
                        f"key {min(active)} is an active {purpose} key: the minimum decryption "
                        "version cannot be above it (rotate first)"
                    )
                minimum[purpose] = min_key_id
            field_version = meta.min_field_version
            if min_field_version is not None:
                if min_field_version > ciphers.FIELD_VERSION:
                    raise BadRequest(f"there is no envelope version {min_field_version} yet")
                field_version = min_field_version
            await store.set_min_versions(self.db, minimum, field_version)
            await self.sync_keys()
        refused = [
            k.key_id
            for k in keys
            if k.state != "destroyed" and k.key_id < minimum.get(k.purpose, 0)
        ]
        log.info("keyvault.min_decryption", minimum=minimum, min_field_version=field_version)
        assert self.meta is not None
        return self.meta, refused

    async def stored_key(self, key_id: int) -> store.StoredKey:
        found = await store.load_keys(self.db, key_id)
        if not found:
            raise NotFound(f"there is no key {key_id}")
        return found[0]

    async def destroy(self, key_id: int) -> store.StoredKey:
        """Drop a retired key's wrapped copy and wipe it from memory. The caller has
        proved that no row uses it (every owner's fresh scan)."""
        self._require_unsealed_root()
        async with self._lifecycle:
            stored = await self.stored_key(key_id)
            self._check_destroyable(stored)
            if not await store.destroy_key(self.db, key_id):
                raise Conflict(f"key {key_id} changed meanwhile; look again")
            self._destroyed.add(key_id)
            live = self._keys.pop(key_id, None)
            if live is not None:
                live.wipe()
        log.warning("keyvault.key_destroyed", key_id=key_id, purpose=stored.purpose)
        return await self.stored_key(key_id)

    def _check_destroyable(self, stored: store.StoredKey) -> None:
        if stored.state == "destroyed":
            raise Conflict(f"key {stored.key_id} is destroyed already")
        if stored.state == "active":
            raise Conflict(f"key {stored.key_id} is active: rotate it out first")
        if stored.key_id >= self.minimum(stored.purpose):
            raise Conflict(
                f"key {stored.key_id} still decrypts: set the minimum decryption version of "
                f"{stored.purpose} keys above it first (and check nothing breaks)"
            )

    async def check_destroyable(self, key_id: int) -> store.StoredKey:
        stored = await self.stored_key(key_id)
        self._check_destroyable(stored)
        return stored

    # ------------------------------------------------------------------ rewrap

    async def rewrap(self, rows: Sequence[kv.RewrapRow]) -> list[kv.RewrappedRow]:
        """Ciphertext → ciphertext: every field not under an active data key (or in an
        older envelope) decrypted here and encrypted again for exactly the same table,
        column, row id and binding; MAC'd rows re-MAC'd only after their old tag
        verified; blind indexes recomputed from the row's own plaintext. Plaintext never
        leaves this method: the reply holds ciphertexts, tags and tokens only."""
        self._require_unsealed_root()
        integrity = self._purpose_key("integrity")
        active = set(self._active_data)
        if not active:
            raise IntegrityError("no active data key")
        out: list[kv.RewrappedRow | None] = [None] * len(rows)
        plans: list[_RewrapPlan] = []
        for index, row in enumerate(rows):
            try:
                plans.append(await self._plan_rewrap(index, row, active, integrity.key_id))
            except _RowRefused as exc:
                out[index] = kv.RewrappedRow(error=exc.reason)
        moving = [p for p in plans if p.plain]
        encrypted = await self.encrypt(
            [
                FieldRow(table=p.row.table, row_id=p.row.row_id, fields=p.plain, binding=p.binding)
                for p in moving
            ]
        )
        for plan, fields in zip(moving, encrypted, strict=True):
            plan.new_fields = fields
        remac = [p for p in plans if p.row.mac is not None and (p.new_fields or p.stale_mac)]
        tags = await self.mac([p.new_mac_row() for p in remac])
        for plan, tag in zip(remac, tags, strict=True):
            plan.new_tag = tag
        for plan in plans:
            out[plan.index] = kv.RewrappedRow(
                fields=plan.new_fields, mac=plan.new_tag, tokens=plan.tokens
            )
        for plan in plans:
            plan.forget()
        return [r if r is not None else kv.RewrappedRow(error="not processed") for r in out]

    async def _plan_rewrap(
        self, index: int, row: kv.RewrapRow, active: set[int], integrity_id: int
    ) -> _RewrapPlan:
        binding = dict(sorted(row.binding.items()))
        plan = _RewrapPlan(index, row, binding)
        if row.mac is not None:
            self._check_mac_row(row)
            if not await self.verify_one(row.mac.row, row.mac.tag):
                raise _RowRefused("its MAC does not verify (edited, or under a refused key)")
            try:
                plan.stale_mac = ciphers.parse_mac(b64decode(row.mac.tag, "tag")).key_id != (
                    integrity_id
                )
            except (BadRequest, ValueError):
                raise _RowRefused("its MAC tag is malformed") from None
        specs = kv.BLIND_INDEXES.get(row.table, ()) if row.reindex else ()
        needed = {term.column for spec in specs for query in spec.queries for term in query}
        decrypted: dict[str, str] = {}
        for column, value in row.fields.items():
            try:
                blob = base64.b64decode(value, validate=True)
                parsed = ciphers.parse_field(blob)
            except (binascii.Error, ValueError):
                raise _RowRefused(f"the {column} ciphertext is malformed") from None
            if parsed.key_id in self._destroyed:
                raise _RowRefused(f"the {column} ciphertext is under destroyed key {parsed.key_id}")
            stale = parsed.version != ciphers.FIELD_VERSION or parsed.key_id not in active
            if not stale and column not in needed:
                continue
            try:
                text = await self._decrypt_one(
                    value, _row_context(row.table, row.row_id, binding), column
                )
            except IntegrityError as exc:
                raise _RowRefused(exc.message) from None
            decrypted[column] = text
            if stale:
                plan.plain[column] = text
        if specs:
            plan.tokens = self._tokens(specs, decrypted)
        decrypted.clear()
        return plan

    @staticmethod
    def _check_mac_row(row: kv.RewrapRow) -> None:
        """The MAC'd row is this row: same table, every rewrapped ciphertext and binding
        value is the one the verified MAC covers (so the new MAC covers nothing else)."""
        assert row.mac is not None
        mac = row.mac
        if mac.row.table != row.table:
            raise _RowRefused("the MAC'd row belongs to another table")
        columns = dict(mac.row.columns)
        if len(columns) != len(mac.row.columns):
            raise _RowRefused("the MAC'd row names a column twice")
        if set(mac.columns) != set(row.fields):
            raise _RowRefused("every encrypted field of a MAC'd row must be named in its MAC")
        for field_name, column in mac.columns.items():
            if column not in columns or columns[column] != row.fields[field_name]:
                raise _RowRefused(f"the MAC does not cover the {field_name} ciphertext given")
        if set(mac.binding_columns) != set(row.binding):
            raise _RowRefused("every binding of a MAC'd row must be a column of its MAC")
        for name, column in mac.binding_columns.items():
            value = mac.row.pk if column == kv.MAC_PK else columns.get(column)
            if value is None or value != row.binding[name]:
                raise _RowRefused(f"the {name} binding is not the one the MAC covers")

    def _tokens(
        self, specs: Sequence[kv.BlindIndexSpec], plain: dict[str, str]
    ) -> dict[str, list[str]]:
        key = self._purpose_key("blind_index")
        documents: dict[str, object] = {}
        tokens: dict[str, list[str]] = {}
        for spec in specs:
            found: list[str] = []
            for query in spec.queries:
                terms: list[tuple[str, str]] = []
                for term in query:
                    value = _plain_at(plain, documents, term)
                    if value is None:
                        break
                    terms.append((term.field, value))
                else:
                    try:
                        if len(terms) == 1:
                            token = ciphers.blind_index(key.secret, *terms[0])
                        else:
                            token = ciphers.blind_index_compound(key.secret, terms)
                    except (ValueError, TypeError):
                        raise _RowRefused(f"its {spec.name} value cannot be indexed") from None
                    if token not in found:
                        found.append(token)
            tokens[spec.name] = found
        return tokens

    # ------------------------------------------------------------------ rekey, root rotation

    async def start_ceremony(
        self, kind: str, threshold: int, shares: int, recipient: str, started_by: str
    ) -> str:
        """This replica coordinates a rekey or root rotation (it needs its keys)."""
        self._require_unsealed_root()
        try:
            shamir._validate_split_params(threshold, shares)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        meta = await store.load_meta(self.db)
        assert meta is not None
        if kind == "rekey" and meta.wrapped_root is None:
            raise Conflict(
                "this keyvault's shares rebuild the root key itself (initialised before "
                "unseal keys): old shares would still rebuild it, so rotate the root key "
                "instead (kind rotate_root), which also issues new shares"
            )
        async with self._lifecycle:
            ceremony_id = await store.start_ceremony(
                self.db,
                kind,
                threshold,
                shares,
                recipient,
                self.instance,
                self.transport_public_key(),
                started_by,
            )
            if ceremony_id is None:
                pending = await store.pending_ceremony(self.db)
                raise Conflict(
                    f"a ceremony is pending ({pending.ceremony_id if pending else '?'}): "
                    "finish or cancel it first"
                )
            self._forget_ceremony()
            self._ceremony_id = ceremony_id
        log.info("keyvault.ceremony_started", kind=kind, ceremony=ceremony_id)
        return ceremony_id

    def _forget_ceremony(self) -> None:
        self._ceremony_id = None
        self._ceremony_shares = []
        if self._prepared is not None:
            self._prepared.wipe()
        self._prepared = None

    async def ceremony_share(self, ceremony_id: str, sealed_share: str) -> list[str]:
        """Take one current share (sealed to this replica); with K of them, prepare the
        new share set (and root key) and return the new shares sealed to the recipient.
        Nothing changes yet: the old shares keep working until the commit."""
        self._require_unsealed_root()
        async with self._lifecycle:
            ceremony, meta = await self._own_ceremony(ceremony_id, "collecting")
            try:
                text = open_share(self.transport, sealed_share)
            except SealedShareError as exc:
                raise BadRequest(
                    f"the share could not be opened ({exc}); seal it to the coordinator's "
                    "transport_public_key"
                ) from None
            try:
                share = shamir.parse_share(text, set_id=meta.set_id)
            except shamir.ShareFormatError as exc:
                raise BadRequest(f"share refused: {exc.reason}") from None
            if any(s.index == share.index for s in self._ceremony_shares):
                raise BadRequest(f"share {share.index} was already submitted")
            self._ceremony_shares.append(share)
            await store.ceremony_progress(self.db, ceremony_id, len(self._ceremony_shares))
            if len(self._ceremony_shares) < meta.threshold:
                return []
            shares, self._ceremony_shares = self._ceremony_shares, []
            try:
                root = self._root_from_shares(shares, meta)
            except (BadRequest, IntegrityError):
                await store.ceremony_progress(self.db, ceremony_id, 0)
                raise
            try:
                assert self._root is not None
                if root != self._root:
                    raise IntegrityError("the shares rebuild another root key than this replica's")
            finally:
                root.wipe()
            return await self._prepare(ceremony, meta)

    async def _own_ceremony(
        self, ceremony_id: str, state: str
    ) -> tuple[store.Ceremony, store.VaultMeta]:
        ceremony = await store.get_ceremony(self.db, ceremony_id)
        if ceremony is None:
            raise NotFound(f"there is no ceremony {ceremony_id}")
        if ceremony.coordinator != self.instance:
            raise BadRequest(f"ceremony {ceremony_id} is coordinated by {ceremony.coordinator}")
        if ceremony.state != state:
            raise Conflict(f"ceremony {ceremony_id} is {ceremony.state}, not {state}")
        if self._ceremony_id != ceremony_id:
            raise Conflict(
                f"this replica lost ceremony {ceremony_id} (it restarted or sealed): cancel "
                "it and start again"
            )
        meta = await store.load_meta(self.db)
        assert meta is not None
        return ceremony, meta

    async def _prepare(self, ceremony: store.Ceremony, meta: store.VaultMeta) -> list[str]:
        assert self._root is not None
        rotate_root = ceremony.kind == "rotate_root"
        secret = ciphers.SecretKey.generate()
        root = ciphers.SecretKey.generate() if rotate_root else _copy(self._root)
        set_id = secrets.token_bytes(shamir.SET_ID_BYTES)
        while set_id == meta.set_id:
            set_id = secrets.token_bytes(shamir.SET_ID_BYTES)
        texts = shamir.split_root_key(secret.reveal(), ceremony.threshold, ceremony.shares, set_id)
        new_meta = store.VaultMeta(
            ceremony.threshold,
            ceremony.shares,
            set_id,
            ciphers.make_check_value(secret),
            ciphers.wrap_key(secret.aead(), ROOT_KEY_ID, "root", root),
            meta.generation + (1 if rotate_root else 0),
            dict(meta.min_keys),
            meta.min_field_version,
        )
        secret.wipe()
        sealed = [seal_share(ceremony.recipient_public_key, text) for text in texts]
        digest = bytes.fromhex(kv.ceremony_digest(ceremony.ceremony_id, texts))
        texts.clear()
        if not await store.prepare_ceremony(self.db, ceremony.ceremony_id, sealed, digest):
            root.wipe()
            raise Conflict("the ceremony changed meanwhile")
        self._prepared = Prepared(
            ceremony.ceremony_id, ceremony.kind, new_meta, root, meta.set_id, meta.generation
        )
        log.info("keyvault.ceremony_prepared", ceremony=ceremony.ceremony_id)
        return sealed

    async def commit_ceremony(self, ceremony_id: str, digest_hex: str) -> bytes | None:
        """Apply the prepared share set (and root key): from now on only the new shares
        unseal. Returns, after a root rotation, the new root key wrapped under the old
        one, for the other replicas (`adopt_root`)."""
        root_aead = self._require_unsealed_root()
        async with self._lifecycle:
            await self._own_ceremony(ceremony_id, "prepared")
            prepared = self._prepared
            if prepared is None or prepared.ceremony_id != ceremony_id:
                raise Conflict(f"ceremony {ceremony_id} is not prepared on this replica")
            new_root_aead = prepared.root.aead()
            async for attempt in self.db.transactions():
                async with attempt as conn:
                    meta = await store.lock_meta(conn)
                    ceremony = await store.get_ceremony(conn, ceremony_id, lock=True)
                    if ceremony is None or ceremony.state != "prepared":
                        raise Conflict(f"ceremony {ceremony_id} is no longer prepared")
                    wanted = ceremony.shares_digest or b""
                    try:
                        given = bytes.fromhex(digest_hex)
                    except ValueError:
                        given = b""
                    if not hmac.compare_digest(wanted, given):
                        raise Forbidden("the digest does not match the new shares")
                    if (meta.set_id, meta.generation) != (prepared.set_id, prepared.generation):
                        raise Conflict("the shares or the root key changed since it was prepared")
                    rewrapped: list[tuple[int, bytes]] = []
                    if prepared.kind == "rotate_root":
                        for stored in await store.load_keys(conn):
                            if stored.wrapped is None:
                                continue
                            material = ciphers.unwrap_key(
                                root_aead,
                                stored.key_id,
                                stored.purpose,  # type: ignore[arg-type]
                                stored.wrapped,
                            )
                            try:
                                wrapped = ciphers.wrap_key(
                                    new_root_aead,
                                    stored.key_id,
                                    stored.purpose,  # type: ignore[arg-type]
                                    material,
                                )
                            finally:
                                material[:] = bytes(len(material))
                            rewrapped.append((stored.key_id, wrapped))
                    await store.replace_root(conn, prepared.meta, rewrapped)
                    await store.end_ceremony(conn, ceremony_id, "committed")
            handover: bytes | None = None
            if prepared.kind == "rotate_root":
                handover = ciphers.wrap_key(
                    root_aead, prepared.meta.generation, "handover", prepared.root
                )
                old = self._root
                self._root, self._root_aead = prepared.root, new_root_aead
                self._generation = prepared.meta.generation
                self._stale_since = None
                if old is not None:
                    old.wipe()
            else:
                prepared.root.wipe()
            self._prepared = None
            self._ceremony_id = None
            self.meta = prepared.meta
        log.warning("keyvault.ceremony_committed", kind=prepared.kind, ceremony=ceremony_id)
        return handover

    async def cancel_ceremony(self, ceremony_id: str) -> bool:
        async with self._lifecycle:
            async for attempt in self.db.transactions():
                async with attempt as conn:
                    cancelled = await store.end_ceremony(conn, ceremony_id, "cancelled")
            if self._ceremony_id == ceremony_id:
                self._forget_ceremony()
        return cancelled

    def sealed_handover(self, handover: bytes, transport_public_key: str) -> str:
        """The handover for one replica, sealed to its own transport key."""
        return seal_share(transport_public_key, b64encode(handover))

    async def adopt_root(self, generation: int, sealed_root: str) -> bool:
        """Take the new root key another replica made, if it was wrapped under the root
        key this replica holds and it unwraps every stored key to the key held here."""
        root_aead = self._require_unsealed_root()
        async with self._lifecycle:
            if generation <= self._generation:
                return False
            meta = await store.load_meta(self.db)
            if meta is None or meta.generation != generation:
                raise Conflict(f"the stored root key is not of generation {generation}")
            try:
                blob = b64decode(open_share(self.transport, sealed_root), "handover")
                material = ciphers.unwrap_key(root_aead, generation, "handover", blob)
            except (SealedShareError, BadRequest, ciphers.KeyvaultCryptoError):
                raise Forbidden(
                    "the handover was not made with this replica's root key for this replica"
                ) from None
            root = ciphers.SecretKey.adopt(material)
            new_aead = root.aead()
            try:
                for stored in await store.load_keys(self.db):
                    if stored.wrapped is None:
                        continue
                    held = self._keys.get(stored.key_id)
                    unwrapped = ciphers.SecretKey.adopt(
                        ciphers.unwrap_key(
                            new_aead,
                            stored.key_id,
                            stored.purpose,  # type: ignore[arg-type]
                            stored.wrapped,
                        )
                    )
                    same = held is None or unwrapped == held.secret
                    unwrapped.wipe()
                    if not same:
                        raise IntegrityError(f"key {stored.key_id} differs under the new root")
            except (ciphers.KeyvaultCryptoError, IntegrityError):
                root.wipe()
                raise Forbidden("the new root key does not unwrap the stored keys") from None
            old = self._root
            self._root, self._root_aead = root, new_aead
            self._generation = generation
            self._stale_since = None
            self.meta = meta
            if old is not None:
                old.wipe()
            await self.sync_keys()
        log.warning("keyvault.root_adopted", generation=generation)
        return True

    def transport_public_key(self) -> str:
        return public_key_b64(self.transport.public_key)


def _uniform_picks(choices: int, count: int) -> list[int]:
    """`count` independent uniform picks in range(choices), from the OS CSPRNG.

    One urandom call for the batch; 32-bit values reduced modulo `choices` are biased by
    at most choices / 2**32 (none at all for the default 16 keys, a power of two).
    """
    raw = os.urandom(4 * count)
    return [int.from_bytes(raw[i : i + 4], "big") % choices for i in range(0, 4 * count, 4)]


def _context(
    table: str, column: str, row_id: str, binding: dict[str, str] | None = None
) -> ciphers.FieldContext:
    try:
        return ciphers.FieldContext(table, column, row_id, tuple(sorted((binding or {}).items())))
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"invalid field context: {exc}") from None


def _row_context(table: str, row_id: str, binding: dict[str, str]) -> ciphers.RowContext:
    try:
        return ciphers.RowContext(table, row_id, tuple(sorted(binding.items())))
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"invalid field context: {exc}") from None


def _row_digest(row: MacRow) -> bytes:
    try:
        return ciphers.row_digest(ciphers.canonical_row(row.table, row.pk, row.columns))
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"invalid MAC row: {exc}") from None


def _copy(key: ciphers.SecretKey) -> ciphers.SecretKey:
    return ciphers.SecretKey.adopt(bytearray(key.reveal()))


class _RowRefused(Exception):
    """One row of a rewrap is not moved (its error says why; the others go on)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _RewrapPlan:
    index: int
    row: kv.RewrapRow
    binding: dict[str, str]
    plain: dict[str, str] = field(default_factory=dict)
    """Fields to encrypt again (plaintext: never leaves the keyvault)."""
    stale_mac: bool = False
    tokens: dict[str, list[str]] = field(default_factory=dict)
    new_fields: dict[str, str] = field(default_factory=dict)
    new_tag: str | None = None

    def new_mac_row(self) -> MacRow:
        """The MAC'd row as it will be stored: the new ciphertexts in their columns."""
        mac = self.row.mac
        assert mac is not None
        moved = {mac.columns[f]: c for f, c in self.new_fields.items()}
        columns = [(name, moved.get(name, value)) for name, value in mac.row.columns]
        return MacRow(table=mac.row.table, pk=mac.row.pk, columns=columns)

    def forget(self) -> None:
        self.plain.clear()


@dataclass
class Prepared:
    """A prepared ceremony on its coordinator: the new metadata and root key (the old
    root itself, copied, for a rekey), and what it was prepared against."""

    ceremony_id: str
    kind: str
    meta: store.VaultMeta
    root: ciphers.SecretKey
    set_id: bytes
    generation: int

    def wipe(self) -> None:
        self.root.wipe()


def _plain_at(
    plain: dict[str, str], documents: dict[str, object], term: kv.IndexTerm
) -> str | None:
    """A blind-index term's value in a row's plaintext (a column, or a key of its JSON)."""
    text = plain.get(term.column)
    if text is None or term.key is None:
        return text or None
    if term.column not in documents:
        try:
            documents[term.column] = json.loads(text)
        except ValueError:
            documents[term.column] = None
    document = documents[term.column]
    value = document.get(term.key) if isinstance(document, dict) else None
    return value if isinstance(value, str) and value else None
