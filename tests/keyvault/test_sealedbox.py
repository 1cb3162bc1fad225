"""Sealed-box transport of unseal shares to the keyvault's X25519 key."""

from __future__ import annotations

import base64
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.public import PrivateKey, SealedBox

from services.keyvault.sealedbox import (
    MAX_SEALED_CHARS,
    SealedShareError,
    new_transport_key,
    open_share,
    public_key_b64,
    seal_share,
)
from services.keyvault.shamir import combine_shares, parse_share, split_root_key

SHARE = "mhs1-AQMBYWJjZGiyuHuJYjhjubBFX35f17C6MRoc__HDkvwrk2KzdK2YzfFDuA"


@pytest.fixture(scope="module")
def transport() -> PrivateKey:
    return new_transport_key()


def test_round_trip(transport: PrivateKey) -> None:
    sealed = seal_share(public_key_b64(transport), SHARE)
    assert SHARE not in sealed
    assert SHARE.encode() not in base64.b64decode(sealed)
    assert open_share(transport, sealed) == SHARE


def test_unseal_flow_end_to_end(transport: PrivateKey) -> None:
    """Shares sealed by three administrators, opened and combined by the keyvault."""
    root_key = secrets.token_bytes(32)
    texts = split_root_key(root_key, 3, 5, b"\x00\x01\x02\x03")
    public = public_key_b64(transport)
    sealed = [seal_share(public, text) for text in texts[1:4]]
    shares = [parse_share(open_share(transport, s)) for s in sealed]
    assert combine_shares(shares) == root_key


def test_public_key_format(transport: PrivateKey) -> None:
    text = public_key_b64(transport)
    assert len(text) == 44 and base64.b64decode(text) == bytes(transport.public_key)
    assert public_key_b64(transport.public_key) == text


def test_each_transport_key_is_new() -> None:
    assert public_key_b64(new_transport_key()) != public_key_b64(new_transport_key())


def test_sealing_is_randomised(transport: PrivateKey) -> None:
    public = public_key_b64(transport)
    assert seal_share(public, SHARE) != seal_share(public, SHARE)


def test_whitespace_around_base64_is_tolerated(transport: PrivateKey) -> None:
    sealed = seal_share(f"  {public_key_b64(transport)}\n", SHARE)
    assert open_share(transport, f"\n{sealed}  ") == SHARE


def test_another_keyvaults_key_cannot_open(transport: PrivateKey) -> None:
    sealed = seal_share(public_key_b64(new_transport_key()), SHARE)
    with pytest.raises(SealedShareError, match="does not open") as caught:
        open_share(transport, sealed)
    assert SHARE not in str(caught.value) and sealed not in str(caught.value)


def test_every_flipped_bit_is_refused(transport: PrivateKey) -> None:
    raw = base64.b64decode(seal_share(public_key_b64(transport), SHARE))
    for position in range(len(raw)):
        edited = bytearray(raw)
        edited[position] ^= 0x10
        with pytest.raises(SealedShareError):
            open_share(transport, base64.b64encode(bytes(edited)).decode())


def test_truncated_is_refused(transport: PrivateKey) -> None:
    raw = base64.b64decode(seal_share(public_key_b64(transport), SHARE))
    for length in (0, 1, 32, 48, len(raw) - 1):
        with pytest.raises(SealedShareError):
            open_share(transport, base64.b64encode(raw[:length]).decode())


def test_non_utf8_content_is_refused(transport: PrivateKey) -> None:
    sealed = SealedBox(transport.public_key).encrypt(b"\xff\xfe not text")
    with pytest.raises(SealedShareError, match="does not hold text"):
        open_share(transport, base64.b64encode(sealed).decode())


@pytest.mark.parametrize(
    ("garbage", "message"),
    [
        ("", "too short"),
        ("not base64!", "not valid base64"),
        ("YWJj", "too short"),
        ("YWJ", "not valid base64"),
        ("ü" * 10, "not valid base64"),
        ("A" * (MAX_SEALED_CHARS + 4), "too long"),
        (None, "must be base64 text"),
        (b"YWJj", "must be base64 text"),
    ],
)
def test_garbage_is_refused(transport: PrivateKey, garbage: object, message: str) -> None:
    with pytest.raises(SealedShareError, match=message):
        open_share(transport, garbage)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=150).map(lambda b: base64.b64encode(b).decode()))
def test_random_input_only_raises_sealed_share_error(text: str) -> None:
    with pytest.raises(SealedShareError):
        open_share(_FIXED_KEY, text)


_FIXED_KEY = PrivateKey.generate()


@pytest.mark.parametrize(
    ("public", "message"),
    [
        (base64.b64encode(bytes(31)).decode(), "32 bytes"),
        (base64.b64encode(bytes(33)).decode(), "32 bytes"),
        ("%%%", "not valid base64"),
        (base64.b64encode(bytes(32)).decode(), "not usable"),  # low-order point 0
        (base64.b64encode(b"\x01" + bytes(31)).decode(), "not usable"),  # low-order point 1
    ],
)
def test_bad_public_keys_refused(public: str, message: str) -> None:
    with pytest.raises(SealedShareError, match=message):
        seal_share(public, SHARE)


def test_share_text_must_be_a_string(transport: PrivateKey) -> None:
    with pytest.raises(TypeError):
        seal_share(public_key_b64(transport), SHARE.encode())  # type: ignore[arg-type]
