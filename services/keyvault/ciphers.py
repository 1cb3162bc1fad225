"""The keyvault's pure cryptographic formats (DESIGN §4): no I/O, no state but memory.

Nonces are passed in (only key wrapping and the check value default to random
ones), so the formats can be tested byte for byte; the service layer owns key
lookup, nonce leasing in the database, and auditing.

Formats (all integers big-endian, ``lp(x)`` = 4-byte length ‖ UTF-8 bytes):

* field ciphertext: ``version(1) ‖ key_id(4) ‖ nonce(12) ‖ ciphertext ‖ tag(16)``.
  Version 2 (written now): AAD = ``header ‖ lp(table) ‖ lp(column) ‖ lp(row_id) ‖
  count(4) ‖ (lp(name) ‖ lp(value))*`` over the row's binding (patient, physician,
  conversation) sorted by name — a ciphertext moved to another row, column or table, or
  claimed for another patient, no longer decrypts. Version 1 (still read): AAD =
  ``header ‖ lp(table) ‖ lp(column) ‖ lp(row_id)``, no binding;
* nonce: ``prefix(4) ‖ counter(8)``, counters leased in blocks (:class:`NonceBlock`);
* wrapped key: ``version ‖ key_id ‖ nonce ‖ ct(32) ‖ tag``, AAD =
  ``header ‖ lp("wrap") ‖ lp(purpose)``;
* check value: the same shape with key id 0 and purpose ``"check"`` over a fixed label;
* row MAC (hash-then-encrypt): SHA-256 over :func:`canonical_row`, encrypted under
  the integrity key as ``version ‖ key_id ‖ nonce ‖ ct(32) ‖ tag``, AAD =
  ``header ‖ lp("mac") ‖ lp(table) ‖ lp(primary_key)``;
* blind index: HMAC-SHA-256 over ``field ‖ 0x00 ‖ normalise(field, value)``, truncated
  to 16 bytes, lowercase hex.

Key hygiene: keys live in :class:`SecretKey` (a ``bytearray`` that :meth:`SecretKey.wipe`
zeroes). That is best effort only: Python cannot wipe immutable ``bytes`` copies
(e.g. what ``secrets`` or an AEAD decryption returns), and every
``ChaCha20Poly1305`` object keeps its own copy of the key inside OpenSSL until it is
garbage-collected. Sealing must therefore also drop every cached AEAD object.
No function here puts key bytes, plaintext or patient values into an exception.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import struct
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Final, Literal, NamedTuple, NoReturn

import phonenumbers
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from doublemetaphone import doublemetaphone

__all__ = [
    "BLIND_INDEX_BYTES",
    "BLIND_INDEX_FIELDS",
    "CHECK_KEY_ID",
    "COUNTER_LIMIT",
    "FIELD_VERSION",
    "FIELD_VERSIONS",
    "HEADER_BYTES",
    "KEY_BYTES",
    "MAC_VERSION",
    "MAX_KEY_ID",
    "NONCE_BYTES",
    "NONCE_PREFIX_BYTES",
    "TAG_BYTES",
    "WRAP_PURPOSES",
    "WRAP_VERSION",
    "CiphertextFormatError",
    "ColumnValue",
    "DecryptionError",
    "FieldContext",
    "KeyPurpose",
    "KeyUnwrapError",
    "KeyWipedError",
    "KeyvaultCryptoError",
    "NonceBlock",
    "NonceBlockExhausted",
    "ParsedCiphertext",
    "SecretKey",
    "WrapPurpose",
    "blind_index",
    "blind_index_compound",
    "canonical_row",
    "check_root_key",
    "decrypt_field",
    "encrypt_field",
    "encrypt_fields",
    "hmac_sha256",
    "mac_tag",
    "make_check_value",
    "nonce_for",
    "normalise",
    "parse_field",
    "parse_mac",
    "parse_wrapped_key",
    "row_digest",
    "unwrap_key",
    "verify_mac",
    "wrap_key",
]

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
NONCE_PREFIX_BYTES: Final = 4
TAG_BYTES: Final = 16
HEADER_BYTES: Final = 1 + 4 + NONCE_BYTES
FIELD_VERSION: Final = 2
FIELD_VERSIONS: Final = frozenset({1, 2})
WRAP_VERSION: Final = 1
MAC_VERSION: Final = 1
MAX_KEY_ID: Final = 2**32 - 1
COUNTER_LIMIT: Final = 2**64  # counters are 0 .. 2**64 - 1
CHECK_KEY_ID: Final = 0
BLIND_INDEX_BYTES: Final = 16
DIGEST_BYTES: Final = 32

_CHECK_LABEL: Final = b"medihaven keyvault root check v1"
_MAX_LP: Final = 2**32 - 1
_HEADER = struct.Struct(">BI")


# --------------------------------------------------------------------------- errors


class KeyvaultCryptoError(Exception):
    """Base of every error raised by the keyvault's cryptographic core."""


class CiphertextFormatError(KeyvaultCryptoError, ValueError):
    """A blob is not in the expected format (length, version); nothing was decrypted."""


