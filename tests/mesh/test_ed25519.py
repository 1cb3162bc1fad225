"""mesh/ed25519.py: only a genuine signature verifies, and hostile keys, signatures or
messages never raise, they just fail to verify."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from mesh.ed25519 import KEY_BYTES, SIGNATURE_BYTES, verify

KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
MESSAGE = b"POST /api/v1/patients"
SIGNATURE = KEY.sign(MESSAGE)
L = 2**252 + 27742317777372353535851937790883648493
"""The group order: adding it to S gives the same point but a non-canonical signature."""


def test_a_genuine_signature_verifies() -> None:
    assert verify(PUBLIC, SIGNATURE, MESSAGE) is True


def test_another_message_key_or_a_flipped_bit_does_not() -> None:
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert verify(PUBLIC, SIGNATURE, MESSAGE + b"?") is False
    assert verify(other, SIGNATURE, MESSAGE) is False
    for i in range(SIGNATURE_BYTES * 8):
        flipped = bytearray(SIGNATURE)
        flipped[i // 8] ^= 1 << (i % 8)
        assert verify(PUBLIC, bytes(flipped), MESSAGE) is False, f"bit {i}"


def test_a_non_canonical_signature_is_refused() -> None:
    s = int.from_bytes(SIGNATURE[32:], "little") + L
    assert s < 2**256
    malleated = SIGNATURE[:32] + s.to_bytes(32, "little")
    assert verify(PUBLIC, malleated, MESSAGE) is False


def test_small_order_and_degenerate_keys_verify_nothing() -> None:
    identity = (1).to_bytes(32, "little")  # the neutral point: 'verifies' S=0 forgeries
    forged = identity + bytes(32)
    for key in (identity, bytes(32), b"\xff" * 32, b"\xec" + b"\xff" * 30 + b"\x7f"):
        assert verify(key, forged, MESSAGE) is False
        assert verify(key, SIGNATURE, MESSAGE) is False


def test_wrong_lengths_are_refused_without_raising() -> None:
    for key in (b"", PUBLIC[:-1], PUBLIC + b"\0", PUBLIC * 2):
        assert verify(key, SIGNATURE, MESSAGE) is False
    for sig in (b"", SIGNATURE[:-1], SIGNATURE + b"\0"):
        assert verify(PUBLIC, sig, MESSAGE) is False


@given(
    key=st.one_of(st.binary(max_size=40), st.binary(min_size=KEY_BYTES, max_size=KEY_BYTES)),
    sig=st.one_of(
        st.binary(max_size=80), st.binary(min_size=SIGNATURE_BYTES, max_size=SIGNATURE_BYTES)
    ),
    message=st.binary(max_size=64),
)
def test_random_input_never_raises_and_never_verifies(
    key: bytes, sig: bytes, message: bytes
) -> None:
    assert verify(key, sig, message) is False
