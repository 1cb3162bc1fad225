"""The keyvault's formats: field ciphertext, nonces, key wrapping, check value, MAC,
blind index, and key hygiene."""

from __future__ import annotations

import copy
import hashlib
import hmac
import pickle
import secrets
from datetime import date

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from services.keyvault.ciphers import (
    BLIND_INDEX_FIELDS,
    CHECK_KEY_ID,
    HEADER_BYTES,
    MAX_KEY_ID,
    TAG_BYTES,
    CiphertextFormatError,
    ColumnValue,
    DecryptionError,
    FieldContext,
    KeyUnwrapError,
    KeyvaultCryptoError,
    KeyWipedError,
    NonceBlock,
    NonceBlockExhausted,
    RowContext,
    SecretKey,
    blind_index,
    blind_index_compound,
    canonical_row,
    check_root_key,
    decrypt_field,
    encrypt_field,
    mac_tag,
    make_check_value,
    nonce_for,
    normalise,
    open_field,
    parse_field,
    parse_mac,
    parse_wrapped_key,
    row_digest,
    unwrap_key,
    verify_mac,
    wrap_key,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
PREFIX = b"\x0a\x0b\x0c\x0d"
CTX = FieldContext("patients", "family_name", "3f1c-77")
AEAD = ChaCha20Poly1305(KEY)
OTHER_AEAD = ChaCha20Poly1305(OTHER_KEY)


def _fullwidth(text: str) -> str:
    """The full-width form of ASCII text (e.g. typed with an East Asian input method)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _field(plaintext: bytes = b"Lovelace", counter: int = 1, key_id: int = 7) -> bytes:
    return encrypt_field(AEAD, key_id, nonce_for(PREFIX, counter), plaintext, CTX)


# --------------------------------------------------------------------------- field ciphertext


def test_field_round_trip() -> None:
    blob = _field(b"Ada Lovelace")
    assert decrypt_field(AEAD, blob, CTX) == b"Ada Lovelace"
    assert decrypt_field(AEAD, blob, CTX, key_id=7) == b"Ada Lovelace"
    assert decrypt_field(AEAD, _field(b""), CTX) == b""


def test_field_layout() -> None:
    nonce = nonce_for(PREFIX, 0x0102)
    blob = encrypt_field(AEAD, 0xDEADBEEF, nonce, b"abc", CTX)
    assert len(blob) == 1 + 4 + 12 + 3 + 16
    assert blob[0] == 2
    assert blob[1:5] == bytes.fromhex("deadbeef")
    assert blob[5:17] == nonce
    parsed = parse_field(blob)
    assert parsed == (2, 0xDEADBEEF, nonce, blob[17:])
    assert (parsed.version, parsed.key_id, parsed.nonce) == (2, 0xDEADBEEF, nonce)


def _lp(text: str) -> bytes:
    return len(text.encode()).to_bytes(4, "big") + text.encode()


def test_field_aad_is_header_plus_length_prefixed_context_and_binding() -> None:
    """Pin the AAD (version 2) so other implementations (and migrations) can rely on it."""
    nonce = nonce_for(PREFIX, 5)
    bound = FieldContext(CTX.table, CTX.column, CTX.row_id, (("patient", "p-1"),))
    blob = encrypt_field(AEAD, 9, nonce, b"x", bound)
    aad = blob[:HEADER_BYTES] + _lp(CTX.table) + _lp(CTX.column) + _lp(CTX.row_id)
    aad += (1).to_bytes(4, "big") + _lp("patient") + _lp("p-1")
    assert AEAD.decrypt(nonce, blob[HEADER_BYTES:], aad) == b"x"


def test_version_1_still_decrypts_and_ignores_the_claimed_binding() -> None:
    """Ciphertext written before patient binding (version 1) reads as it always did."""
    nonce = nonce_for(PREFIX, 6)
    header = bytes([1]) + (9).to_bytes(4, "big") + nonce
    aad = header + _lp(CTX.table) + _lp(CTX.column) + _lp(CTX.row_id)
    blob = header + AEAD.encrypt(nonce, b"old", aad)
    assert parse_field(blob).version == 1
    assert decrypt_field(AEAD, blob, CTX) == b"old"
    claimed = FieldContext(CTX.table, CTX.column, CTX.row_id, (("patient", "anyone"),))
    assert decrypt_field(AEAD, blob, claimed) == b"old"


def test_a_row_claimed_for_another_patient_does_not_decrypt() -> None:
    mine = FieldContext(CTX.table, CTX.column, CTX.row_id, (("patient", "patient-a"),))
    theirs = FieldContext(CTX.table, CTX.column, CTX.row_id, (("patient", "patient-b"),))
    blob = encrypt_field(AEAD, 9, nonce_for(PREFIX, 7), b"chart of A", mine)
    assert decrypt_field(AEAD, blob, mine) == b"chart of A"
    for wrong in (theirs, CTX):
        with pytest.raises(DecryptionError):
            decrypt_field(AEAD, blob, wrong)


_NAMES = st.text(min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    table=_NAMES,
    column=_NAMES,
    row_id=_NAMES,
    binding=st.dictionaries(_NAMES, _NAMES, max_size=3),
    version=st.sampled_from([1, 2]),
)
def test_a_row_context_encodes_each_field_as_its_field_context_does(
    table: str, column: str, row_id: str, binding: dict[str, str], version: int
) -> None:
    """The keyvault's batch path (the row's context encoded once) binds the very same AAD."""
    pairs = tuple(sorted(binding.items()))
    row = RowContext(table, row_id, pairs)
    field = FieldContext(table, column, row_id, pairs)
    assert row.encode(column, version) == field.encode(version)
    assert row.field_context(column) == field
    assert row.describe(column) == str(field)


def test_open_field_decrypts_a_parsed_blob_only_for_its_own_row_and_column() -> None:
    mine = FieldContext(CTX.table, CTX.column, CTX.row_id, (("patient", "patient-a"),))
    blob = encrypt_field(AEAD, 9, nonce_for(PREFIX, 8), b"chart of A", mine)
    parsed = parse_field(blob)
    row = RowContext(CTX.table, CTX.row_id, (("patient", "patient-a"),))
    assert open_field(AEAD, parsed, row, CTX.column) == b"chart of A"
    for other_row, column in (
        (RowContext(CTX.table, CTX.row_id, (("patient", "patient-b"),)), CTX.column),
        (RowContext(CTX.table, CTX.row_id), CTX.column),
        (RowContext(CTX.table, "3f1c-78", (("patient", "patient-a"),)), CTX.column),
        (RowContext("staff", CTX.row_id, (("patient", "patient-a"),)), CTX.column),
        (row, "given_name"),
    ):
        with pytest.raises(DecryptionError, match="does not decrypt"):
            open_field(AEAD, parsed, other_row, column)
    with pytest.raises(DecryptionError):
        open_field(OTHER_AEAD, parsed, row, CTX.column)
    edited = parse_field(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(DecryptionError):
        open_field(AEAD, edited, row, CTX.column)


@pytest.mark.parametrize(
    ("table", "row_id", "binding", "error"),
    [
        ("", "r", (), ValueError),
        ("t", "", (), ValueError),
        (None, "r", (), TypeError),
        ("t", 7, (), TypeError),
        ("t", "r", (("patient", ""),), ValueError),
        ("t", "r", (("b", "1"), ("a", "2")), ValueError),
        ("t", "r", (("a", "1"), ("a", "2")), ValueError),
    ],
    ids=["empty-table", "empty-row", "table-none", "row-int", "empty-value", "unsorted", "twice"],
)
def test_a_row_context_refuses_what_a_field_context_refuses(
    table: object, row_id: object, binding: tuple[tuple[str, str], ...], error: type[Exception]
) -> None:
    with pytest.raises(error):
        RowContext(table, row_id, binding)  # type: ignore[arg-type]
    with pytest.raises(error):
        FieldContext(table, "c", row_id, binding)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="column"):
        RowContext("t", "r").encode("")


def test_field_plaintext_is_not_in_the_blob() -> None:
    blob = _field(b"Lovelace-Lovelace-Lovelace")
    assert b"Lovelace" not in blob


@pytest.mark.parametrize(
    "moved",
    [
        FieldContext("patients", "family_name", "3f1c-78"),
        FieldContext("patients", "given_name", "3f1c-77"),
        FieldContext("staff", "family_name", "3f1c-77"),
        FieldContext("patientsf", "amily_name", "3f1c-77"),  # same concatenation
        FieldContext("patients", "family_name3f1c", "-77"),
    ],
    ids=["other-row", "other-column", "other-table", "shifted-table", "shifted-row"],
)
def test_moved_ciphertext_fails(moved: FieldContext) -> None:
    with pytest.raises(DecryptionError, match="does not decrypt"):
        decrypt_field(AEAD, _field(), moved)


def test_wrong_key_fails() -> None:
    with pytest.raises(DecryptionError):
        decrypt_field(OTHER_AEAD, _field(), CTX)


def test_key_id_mismatch_is_refused_before_decrypting() -> None:
    with pytest.raises(DecryptionError, match="made under key 7, not key 8"):
        decrypt_field(AEAD, _field(key_id=7), CTX, key_id=8)


def test_every_flipped_bit_fails() -> None:
    blob = _field(b"Hopper")
    for position in range(len(blob)):
        for bit in range(8):
            edited = bytearray(blob)
            edited[position] ^= 1 << bit
            with pytest.raises(KeyvaultCryptoError):
                decrypt_field(AEAD, bytes(edited), CTX)


def test_every_truncation_fails() -> None:
    blob = _field(b"Hopper")
    for length in range(len(blob)):
        with pytest.raises(KeyvaultCryptoError):
            decrypt_field(AEAD, blob[:length], CTX)
    with pytest.raises(CiphertextFormatError, match="too short"):
        parse_field(blob[: HEADER_BYTES + TAG_BYTES - 1])


def test_appended_bytes_fail() -> None:
    with pytest.raises(DecryptionError):
        decrypt_field(AEAD, _field() + b"\x00", CTX)


@pytest.mark.parametrize("version", [0, 3, 255])
def test_wrong_version_fails(version: int) -> None:
    blob = bytes([version]) + _field()[1:]
    with pytest.raises(CiphertextFormatError, match=f"unsupported version {version}"):
        parse_field(blob)
    with pytest.raises(CiphertextFormatError):
        decrypt_field(AEAD, blob, CTX)


@pytest.mark.parametrize("garbage", [None, "text", 12, [1, 2]])
def test_parse_field_refuses_non_bytes(garbage: object) -> None:
    with pytest.raises(CiphertextFormatError):
        parse_field(garbage)  # type: ignore[arg-type]


def test_encrypt_field_validates_its_inputs() -> None:
    nonce = nonce_for(PREFIX, 1)
    with pytest.raises(ValueError, match="nonce must be 12 bytes"):
        encrypt_field(AEAD, 1, nonce[:11], b"x", CTX)
    with pytest.raises(ValueError, match="key id"):
        encrypt_field(AEAD, MAX_KEY_ID + 1, nonce, b"x", CTX)
    with pytest.raises(ValueError, match="key id"):
        encrypt_field(AEAD, -1, nonce, b"x", CTX)
    with pytest.raises(TypeError, match="key id"):
        encrypt_field(AEAD, True, nonce, b"x", CTX)
    with pytest.raises(TypeError, match="plaintext"):
        encrypt_field(AEAD, 1, nonce, "text", CTX)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="FieldContext"):
        encrypt_field(AEAD, 1, nonce, b"x", ("t", "c", "r"))  # type: ignore[arg-type]
    assert parse_field(encrypt_field(AEAD, MAX_KEY_ID, nonce, b"x", CTX)).key_id == MAX_KEY_ID


def test_field_context_is_frozen_and_validated() -> None:
    with pytest.raises(AttributeError):
        CTX.row_id = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match="row_id"):
        FieldContext("patients", "family_name", "")
    with pytest.raises(TypeError, match="row_id"):
        FieldContext("patients", "family_name", 17)  # type: ignore[arg-type]
    assert str(CTX) == "patients/family_name/3f1c-77"


def test_decryption_error_names_the_place_but_no_secrets() -> None:
    blob = _field(b"secret plaintext")
    with pytest.raises(DecryptionError) as caught:
        decrypt_field(OTHER_AEAD, blob, CTX)
    message = str(caught.value)
    assert "patients/family_name/3f1c-77" in message
    for secret in (KEY, OTHER_KEY, b"secret plaintext"):
        assert secret.hex() not in message and repr(secret) not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


# --------------------------------------------------------------------------- nonces


def test_nonce_layout() -> None:
    assert nonce_for(PREFIX, 0) == PREFIX + bytes(8)
    assert nonce_for(PREFIX, 1) == PREFIX + bytes(7) + b"\x01"
    assert nonce_for(PREFIX, 2**64 - 1) == PREFIX + b"\xff" * 8
    assert nonce_for(PREFIX, 0x0102030405060708) == PREFIX + bytes(range(1, 9))


@pytest.mark.parametrize("counter", [-1, 2**64, 2**80])
def test_nonce_counter_out_of_range(counter: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        nonce_for(PREFIX, counter)


@pytest.mark.parametrize("prefix", [b"", b"abc", b"abcde"])
def test_nonce_prefix_must_be_4_bytes(prefix: bytes) -> None:
    with pytest.raises(ValueError, match="prefix"):
        nonce_for(prefix, 1)


def test_nonce_block_hands_out_each_counter_once() -> None:
    block = NonceBlock(3, PREFIX, 1000, 1100)
    assert block.remaining == 100 and not block.exhausted
    nonces = [block.next_nonce() for _ in range(100)]
    assert len(set(nonces)) == 100
    assert nonces[0] == nonce_for(PREFIX, 1000) and nonces[-1] == nonce_for(PREFIX, 1099)
    assert block.exhausted and block.remaining == 0
    with pytest.raises(NonceBlockExhausted, match="key 3"):
        block.next_nonce()
    with pytest.raises(NonceBlockExhausted):
        block.next_counter()


def test_nonce_block_counters_in_order() -> None:
    block = NonceBlock(1, PREFIX, 0, 3)
    assert [block.next_counter() for _ in range(3)] == [0, 1, 2]
    assert "next=3" in repr(block)


def test_nonce_block_at_the_top_of_the_counter_space() -> None:
    block = NonceBlock(1, PREFIX, 2**64 - 2, 2**64)
    assert block.next_nonce() == PREFIX + b"\xff" * 7 + b"\xfe"
    assert block.next_nonce() == PREFIX + b"\xff" * 8
    assert block.exhausted


@pytest.mark.parametrize(
    ("start", "end"),
    [(5, 5), (6, 5), (-1, 3), (0, 2**64 + 1)],
    ids=["empty", "reversed", "neg", "over"],
)
def test_nonce_block_bounds(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="start < end"):
        NonceBlock(1, PREFIX, start, end)


def test_adjacent_blocks_never_share_a_nonce() -> None:
    first, second = NonceBlock(1, PREFIX, 0, 50), NonceBlock(1, PREFIX, 50, 100)
    a = {first.next_nonce() for _ in range(50)}
    b = {second.next_nonce() for _ in range(50)}
    assert a.isdisjoint(b)


# --------------------------------------------------------------------------- key wrapping


@pytest.mark.parametrize("purpose", ["data", "integrity", "blind_index"])
def test_wrap_round_trip(purpose: str) -> None:
    data_key = secrets.token_bytes(32)
    wrapped = wrap_key(AEAD, 12, purpose, data_key)  # type: ignore[arg-type]
    assert len(wrapped) == HEADER_BYTES + 32 + TAG_BYTES
    assert data_key not in wrapped
    unwrapped = unwrap_key(AEAD, 12, purpose, wrapped)  # type: ignore[arg-type]
    assert type(unwrapped) is bytearray and unwrapped == data_key


def test_wrap_accepts_secret_keys_and_is_random_by_default() -> None:
    data_key = SecretKey.generate()
    first, second = wrap_key(AEAD, 1, "data", data_key), wrap_key(AEAD, 1, "data", data_key)
    assert first != second and parse_wrapped_key(first).nonce != parse_wrapped_key(second).nonce
    assert SecretKey.adopt(unwrap_key(AEAD, 1, "data", second)) == data_key


def test_wrap_with_a_given_nonce_is_deterministic() -> None:
    nonce = bytes(12)
    assert wrap_key(AEAD, 1, "data", KEY, nonce) == wrap_key(AEAD, 1, "data", KEY, nonce)


def test_wrapped_key_bound_to_id_purpose_and_root_key() -> None:
    wrapped = wrap_key(AEAD, 5, "data", OTHER_KEY)
    with pytest.raises(KeyUnwrapError, match="for key 5, not key 6"):
        unwrap_key(AEAD, 6, "data", wrapped)
    relabelled = wrapped[:1] + (6).to_bytes(4, "big") + wrapped[5:]
    with pytest.raises(KeyUnwrapError, match="does not unwrap"):
        unwrap_key(AEAD, 6, "data", relabelled)
    with pytest.raises(KeyUnwrapError, match=r"5 \(integrity\) does not unwrap"):
        unwrap_key(AEAD, 5, "integrity", wrapped)
    with pytest.raises(KeyUnwrapError):
        unwrap_key(OTHER_AEAD, 5, "data", wrapped)


def test_every_flipped_bit_of_a_wrapped_key_fails() -> None:
    wrapped = wrap_key(AEAD, 5, "blind_index", OTHER_KEY)
    for position in range(len(wrapped)):
        edited = bytearray(wrapped)
        edited[position] ^= 0x80
        with pytest.raises(KeyvaultCryptoError):
            unwrap_key(AEAD, 5, "blind_index", bytes(edited))


def test_wrap_refuses_bad_inputs() -> None:
    with pytest.raises(ValueError, match="purpose"):
        wrap_key(AEAD, 1, "check", KEY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="purpose"):
        unwrap_key(AEAD, 1, "session", b"")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="32 bytes"):
        wrap_key(AEAD, 1, "data", KEY[:16])
    with pytest.raises(ValueError, match="nonce"):
        wrap_key(AEAD, 1, "data", KEY, b"short")
    with pytest.raises(CiphertextFormatError, match="wrong length"):
        unwrap_key(AEAD, 1, "data", wrap_key(AEAD, 1, "data", KEY)[:-1])


def test_unwrap_error_holds_no_key_bytes() -> None:
    wrapped = wrap_key(AEAD, 5, "data", OTHER_KEY)
    with pytest.raises(KeyUnwrapError) as caught:
        unwrap_key(OTHER_AEAD, 5, "data", wrapped)
    for secret in (KEY, OTHER_KEY):
        assert secret.hex() not in str(caught.value) and repr(secret) not in str(caught.value)


# --------------------------------------------------------------------------- check value


def test_check_value_accepts_only_the_right_root_key() -> None:
    check = make_check_value(KEY)
    assert check_root_key(KEY, check)
    assert check_root_key(SecretKey(KEY), check)
    assert check_root_key(bytearray(KEY), check)
    assert not check_root_key(OTHER_KEY, check)
    assert parse_wrapped_key(check).key_id == CHECK_KEY_ID
    assert make_check_value(KEY) != check  # random nonce


def test_check_value_garbage_is_false_not_an_error() -> None:
    check = make_check_value(KEY)
    for garbage in (b"", b"\x01", check[:-1], check + b"\x00", bytes(len(check)), "text", None):
        assert not check_root_key(KEY, garbage)  # type: ignore[arg-type]
    for position in range(len(check)):
        edited = bytearray(check)
        edited[position] ^= 1
        assert not check_root_key(KEY, bytes(edited))


def test_a_wrapped_key_is_not_a_check_value() -> None:
    """Same shape, but bound to another purpose (and key id): never confused."""
    wrapped = wrap_key(AEAD, CHECK_KEY_ID, "data", b"medihaven keyvault root check v1")
    assert not check_root_key(KEY, wrapped)
    with pytest.raises(KeyUnwrapError):
        unwrap_key(AEAD, CHECK_KEY_ID, "data", make_check_value(KEY))


def test_check_value_needs_a_32_byte_root_key() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        make_check_value(KEY[:31])


# --------------------------------------------------------------------------- row MAC

ROW: list[tuple[str, ColumnValue]] = [
    ("username", "dr.house"),
    ("role", "physician"),
    ("public_key", bytes(range(32))),
    ("disabled", 0),
    ("disabled_at", None),
]


def _mac(
    columns: list[tuple[str, ColumnValue]] = ROW,
    table: str = "accounts",
    pk: str = "42",
    counter: int = 1,
) -> bytes:
    digest = row_digest(canonical_row(table, pk, columns))
    return mac_tag(AEAD, 2, nonce_for(PREFIX, counter), digest, table, pk)


def _verify(
    tag: bytes,
    columns: list[tuple[str, ColumnValue]] = ROW,
    table: str = "accounts",
    pk: str = "42",
) -> bool:
    return verify_mac(AEAD, tag, table, pk, row_digest(canonical_row(table, pk, columns)))


def test_mac_round_trip_and_layout() -> None:
    tag = _mac()
    assert _verify(tag)
    assert len(tag) == HEADER_BYTES + 32 + TAG_BYTES
    parsed = parse_mac(tag)
    assert (parsed.version, parsed.key_id, parsed.nonce) == (1, 2, nonce_for(PREFIX, 1))


def test_mac_digest_is_encrypted() -> None:
    digest = row_digest(canonical_row("accounts", "42", ROW))
    assert digest not in _mac()


def test_mac_digest_is_sha256_of_the_canonical_row() -> None:
    canonical = canonical_row("accounts", "42", ROW)
    assert row_digest(canonical) == hashlib.sha256(canonical).digest()


@pytest.mark.parametrize("index", range(len(ROW)))
def test_any_column_change_fails(index: int) -> None:
    tag = _mac()
    name, value = ROW[index]
    changes: list[ColumnValue] = [None, "", b"", 0, 1, "x", b"\x00"]
    for changed in changes:
        if changed == value and type(changed) is type(value):
            continue
        edited = list(ROW)
        edited[index] = (name, changed)
        assert not _verify(tag, edited), f"{name}={changed!r} was accepted"
    renamed = list(ROW)
    renamed[index] = (name + "_", value)
    assert not _verify(tag, renamed)
    assert not _verify(tag, ROW[:index] + ROW[index + 1 :])


def test_column_added_or_reordered_fails() -> None:
    tag = _mac()
    assert not _verify(tag, [*ROW, ("extra", None)])
    assert not _verify(tag, list(reversed(ROW)))


def test_primary_key_or_table_change_fails() -> None:
    tag = _mac()
    assert not _verify(tag, pk="43")
    assert not _verify(tag, table="staff")


def test_tag_bound_to_table_and_pk_even_with_the_same_digest() -> None:
    digest = row_digest(canonical_row("accounts", "42", ROW))
    tag = mac_tag(AEAD, 2, nonce_for(PREFIX, 1), digest, "accounts", "42")
    assert verify_mac(AEAD, tag, "accounts", "42", digest)
    assert not verify_mac(AEAD, tag, "accounts", "43", digest)
    assert not verify_mac(AEAD, tag, "registration_tokens", "42", digest)
    assert not verify_mac(AEAD, tag, "accounts4", "2", digest)


def test_mac_fails_under_another_key() -> None:
    digest = row_digest(canonical_row("accounts", "42", ROW))
    assert not verify_mac(OTHER_AEAD, _mac(), "accounts", "42", digest)


def test_every_flipped_bit_of_a_mac_fails() -> None:
    tag = _mac()
    for position in range(len(tag)):
        for bit in (0, 3, 7):
            edited = bytearray(tag)
            edited[position] ^= 1 << bit
            assert not _verify(bytes(edited))


def test_mac_from_another_row_fails() -> None:
    other = [("username", "dr.wilson"), *ROW[1:]]
    assert not _verify(_mac(other, pk="43"), pk="42")


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x01", bytes(65), bytes(200), None, "tag", 12, object(), bytearray(65)],
    ids=["empty", "one", "zeros", "long", "none", "str", "int", "object", "bytearray"],
)
def test_verify_mac_never_raises(garbage: object) -> None:
    digest = row_digest(canonical_row("accounts", "42", ROW))
    assert verify_mac(AEAD, garbage, "accounts", "42", digest) is False  # type: ignore[arg-type]
    assert verify_mac(AEAD, _mac(), "accounts", "42", garbage) is False  # type: ignore[arg-type]
    assert verify_mac(AEAD, _mac(), garbage, "42", digest) is False  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_random_tags_are_refused(tag: bytes) -> None:
    assert not _verify(tag)


def test_mac_tag_needs_a_sha256_digest() -> None:
    with pytest.raises(ValueError, match="digest"):
        mac_tag(AEAD, 1, nonce_for(PREFIX, 1), b"short", "accounts", "1")


# --------------------------------------------------------------------------- canonical row


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ([("x", "ab"), ("y", "c")], [("x", "a"), ("y", "bc")]),
        ([("ab", "c")], [("a", "bc")]),
        ([("x", None)], [("x", "")]),
        ([("x", None)], [("x", b"")]),
        ([("x", "")], [("x", b"")]),
        ([("x", 1)], [("x", "1")]),
        ([("x", 1)], [("x", b"1")]),
        ([("x", 0)], [("x", None)]),
        ([("x", -1)], [("x", 1)]),
        ([("x", "é")], [("x", "e\u0301")]),  # no hidden Unicode normalisation
        ([], [("x", None)]),
        ([("x", None), ("y", None)], [("y", None), ("x", None)]),
    ],
)
def test_canonical_row_is_unambiguous(
    left: list[tuple[str, ColumnValue]], right: list[tuple[str, ColumnValue]]
) -> None:
    assert canonical_row("t", "1", left) != canonical_row("t", "1", right)


def _spec_value(value: ColumnValue) -> bytes:
    if value is None:
        return b"N"
    if isinstance(value, bool | int):
        return b"I" + _lp(str(int(value)))
    if isinstance(value, str):
        return b"S" + _lp(value)
    raw = bytes(value)
    return b"B" + len(raw).to_bytes(4, "big") + raw


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(), st.binary(), st.binary().map(bytearray)
)


@settings(max_examples=300, deadline=None)
@given(
    table=st.text(min_size=1),
    pk=st.text(min_size=1),
    columns=st.dictionaries(st.text(min_size=1), _VALUES, max_size=12),
)
def test_canonical_row_is_the_specified_encoding(
    table: str, pk: str, columns: dict[str, ColumnValue]
) -> None:
    """Pinned against the encoding written out plainly (stored MACs depend on every byte):
    label, table, primary key, column count, then each name and type-tagged value."""
    items = list(columns.items())
    spec = _lp("medihaven.row.v1") + _lp(table) + _lp(pk) + len(items).to_bytes(4, "big")
    spec += b"".join(_lp(name) + _spec_value(value) for name, value in items)
    assert canonical_row(table, pk, items) == spec


def test_canonical_row_separates_table_and_primary_key() -> None:
    assert canonical_row("ab", "c", []) != canonical_row("a", "bc", [])
    assert canonical_row("t", "1", []) != canonical_row("t", "2", [])


def test_canonical_row_treats_bool_as_its_stored_integer() -> None:
    assert canonical_row("t", "1", [("x", True)]) == canonical_row("t", "1", [("x", 1)])
    assert canonical_row("t", "1", [("x", b"a")]) == canonical_row(
        "t", "1", [("x", bytearray(b"a"))]
    )


def test_canonical_row_refuses_ambiguous_or_unknown_input() -> None:
    with pytest.raises(ValueError, match="twice"):
        canonical_row("t", "1", [("x", 1), ("x", 1)])
    with pytest.raises(ValueError, match="column names"):
        canonical_row("t", "1", [("", 1)])
    with pytest.raises(ValueError, match="table"):
        canonical_row("", "1", [])
    with pytest.raises(ValueError, match="primary key"):
        canonical_row("t", "", [])
    for value in (1.5, date(2020, 1, 1), [1], {"a": 1}):
        with pytest.raises(TypeError, match="column values"):
            canonical_row("t", "1", [("x", value)])  # type: ignore[list-item]


_values = st.one_of(
    st.none(), st.text(max_size=6), st.binary(max_size=6), st.integers(-(2**70), 2**70)
)
_rows = st.tuples(
    st.text(min_size=1, max_size=4),
    st.text(min_size=1, max_size=4),
    st.lists(
        st.tuples(st.text(min_size=1, max_size=4), _values),
        max_size=4,
        unique_by=lambda item: item[0],
    ),
)


@settings(max_examples=300, deadline=None)
@given(_rows, _rows)
def test_canonical_row_is_injective(
    a: tuple[str, str, list[tuple[str, ColumnValue]]],
    b: tuple[str, str, list[tuple[str, ColumnValue]]],
) -> None:
    def typed(row: tuple[str, str, list[tuple[str, ColumnValue]]]) -> object:
        table, pk, cols = row
        return table, pk, [(name, type(value).__name__, value) for name, value in cols]

    same_encoding = canonical_row(*a) == canonical_row(*b)
    assert same_encoding == (typed(a) == typed(b))


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Müller", "muller"),
        ("MÜLLER", "muller"),
        ("Mu\u0308ller", "muller"),  # decomposed ü
        ("  José   María \t", "jose maria"),
        ("O'Brien", "obrien"),
        ("O\u2019Brien", "obrien"),
        ("O\u00b4Brien", "obrien"),
        ("Smith-Jones", "smith jones"),
        ("Smith \u2013 Jones", "smith jones"),
        ("St. John", "st john"),
        ("Straße", "strasse"),
        ("Sørensen", "sorensen"),
        ("Łukasiewicz", "lukasiewicz"),
        ("Ærøskøbing", "aeroskobing"),
        ("Nguyễn", "nguyen"),
        ("Çelik", "celik"),
        (_fullwidth("Fullwidth"), "fullwidth"),
        ("Ἀριστοτέλης", "αριστοτελησ"),  # the final sigma folds too
        ("Louis XIV", "louis xiv"),
        ("Name\x00With\nControls", "name with controls"),
    ],
)
def test_name_normalisation(raw: str, expected: str) -> None:
    assert normalise("family_name", raw) == expected
    assert normalise("given_name", raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "'", "-", "…", "''--''"])
def test_empty_names_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        normalise("family_name", raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+44 20 7946 0958", "442079460958"),
        ("+44 (0)20 7946 0958", "442079460958"),
        ("0044 20 7946 0958", "442079460958"),
        ("+44-20-7946-0958", "442079460958"),
        # National numbers are read as numbers of the clinic's region (DE by default).
        ("030 1234567", "49301234567"),
        ("0049 30 1234567", "49301234567"),
        ("(030) 123-4567", "49301234567"),
        ("+1 555 123 4567", "15551234567"),
        ("+49/30/1234567", "49301234567"),
        (_fullwidth("+44 20 7946 0958"), "442079460958"),
        ("  +33 1 23 45 67 89 ", "33123456789"),
    ],
)
def test_phone_normalisation(raw: str, expected: str) -> None:
    assert normalise("phone", raw) == expected


def test_national_numbers_follow_the_clinic_region() -> None:
    from services.keyvault import ciphers

    assert normalise("phone", "020 7946 0958") == "492079460958"
    ciphers.use_phone_region("GB")
    try:
        assert normalise("phone", "020 7946 0958") == "442079460958"
        assert normalise("phone", "+44 20 7946 0958") == "442079460958"
    finally:
        ciphers.use_phone_region("DE")
    with pytest.raises(ValueError, match="region"):
        ciphers.use_phone_region("XX")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("020 7946 0958", "02079460958"),
        ("(555) 123-4567", "5551234567"),
        ("+44 (0)20 7946 0958", "442079460958"),
        ("0044 20 7946 0958", "442079460958"),
    ],
)
def test_phone_digits_as_stored_before_regions(raw: str, expected: str) -> None:
    """Tokens stored before numbers were read by region: searches still make these."""
    assert normalise("phone_digits", raw) == expected


@pytest.mark.parametrize(
    ("left", "right", "alike"),
    [
        ("Schmidt", "Schmitt", True),
        ("Schmid", "Schmidt", True),
        ("Smith", "Schmidt", True),  # Smith's alternate code is Schmidt's primary
        ("Meyer", "Maier", True),
        ("Müller", "Mueller", True),
        ("O'Brien", "OBrien", True),
        ("Schmidt", "Becker", False),
        ("Anna", "Hanna", False),
    ],
)
def test_names_that_sound_alike(left: str, right: str, alike: bool) -> None:
    from services.keyvault import ciphers

    assert ciphers.sound_alike(left, right) is alike


def test_both_sound_codes_hash_under_one_label() -> None:
    """A patient's alternate-code token equals another name's primary-code token."""
    from services.keyvault import ciphers

    key = bytes(32)
    smith_alt = ciphers.blind_index_compound(
        key, [("family_sound_alt", "Smith"), ("date_of_birth", "1980-01-02")]
    )
    schmidt = ciphers.blind_index_compound(
        key, [("family_sound", "Schmidt"), ("date_of_birth", "1980-01-02")]
    )
    other_day = ciphers.blind_index_compound(
        key, [("family_sound", "Schmidt"), ("date_of_birth", "1980-01-03")]
    )
    assert smith_alt == schmidt != other_day


@pytest.mark.parametrize(
    "raw", ["555-CALL-NOW", "+44 20 7946 0958 ext 12", "1+2", "12", "", "+" + "1" * 16, "٣٣٣٣٣"]
)
def test_bad_phone_numbers_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="phone"):
        normalise("phone", raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1990-02-28", "1990-02-28"), (" 2000-02-29\n", "2000-02-29"), ("1899-12-31", "1899-12-31")],
)
def test_date_of_birth_normalisation(raw: str, expected: str) -> None:
    assert normalise("date_of_birth", raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("1990-02-30", "real calendar date"),
        ("1900-02-29", "real calendar date"),
        ("1990-13-01", "real calendar date"),
        ("1990-00-10", "real calendar date"),
        ("1990-2-3", "YYYY-MM-DD"),
        ("03/02/1990", "YYYY-MM-DD"),
        ("19900203", "YYYY-MM-DD"),
        ("1990-W05-6", "YYYY-MM-DD"),
        ("1990-02-03T00:00", "YYYY-MM-DD"),
        (_fullwidth("1990") + "-02-03", "YYYY-MM-DD"),
        ("", "YYYY-MM-DD"),
    ],
)
def test_bad_dates_of_birth_refused(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        normalise("date_of_birth", raw)
    if raw:
        assert raw not in str(caught.value)  # patient data stays out of errors


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("mrn-0012 345", "MRN0012345"),
        (" ab 12-34 ", "AB1234"),
        (_fullwidth("AB12"), "AB12"),
        ("x\u20101", "X1"),
    ],
)
def test_mrn_normalisation(raw: str, expected: str) -> None:
    assert normalise("mrn", raw) == expected


@pytest.mark.parametrize("raw", ["", " - ", "AB/12", "AB.12", "ÄB12"])
def test_bad_mrns_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="medical record number"):
        normalise("mrn", raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" Ada.Lovelace@Example.ORG ", "ada.lovelace@example.org"), ("A@B", "a@b")],
)
def test_email_normalisation(raw: str, expected: str) -> None:
    assert normalise("email", raw) == expected


@pytest.mark.parametrize("raw", ["", "no-at-sign", "@example.org", "ada@", "a@b@c", "a b@c.org"])
def test_bad_emails_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="email"):
        normalise("email", raw)


def test_unknown_field_refused() -> None:
    with pytest.raises(ValueError, match="no blind index"):
        normalise("diagnosis", "flu")
    with pytest.raises(ValueError, match="no blind index"):
        blind_index(KEY, "diagnosis", "flu")


def test_non_string_value_refused() -> None:
    with pytest.raises(TypeError):
        normalise("family_name", b"Muller")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(sorted(BLIND_INDEX_FIELDS)), value=st.text(max_size=30))
def test_normalise_is_idempotent_or_refuses(field: str, value: str) -> None:
    try:
        once = normalise(field, value)
    except ValueError:
        return
    assert normalise(field, once) == once
    assert "\x00" not in once


# --------------------------------------------------------------------------- blind index


def test_blind_index_known_answer() -> None:
    expected = hmac.new(KEY, b"family_name\x00muller", hashlib.sha256).digest()[:16].hex()
    assert blind_index(KEY, "family_name", " MÜLLER ") == expected
    assert len(expected) == 32


def test_blind_index_is_deterministic_over_normal_forms() -> None:
    forms = ["Müller", "MULLER", " muller ", "Mu\u0308ller"]
    assert len({blind_index(KEY, "family_name", f) for f in forms}) == 1
    phones = ["+44 20 7946 0958", "0044 20 7946 0958", "+44 (0)20 7946 0958"]
    assert len({blind_index(KEY, "phone", p) for p in phones}) == 1


def test_blind_index_separates_fields_and_keys() -> None:
    assert blind_index(KEY, "family_name", "Grace") != blind_index(KEY, "given_name", "Grace")
    assert blind_index(KEY, "family_name", "Grace") != blind_index(
        OTHER_KEY, "family_name", "Grace"
    )
    assert blind_index(KEY, "family_name", "Grace") != blind_index(KEY, "family_name", "Hopper")


def test_blind_index_accepts_secret_keys_and_needs_32_bytes() -> None:
    assert blind_index(SecretKey(KEY), "mrn", "A1") == blind_index(KEY, "mrn", "a-1")
    with pytest.raises(ValueError, match="32 bytes"):
        blind_index(KEY[:16], "mrn", "A1")


def test_compound_blind_index() -> None:
    items = [("family_name", "Müller"), ("date_of_birth", "1990-02-28")]
    token = blind_index_compound(KEY, items)
    expected = hmac.new(
        KEY, b"family_name+date_of_birth\x00muller\x001990-02-28", hashlib.sha256
    ).digest()[:16]
    assert token == expected.hex()
    assert blind_index_compound(KEY, [("family_name", "MULLER"), items[1]]) == token
    assert blind_index_compound(KEY, list(reversed(items))) != token
    assert blind_index_compound(KEY, items[:1]) == blind_index(KEY, "family_name", "Müller")
    assert token not in {blind_index(KEY, f, v) for f, v in items}
    with pytest.raises(ValueError, match="repeat"):
        blind_index_compound(KEY, [items[0], items[0]])
    with pytest.raises(ValueError, match="at least one"):
        blind_index_compound(KEY, [])


# --------------------------------------------------------------------------- key hygiene


def test_secret_key_repr_hides_the_bytes() -> None:
    key = SecretKey(KEY)
    for shown in (repr(key), str(key), f"{key}", f"{key!r}", repr([key]), repr({"k": key})):
        assert KEY.hex() not in shown
        assert repr(KEY) not in shown
        assert "redacted" in shown


def test_secret_key_cannot_be_pickled_or_copied() -> None:
    key = SecretKey(KEY)
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(key)
    with pytest.raises(TypeError):
        copy.copy(key)
    with pytest.raises(TypeError):
        copy.deepcopy(key)


def test_wipe_zeroes_the_buffer_in_place() -> None:
    key = SecretKey(KEY)
    buffer = key.reveal()
    key.wipe()
    assert buffer == bytearray(32)
    assert key.wiped and repr(key) == "SecretKey(<wiped>)"
    with pytest.raises(KeyWipedError):
        key.reveal()
    with pytest.raises(KeyWipedError):
        key.aead()
    with pytest.raises(KeyWipedError):
        blind_index(key, "mrn", "A1")


def test_adopt_takes_the_buffer_without_copying() -> None:
    buffer = bytearray(KEY)
    key = SecretKey.adopt(buffer)
    assert key.reveal() is buffer
    key.wipe()
    assert buffer == bytearray(32)
    with pytest.raises(TypeError):
        SecretKey.adopt(KEY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="32 bytes"):
        SecretKey.adopt(bytearray(16))


def test_secret_key_construction_copies_and_validates() -> None:
    source = bytearray(KEY)
    key = SecretKey(source)
    source[:] = bytes(32)
    assert key.reveal() == KEY
    with pytest.raises(ValueError, match="32 bytes"):
        SecretKey(b"short")
    with pytest.raises(TypeError):
        SecretKey("x" * 32)  # type: ignore[arg-type]


def test_secret_key_equality_is_by_value_and_not_hashable() -> None:
    assert SecretKey(KEY) == SecretKey(KEY)
    assert SecretKey(KEY) != SecretKey(OTHER_KEY)
    assert SecretKey(KEY) != KEY
    wiped = SecretKey(KEY)
    wiped.wipe()
    assert wiped != SecretKey(bytes(32))
    with pytest.raises(TypeError):
        hash(SecretKey(KEY))


def test_generated_keys_differ_and_work() -> None:
    a, b = SecretKey.generate(), SecretKey.generate()
    assert a != b and len(a) == 32
    blob = encrypt_field(a.aead(), 1, nonce_for(PREFIX, 1), b"x", CTX)
    assert decrypt_field(a.aead(), blob, CTX) == b"x"