class DecryptionError(KeyvaultCryptoError):
    """Authentication failed: wrong key, wrong context, or the blob was edited."""


class KeyUnwrapError(DecryptionError):
    """A wrapped key does not unwrap under this root key for this key id and purpose."""


class NonceBlockExhausted(KeyvaultCryptoError):
    """The leased counter block is used up; lease a new one before encrypting."""


class KeyWipedError(KeyvaultCryptoError):
    """A :class:`SecretKey` was used after :meth:`SecretKey.wipe`."""


# --------------------------------------------------------------------------- keys


class SecretKey:
    """A 32-byte key held in a ``bytearray`` that :meth:`wipe` zeroes in place.

    Never shows its bytes in ``repr``/``str`` and refuses to be pickled, so a key
    cannot leak through logs, exceptions or a serialised object by accident.
    Wiping is best effort: immutable ``bytes`` copies made elsewhere (by
    ``secrets``, by an AEAD decryption, by the caller) stay until garbage
    collection, and a ``ChaCha20Poly1305`` built from this key keeps its own copy.
    """

    __slots__ = ("_buf", "_wiped")

    def __init__(self, material: bytes | bytearray | memoryview) -> None:
        if not isinstance(material, bytes | bytearray | memoryview):
            raise TypeError("key material must be bytes-like")
        if len(material) != KEY_BYTES:
            raise ValueError(f"a key must be {KEY_BYTES} bytes")
        self._buf = bytearray(material)
        self._wiped = False

    @classmethod
    def generate(cls) -> SecretKey:
        """A fresh random key (the ``bytes`` from ``secrets`` cannot be wiped, see above)."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def adopt(cls, buffer: bytearray) -> SecretKey:
        """Take ownership of ``buffer`` without copying, so wiping reaches the only copy."""
        if not isinstance(buffer, bytearray):
            raise TypeError("adopt() takes a bytearray")
        if len(buffer) != KEY_BYTES:
            raise ValueError(f"a key must be {KEY_BYTES} bytes")
        key = cls.__new__(cls)
        key._buf = buffer
        key._wiped = False
        return key

    def reveal(self) -> bytearray:
        """The live key buffer (not a copy): use it at once and do not keep it."""
        if self._wiped:
            raise KeyWipedError("the key has been wiped")
        return self._buf

    def aead(self) -> ChaCha20Poly1305:
        """A ChaCha20-Poly1305 object for this key; cache it, creating one per call is slow."""
        return ChaCha20Poly1305(self.reveal())

    def wipe(self) -> None:
        """Overwrite the key bytes with zeros; the key is unusable afterwards."""
        self._buf[:] = bytes(len(self._buf))
        self._wiped = True

    @property
    def wiped(self) -> bool:
        return self._wiped

    def __len__(self) -> int:
        return len(self._buf)

    def __repr__(self) -> str:
        return "SecretKey(<wiped>)" if self._wiped else "SecretKey(<redacted>)"

    __str__ = __repr__

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("a SecretKey cannot be pickled or copied")

    def __eq__(self, other: object) -> bool:
        """Constant-time comparison, so tests and callers need not reveal the bytes."""
        if not isinstance(other, SecretKey):
            return NotImplemented
        return not self._wiped and not other._wiped and hmac.compare_digest(self._buf, other._buf)

    __hash__ = None  # type: ignore[assignment]  # mutable (wipe), so not hashable


KeyInput = SecretKey | bytes | bytearray


def _key_material(key: KeyInput, what: str) -> bytes | bytearray:
    if isinstance(key, SecretKey):
        return key.reveal()
    if not isinstance(key, bytes | bytearray):
        raise TypeError(f"the {what} must be bytes, bytearray or SecretKey")
    if len(key) != KEY_BYTES:
        raise ValueError(f"the {what} must be {KEY_BYTES} bytes")
    return key


# --------------------------------------------------------------------------- shared helpers


class ParsedCiphertext(NamedTuple):
    """The parts of a versioned blob; ``body`` is ``ciphertext ‖ tag``."""

    version: int
    key_id: int
    nonce: bytes
    body: bytes


def _lp(value: bytes) -> bytes:
    if len(value) > _MAX_LP:
        raise ValueError("value is too long to encode")
    return len(value).to_bytes(4, "big") + value


def _lp_str(value: str) -> bytes:
    return _lp(value.encode("utf-8"))


def _check_key_id(key_id: int) -> None:
    if isinstance(key_id, bool) or not isinstance(key_id, int):
        raise TypeError("key id must be an integer")
    if not 0 <= key_id <= MAX_KEY_ID:
        raise ValueError(f"key id must be in 0..{MAX_KEY_ID}")


def _check_nonce(nonce: bytes) -> None:
    if not isinstance(nonce, bytes | bytearray) or len(nonce) != NONCE_BYTES:
        raise ValueError(f"nonce must be {NONCE_BYTES} bytes")


def _header(version: int, key_id: int, nonce: bytes) -> bytes:
    _check_key_id(key_id)
    _check_nonce(nonce)
    return _HEADER.pack(version, key_id) + bytes(nonce)


def _parse(blob: bytes, version: int, what: str, body_len: int | None) -> ParsedCiphertext:
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise CiphertextFormatError(f"{what} must be bytes")
    data = bytes(blob)
    if len(data) < HEADER_BYTES + TAG_BYTES:
        raise CiphertextFormatError(f"{what} is too short ({len(data)} bytes)")
    if body_len is not None and len(data) != HEADER_BYTES + body_len + TAG_BYTES:
        raise CiphertextFormatError(f"{what} has the wrong length ({len(data)} bytes)")
    found_version, key_id = _HEADER.unpack_from(data)
    if found_version != version:
        raise CiphertextFormatError(f"{what} has unsupported version {found_version}")
    return ParsedCiphertext(found_version, key_id, data[5:HEADER_BYTES], data[HEADER_BYTES:])


def _as_bytes(value: bytes | bytearray | memoryview, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{what} must be bytes")
    return bytes(value)


# --------------------------------------------------------------------------- field ciphertext


def _check_part(owner: str, name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{owner}.{name} must be a string")
    if not value:
        raise ValueError(f"{owner}.{name} must not be empty")


def _binding_lp(binding: tuple[tuple[str, str], ...]) -> bytes:
    parts = [len(binding).to_bytes(4, "big")]
    for name, value in binding:
        parts.append(_lp_str(name) + _lp_str(value))
    return b"".join(parts)


def _field_aad(
    table: bytes,
    column: str,
    row_id: bytes,
    binding: tuple[tuple[str, str], ...] | bytes,
    version: int,
) -> bytes:
    """A field's context as bound into its AAD: table, column and row id length-prefixed
    (`table` and `row_id` already are), then (version 2) the binding's pairs, counted."""
    base = table + _lp_str(column) + row_id
    if version == 1:
        return base
    return base + (binding if isinstance(binding, bytes) else _binding_lp(binding))


def _check_binding(owner: str, binding: tuple[tuple[str, str], ...]) -> None:
    names = [name for name, _ in binding]
    if names != sorted(set(names)):
        raise ValueError(f"{owner}.binding must be sorted by name, each name once")
    for name, value in binding:
        if not isinstance(name, str) or not isinstance(value, str) or not name or not value:
            raise ValueError(f"{owner}.binding holds non-empty strings")


@dataclass(frozen=True, slots=True)
class FieldContext:
    """Where a field ciphertext lives, and whose it is; bound into its AAD so it cannot be
    moved, nor claimed for another patient (version 2)."""

    table: str
    column: str
    row_id: str
    binding: tuple[tuple[str, str], ...] = ()
    """(name, value) pairs sorted by name, e.g. (("patient", "…"),)."""

    def __post_init__(self) -> None:
        for name in ("table", "column", "row_id"):
            _check_part("FieldContext", name, getattr(self, name))
        _check_binding("FieldContext", self.binding)

    def encode(self, version: int = FIELD_VERSION) -> bytes:
        """The unambiguous (length-prefixed) encoding bound into the AAD."""
        return _field_aad(
            _lp_str(self.table), self.column, _lp_str(self.row_id), self.binding, version
        )

    def __str__(self) -> str:
        return f"{self.table}/{self.column}/{self.row_id}"


@dataclass(frozen=True, slots=True)
class RowContext:
    """The context every field of one row shares (table, row id, binding), checked and
    encoded once per row: a field's AAD is this encoding with its column put in, the very
    bytes of `FieldContext.encode` (which is made from it), without checking and encoding
    the row again for each of its fields (the keyvault's hot path: a batch of rows)."""

    table: str
    row_id: str
    binding: tuple[tuple[str, str], ...] = ()
    _table: bytes = field(init=False, repr=False, compare=False)
    _row_id: bytes = field(init=False, repr=False, compare=False)
    _binding: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_part("RowContext", "table", self.table)
        _check_part("RowContext", "row_id", self.row_id)
        _check_binding("RowContext", self.binding)
        object.__setattr__(self, "_table", _lp_str(self.table))
        object.__setattr__(self, "_row_id", _lp_str(self.row_id))
        object.__setattr__(self, "_binding", _binding_lp(self.binding))

    def field_context(self, column: str) -> FieldContext:
        return FieldContext(self.table, column, self.row_id, self.binding)

    def encode(self, column: str, version: int = FIELD_VERSION) -> bytes:
        """`FieldContext(table, column, row_id, binding).encode(version)`."""
        _check_part("FieldContext", "column", column)
        return _field_aad(self._table, column, self._row_id, self._binding, version)

    def describe(self, column: str) -> str:
        return f"{self.table}/{column}/{self.row_id}"


def encrypt_field(
    aead: ChaCha20Poly1305,
    key_id: int,
    nonce: bytes,
    plaintext: bytes,
    context: FieldContext,
) -> bytes:
    """Encrypt one field value; ``nonce`` must come from this key's :class:`NonceBlock`."""
    if not isinstance(context, FieldContext):
        raise TypeError("context must be a FieldContext")
    header = _header(FIELD_VERSION, key_id, nonce)
    body = aead.encrypt(bytes(nonce), _as_bytes(plaintext, "plaintext"), header + context.encode())
    return header + body


def encrypt_fields(
    aead: ChaCha20Poly1305,
    key_id: int,
    prefix: bytes,
    first_counter: int,
    items: Sequence[tuple[bytes, FieldContext]],
) -> list[bytes]:
    """Encrypt many fields under one key with consecutive counters from ``first_counter``.

    The batch form of :func:`encrypt_field` (same bytes), for the keyvault's hot path:
    the counters must come from one leased block.
    """
    _check_key_id(key_id)
    if not isinstance(prefix, bytes) or len(prefix) != NONCE_PREFIX_BYTES:
        raise ValueError(f"nonce prefix must be {NONCE_PREFIX_BYTES} bytes")
    if first_counter < 0 or first_counter + len(items) > COUNTER_LIMIT:
        raise ValueError("nonce counters out of range")
    head = _HEADER.pack(FIELD_VERSION, key_id) + prefix
    out = []
    for offset, (plaintext, context) in enumerate(items):
        nonce = prefix + (first_counter + offset).to_bytes(8, "big")
        header = head + nonce[NONCE_PREFIX_BYTES:]
        out.append(header + aead.encrypt(nonce, plaintext, header + context.encode()))
    return out


def parse_field(blob: bytes) -> ParsedCiphertext:
    """Split a field ciphertext (version 1 or 2), e.g. to find which data key decrypts it."""
    if isinstance(blob, bytes | bytearray | memoryview) and len(blob) and blob[0] == 1:
        return _parse(blob, 1, "field ciphertext", None)
    return _parse(blob, FIELD_VERSION, "field ciphertext", None)


def decrypt_field(
    aead: ChaCha20Poly1305,
    blob: bytes,
    context: FieldContext,
    *,
    key_id: int | None = None,
) -> bytes:
    """Decrypt one field value, refusing it unless it was made for exactly ``context``.

    When ``key_id`` is given, a blob made under another key is refused before
    trying (a clearer error than a failed tag).
    """
    if not isinstance(context, FieldContext):
        raise TypeError("context must be a FieldContext")
    parsed = parse_field(blob)
    if key_id is not None and parsed.key_id != key_id:
        raise DecryptionError(
            f"ciphertext for {context} was made under key {parsed.key_id}, not key {key_id}"
        )
    header = bytes(blob[:HEADER_BYTES])
    try:
        return aead.decrypt(parsed.nonce, parsed.body, header + context.encode(parsed.version))
    except InvalidTag:
        raise DecryptionError(
            f"ciphertext does not decrypt for {context} (key {parsed.key_id}): "
            "wrong key, moved or edited"
        ) from None


def open_field(
    aead: ChaCha20Poly1305, parsed: ParsedCiphertext, row: RowContext, column: str
) -> bytes:
    """`decrypt_field` for a blob already split by `parse_field` (the keyvault parses it
    first, to find its key), of `column` in the row of `row`: refused unless it was made
    for exactly that field."""
    if not isinstance(row, RowContext):
        raise TypeError("row must be a RowContext")
    header = _HEADER.pack(parsed.version, parsed.key_id) + parsed.nonce
    try:
        return aead.decrypt(parsed.nonce, parsed.body, header + row.encode(column, parsed.version))
    except InvalidTag:
        raise DecryptionError(
            f"ciphertext does not decrypt for {row.describe(column)} (key {parsed.key_id}): "
            "wrong key, moved or edited"
        ) from None


# --------------------------------------------------------------------------- nonces


def nonce_for(prefix: bytes, counter: int) -> bytes:
    """The nonce ``prefix(4) ‖ counter(8)`` used with a data or integrity key."""
    if not isinstance(prefix, bytes | bytearray) or len(prefix) != NONCE_PREFIX_BYTES:
        raise ValueError(f"nonce prefix must be {NONCE_PREFIX_BYTES} bytes")
    if isinstance(counter, bool) or not isinstance(counter, int):
        raise TypeError("nonce counter must be an integer")
    if not 0 <= counter < COUNTER_LIMIT:
        raise ValueError("nonce counter is out of range 0..2**64-1")
    return bytes(prefix) + counter.to_bytes(8, "big")


class NonceBlock:
    """A leased block ``[start, end)`` of one key's nonce counters, handed out in order.

    The lease itself (one atomic database update, never reused after a crash)
    is the service's job; this object only makes sure no counter in the block
    is used twice within the process. Not thread-safe: use it from one event loop.
    """

    __slots__ = ("_next", "end", "key_id", "prefix", "start")

    def __init__(self, key_id: int, prefix: bytes, start: int, end: int) -> None:
        _check_key_id(key_id)
        if not isinstance(prefix, bytes) or len(prefix) != NONCE_PREFIX_BYTES:
            raise ValueError(f"nonce prefix must be {NONCE_PREFIX_BYTES} bytes")
        for value in (start, end):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError("block bounds must be integers")
        if not 0 <= start < end <= COUNTER_LIMIT:
            raise ValueError("a nonce block needs 0 <= start < end <= 2**64")
        self.key_id = key_id
        self.prefix = prefix
        self.start = start
        self.end = end
        self._next = start

    @property
    def remaining(self) -> int:
        return self.end - self._next

    @property
    def exhausted(self) -> bool:
        return self._next >= self.end

    def next_counter(self) -> int:
        """The next unused counter; raises :class:`NonceBlockExhausted` at the end."""
        if self._next >= self.end:
            raise NonceBlockExhausted(f"nonce block for key {self.key_id} is exhausted")
        counter = self._next
        self._next += 1
        return counter

    def take(self, count: int) -> int:
        """Reserve ``count`` consecutive counters; returns the first (all or nothing)."""
        if count < 1 or self._next + count > self.end:
            raise NonceBlockExhausted(f"nonce block for key {self.key_id} has too few counters")
        first = self._next
        self._next += count
        return first

    def next_nonce(self) -> bytes:
        """The next unused 12-byte nonce of this block."""
        return nonce_for(self.prefix, self.next_counter())

    def __repr__(self) -> str:
        return (
            f"NonceBlock(key_id={self.key_id}, start={self.start}, end={self.end}, "
            f"next={self._next})"
        )


# --------------------------------------------------------------------------- key wrapping

KeyPurpose = Literal["data", "integrity", "blind_index"]
WrapPurpose = Literal["data", "integrity", "blind_index", "root", "handover"]
"""What a wrapped key is for: a data, integrity or blind-index key (under the root key);
the root key under the unseal key the shares rebuild (``root``, key id 0); a new root key
under the old one, handed to another replica after a rotation (``handover``, key id =
the new generation)."""
WRAP_PURPOSES: Final[frozenset[str]] = frozenset(
    {"data", "integrity", "blind_index", "root", "handover"}
)
_WRAPPED_BYTES: Final = HEADER_BYTES + KEY_BYTES + TAG_BYTES


def _wrap_aad(header: bytes, purpose: str) -> bytes:
    return header + _lp(b"wrap") + _lp_str(purpose)


def _random_nonce(nonce: bytes | None) -> bytes:
    # Wrapping happens a handful of times per key's life (creation, rotation, a new
    # root key), so random 96-bit nonces are safe: after q wraps under one root key
    # the chance of any repeat is about q**2 / 2**97 (below 2**-57 for a million
    # wraps; NIST allows 2**32 random-nonce uses). Counters would need a database
    # lease for no benefit.
    if nonce is None:
        return secrets.token_bytes(NONCE_BYTES)
    _check_nonce(nonce)
    return bytes(nonce)


def wrap_key(
    root_aead: ChaCha20Poly1305,
    key_id: int,
    purpose: WrapPurpose,
    key_bytes: KeyInput,
    nonce: bytes | None = None,
) -> bytes:
    """Encrypt a data, integrity or blind-index key under the root key for storage.

    ``nonce`` defaults to 12 random bytes (pass one only to make tests reproducible).
    """
    if purpose not in WRAP_PURPOSES:
        raise ValueError(f"unknown key purpose {purpose!r}")
    material = _key_material(key_bytes, "key to wrap")
    nonce = _random_nonce(nonce)
    header = _header(WRAP_VERSION, key_id, nonce)
    return header + root_aead.encrypt(nonce, bytes(material), _wrap_aad(header, purpose))


def parse_wrapped_key(wrapped: bytes) -> ParsedCiphertext:
    """Split a wrapped key into its parts (raises :class:`CiphertextFormatError`)."""
    return _parse(wrapped, WRAP_VERSION, "wrapped key", KEY_BYTES)


def unwrap_key(
    root_aead: ChaCha20Poly1305,
    key_id: int,
    purpose: WrapPurpose,
    wrapped: bytes,
) -> bytearray:
    """Decrypt a wrapped key, refusing it unless made for this key id and purpose.

    Returns a ``bytearray`` to hand to :meth:`SecretKey.adopt`; the intermediate
    ``bytes`` from the AEAD cannot be wiped.
    """
    if purpose not in WRAP_PURPOSES:
        raise ValueError(f"unknown key purpose {purpose!r}")
    _check_key_id(key_id)
    parsed = parse_wrapped_key(wrapped)
    if parsed.key_id != key_id:
        raise KeyUnwrapError(f"wrapped key is for key {parsed.key_id}, not key {key_id}")
    header = bytes(wrapped[:HEADER_BYTES])
    try:
        plain = root_aead.decrypt(parsed.nonce, parsed.body, _wrap_aad(header, purpose))
    except InvalidTag:
        raise KeyUnwrapError(
            f"wrapped key {key_id} ({purpose}) does not unwrap under this root key"
        ) from None
    return bytearray(plain)


# --------------------------------------------------------------------------- check value


def make_check_value(root_key: KeyInput, nonce: bytes | None = None) -> bytes:
    """An AEAD encryption of a fixed label under the root key, stored at initialisation.

    At unseal, the key rebuilt from shares must decrypt it: this is what catches a
    wrong share, which Shamir interpolation cannot detect by itself.
    """
    aead = ChaCha20Poly1305(_key_material(root_key, "root key"))
    nonce = _random_nonce(nonce)
    header = _header(WRAP_VERSION, CHECK_KEY_ID, nonce)
    return header + aead.encrypt(nonce, _CHECK_LABEL, _wrap_aad(header, "check"))


def check_root_key(root_key: KeyInput, check_value: bytes) -> bool:
    """True only if ``check_value`` decrypts under ``root_key`` to the fixed label.

    Garbage check values give ``False``; a root key that is not 32 bytes is a
    caller bug and raises ``ValueError``.
    """
    aead = ChaCha20Poly1305(_key_material(root_key, "root key"))
    try:
        parsed = _parse(check_value, WRAP_VERSION, "check value", len(_CHECK_LABEL))
    except CiphertextFormatError:
        return False
    if parsed.key_id != CHECK_KEY_ID:
        return False
    header = bytes(check_value[:HEADER_BYTES])
    try:
        plain = aead.decrypt(parsed.nonce, parsed.body, _wrap_aad(header, "check"))
    except InvalidTag:
        return False
    return hmac.compare_digest(plain, _CHECK_LABEL)


# --------------------------------------------------------------------------- row MAC

ColumnValue = bytes | bytearray | str | int | None
_ROW_LABEL: Final = b"medihaven.row.v1"
_ROW_PREFIX: Final = len(_ROW_LABEL).to_bytes(4, "big") + _ROW_LABEL


def _encode_value(value: object) -> bytes:
    if value is None:
        return b"N"
    if isinstance(value, bool):  # stored as TINYINT: True and 1 are the same row
        return b"I" + _lp_str(str(int(value)))
    if isinstance(value, int):
        return b"I" + _lp_str(str(value))
    if isinstance(value, str):
        return b"S" + _lp_str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return b"B" + _lp(bytes(value))
    raise TypeError(
        f"column values must be bytes, str, int or None, not {type(value).__name__} "
        "(convert dates and decimals to their ISO or string form first)"
    )


def canonical_row(
    table: str,
    primary_key: str,
    columns: Sequence[tuple[str, ColumnValue]],
) -> bytes:
    """The unambiguous byte encoding of a row that the MAC digest is taken over.

    Every item is length-prefixed and every value type-tagged, so ``("ab", "c")``
    and ``("a", "bc")`` differ, ``None`` differs from ``""`` and from ``b""``, and
    ``1`` differs from ``"1"`` (``True`` equals ``1``: MariaDB stores both alike).
    Columns are encoded in the order given, which the caller fixes per table;
    duplicate column names are refused.
    """
    if not isinstance(table, str) or not table:
        raise ValueError("table must be a non-empty string")
    if not isinstance(primary_key, str) or not primary_key:
        raise ValueError("primary key must be a non-empty string")
    parts = [_ROW_PREFIX, _lp_str(table), _lp_str(primary_key), len(columns).to_bytes(4, "big")]
    append = parts.append
    seen: set[str] = set()
    for item in columns:
        name, value = item
        if not isinstance(name, str) or not name:
            raise ValueError("column names must be non-empty strings")
        if name in seen:
            raise ValueError(f"column {name!r} appears twice")
        seen.add(name)
        # What _lp_str and _encode_value make, inline for the common cases (every MAC
        # check of a read runs this for each column of each row).
        encoded = name.encode("utf-8")
        append(len(encoded).to_bytes(4, "big"))
        append(encoded)
        if value is None:
            append(b"N")
        elif type(value) is str:
            encoded = value.encode("utf-8")
            if len(encoded) > _MAX_LP:
                raise ValueError("value is too long to encode")
            append(b"S")
            append(len(encoded).to_bytes(4, "big"))
            append(encoded)
        else:
            append(_encode_value(value))
    return b"".join(parts)


def row_digest(canonical: bytes) -> bytes:
    """SHA-256 of a :func:`canonical_row` encoding (the "hash" of hash-then-encrypt)."""
    return hashlib.sha256(_as_bytes(canonical, "canonical row")).digest()


def _mac_aad(header: bytes, table: str, primary_key: str) -> bytes:
    return header + _lp(b"mac") + _lp_str(table) + _lp_str(primary_key)


def mac_tag(
    integrity_aead: ChaCha20Poly1305,
    key_id: int,
    nonce: bytes,
    digest: bytes,
    table: str,
    primary_key: str,
) -> bytes:
    """Encrypt a row digest under the integrity key: the row's stored MAC tag."""
    if not isinstance(digest, bytes | bytearray) or len(digest) != DIGEST_BYTES:
        raise ValueError(f"digest must be {DIGEST_BYTES} bytes (SHA-256)")
    header = _header(MAC_VERSION, key_id, nonce)
    return header + integrity_aead.encrypt(
        bytes(nonce), bytes(digest), _mac_aad(header, table, primary_key)
    )


def parse_mac(tag: bytes) -> ParsedCiphertext:
    """Split a MAC tag, e.g. to find which integrity key made it."""
    return _parse(tag, MAC_VERSION, "MAC tag", DIGEST_BYTES)


def verify_mac(
    integrity_aead: ChaCha20Poly1305,
    tag: bytes,
    table: str,
    primary_key: str,
    digest: bytes,
) -> bool:
    """True only if ``tag`` is this row's MAC; never raises, whatever ``tag`` holds."""
    try:
        parsed = parse_mac(tag)
        header = bytes(tag[:HEADER_BYTES])
        plain = integrity_aead.decrypt(
            parsed.nonce, parsed.body, _mac_aad(header, table, primary_key)
        )
        return isinstance(digest, bytes | bytearray) and hmac.compare_digest(plain, digest)
    except (InvalidTag, CiphertextFormatError, ValueError, TypeError, AttributeError):
        return False


# --------------------------------------------------------------------------- blind index

BLIND_INDEX_FIELDS: Final[frozenset[str]] = frozenset(
    {"family_name", "given_name", "date_of_birth", "phone", "mrn", "email"}
)

_APOSTROPHES: Final = dict.fromkeys(map(ord, "'\u2018\u2019\u02bc\u02b9\u0060\u00b4\u2032"))
# Letters that NFKD does not decompose but people type without the stroke/ligature.
_LETTER_FOLD: Final = str.maketrans(
    {
        "ø": "o",
        "đ": "d",
        "ð": "d",
        "ł": "l",
        "ħ": "h",
        "ŧ": "t",
        "\u0131": "i",
        "þ": "th",
        "æ": "ae",
        "œ": "oe",
    }
)
_DOB: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PHONE: Final = re.compile(r"\+?[0-9 ().\-/]+")
_MRN_SEPARATORS: Final = re.compile(r"[\s\-\u2010-\u2015\u2212]+")
_MRN: Final = re.compile(r"[A-Z0-9]+")


def _strip_marks(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if unicodedata.category(c) not in ("Mn", "Me"))


def _normalise_name(value: str) -> str:
    text = _strip_marks(value.translate(_APOSTROPHES))
    text = _strip_marks(text.casefold().translate(_LETTER_FOLD))
    kept = "".join(c if unicodedata.category(c)[0] in "LN" else " " for c in text)
    result = " ".join(kept.split())
    if not result:
        raise ValueError("name is empty after normalisation")
    return result


def _normalise_dob(value: str) -> str:
    text = value.strip()
    if _DOB.fullmatch(text) is None:
        raise ValueError("date of birth must be written YYYY-MM-DD")
    try:
        date(int(text[:4]), int(text[5:7]), int(text[8:]))
    except ValueError:
        raise ValueError("date of birth is not a real calendar date") from None
    return text


_phone_region = "DE"


def use_phone_region(region: str) -> None:
    """The clinic's region (ISO 3166-1 alpha-2): national numbers are read as numbers of
    it (setting `clinic_region`; changing it later changes the tokens of national
    numbers, so it is set once)."""
    global _phone_region
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{region!r} is not a region phone numbers are known for")
    _phone_region = region


def _normalise_phone(value: str) -> str:
    digits = _normalise_phone_digits(value)
    try:
        number = phonenumbers.parse(unicodedata.normalize("NFKC", value), _phone_region)
    except phonenumbers.NumberParseException:
        return digits
    if not phonenumbers.is_possible_number(number):
        return digits
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]


def _normalise_phone_digits(value: str) -> str:
    text = unicodedata.normalize("NFKC", value).strip()
    if _PHONE.fullmatch(text) is None:
        raise ValueError("phone number may contain only digits, spaces and + ( ) . - /")
    international = text.startswith("+")
    if international:
        text = text.replace("(0)", "")  # "+44 (0)20 …": the trunk 0 is not dialled from abroad
    digits = "".join(c for c in text if c.isdigit())
    if not international and digits.startswith("00"):
        digits = digits[2:]  # "0044 …" is the same number as "+44 …"
    if not 4 <= len(digits) <= 15:
        raise ValueError("phone number must have 4 to 15 digits")
    return digits


def _normalise_mrn(value: str) -> str:
    text = _MRN_SEPARATORS.sub("", unicodedata.normalize("NFKC", value)).upper()
    if _MRN.fullmatch(text) is None:
        raise ValueError("medical record number may contain only letters A-Z and digits")
    return text


def _normalise_email(value: str) -> str:
    text = unicodedata.normalize("NFC", value).strip().lower()
    local, at, domain = text.partition("@")
    if not at or not local or not domain or "@" in domain:
        raise ValueError("email address must look like local@domain")
    if any(c.isspace() or unicodedata.category(c) == "Cc" for c in text):
        raise ValueError("email address must not contain spaces or control characters")
    return text


def sounds(name: str) -> tuple[str, str]:
    """The Double Metaphone codes (primary, alternate) of a name, normalised as names are;
    ``Schmidt``, ``Schmitt`` and ``Schmid`` share theirs. Names without letters a code can
    be made of sound like themselves (their normalised form)."""
    normalised = _normalise_name(name)
    primary, alternate = doublemetaphone(normalised)
    if not primary:
        return normalised, normalised
    return primary, alternate or primary


SOUND_FIELDS: Final = frozenset({"family_sound", "family_sound_alt", "given_sound"})
"""Fields of a name's sound. For blind indexes both codes of the family name hash under
the one label ``family_sound``, so a primary code matches another name's alternate; in a
signed search's match check two names sound alike if they share a code."""
_LABELS: Final = {"family_sound_alt": "family_sound"}


def sound_alike(left: str, right: str) -> bool:
    """Do two names share a Double Metaphone code?"""
    return bool(set(sounds(left)) & set(sounds(right)))


_NORMALISERS: Final[dict[str, Callable[[str], str]]] = {
    "family_name": _normalise_name,
    "given_name": _normalise_name,
    "family_sound": lambda name: sounds(name)[0],
    "family_sound_alt": lambda name: sounds(name)[1],
    "given_sound": lambda name: sounds(name)[0],
    "date_of_birth": _normalise_dob,
    "phone": _normalise_phone,
    "phone_digits": _normalise_phone_digits,
    "mrn": _normalise_mrn,
    "email": _normalise_email,
}


def normalise(field: str, value: str) -> str:
    """Bring a searchable value to the one form both storing and searching hash.

    Rules per field (errors never echo the value, which is patient data):

    * ``family_name``, ``given_name``: apostrophes removed (``O'Brien`` = ``OBrien``);
      NFKD with accents and other combining marks dropped; case-folded (``ß`` → ``ss``);
      ø đ ð ł ħ ŧ þ æ œ and dotless i spelt o d d l h t th ae oe i; every other non-letter,
      non-digit (hyphen, dot, comma, …) becomes a space (``Smith-Jones`` =
      ``Smith Jones``); whitespace collapsed and trimmed. Spaces still count:
      ``Van Dijk`` ≠ ``Vandijk``.
    * ``date_of_birth``: ``YYYY-MM-DD`` only, and a real calendar date.
    * ``phone``: E.164 digits (``phonenumbers``), a national number read as one of the
      clinic's region (``use_phone_region``): with region DE, ``030 1234567`` =
      ``+49 30 1234567`` = ``0049 30 1234567`` = ``49301234567``; ``+44 (0)20 7946 0958``
      = ``442079460958``. A number that is not a possible one keeps ``phone_digits``.
    * ``phone_digits`` (tokens stored before numbers were read by region): digits only,
      separators ``space ( ) . - /`` allowed, letters refused; a leading ``+`` or ``00``
      introduces the country code, whose digits are kept, and the ``(0)`` of
      ``+44 (0)20 …`` is dropped; no country is guessed for a national number
      (``020 7946 0958`` stays ``02079460958``). 4 to 15 digits.
    * ``family_sound``, ``family_sound_alt``: the primary and the alternate Double
      Metaphone code of the normalised family name (``sounds``).
    * ``mrn`` (medical record number): spaces and hyphens removed, upper-cased,
      then only ``A-Z0-9``.
    * ``email``: trimmed and lower-cased (local part included), one ``@``.

    An unknown field raises ``ValueError``.
    """
    normaliser = _NORMALISERS.get(field)
    if normaliser is None:
        raise ValueError(f"no blind index is defined for field {field!r}")
    if not isinstance(value, str):
        raise TypeError(f"the value for {field} must be a string")
    result = normaliser(value)
    if "\x00" in result:  # pragma: no cover - every normaliser refuses or drops NUL
        raise ValueError(f"{field} contains a NUL character")
    return result


def hmac_sha256(key: bytes | bytearray, message: bytes) -> bytes:
    """HMAC-SHA-256, the primitive under :func:`blind_index` (checked by Wycheproof)."""
    return hmac.digest(key, message, "sha256")


def blind_index(key: KeyInput, field: str, value: str) -> str:
    """Deterministic search token for exact-match lookup of ``value`` in ``field``.

    HMAC-SHA-256 over ``field ‖ 0x00 ‖ normalise(field, value)`` under the
    blind-index key, truncated to 16 bytes (32 hex characters): the field name
    keeps equal values in different fields apart.
    """
    material = _key_material(key, "blind-index key")
    normalised = normalise(field, value)
    message = _LABELS.get(field, field).encode("ascii") + b"\x00" + normalised.encode("utf-8")
    return hmac_sha256(material, message)[:BLIND_INDEX_BYTES].hex()


def blind_index_compound(key: KeyInput, items: Sequence[tuple[str, str]]) -> str:
    """One search token for several fields together (e.g. family name + date of birth).

    A single compound token leaks less than one token per field (no per-name
    frequencies). HMAC over ``"f1+f2…" ‖ 0x00 ‖ v1 ‖ 0x00 ‖ v2 …`` with normalised
    values; order matters, field names must differ.
    """
    if not items:
        raise ValueError("a compound blind index needs at least one field")
    fields = [name for name, _ in items]
    if len(set(fields)) != len(fields):
        raise ValueError("a compound blind index cannot repeat a field")
    material = _key_material(key, "blind-index key")
    values = [normalise(name, value).encode("utf-8") for name, value in items]
    labels = [_LABELS.get(name, name) for name in fields]
    message = "+".join(labels).encode("ascii") + b"\x00" + b"\x00".join(values)
    return hmac_sha256(material, message)[:BLIND_INDEX_BYTES].hex()
