"""Project Wycheproof vectors through the exact primitives the mesh relies on.

ChaCha20-Poly1305 via ``cryptography`` (field ciphertexts, key wrapping, MAC tags),
HMAC-SHA-256 via :func:`services.keyvault.ciphers.hmac_sha256` (blind indexes), X25519
via PyNaCl's ``crypto_scalarmult`` (sealed-box transport of unseal shares), and Ed25519
via :func:`mesh.ed25519.verify` (every request signature and prescription). Each vector
is its own test id, e.g. ``test_chacha20_poly1305[tc42-invalid]``. The vectors are in the
repository (tests/vectors/wycheproof/): a missing file fails, never skips.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from nacl.bindings import crypto_scalarmult
from nacl.exceptions import CryptoError

from mesh.ed25519 import verify
from services.keyvault.ciphers import FieldContext, SecretKey, encrypt_field, hmac_sha256
from services.keyvault.sealedbox import SealedShareError, seal_share

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "wycheproof"

Vector = dict[str, Any]


def _load(name: str) -> tuple[dict[str, Any], list[Any]]:
    """The file's JSON and one pytest param per vector (a missing file fails at import)."""
    data = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    params = [
        pytest.param(group, test, id=f"tc{test['tcId']}-{test['result']}")
        for group in data["testGroups"]
        for test in group["tests"]
    ]
    return data, params


CHACHA, CHACHA_PARAMS = _load("chacha20_poly1305_test.json")
HMAC, HMAC_PARAMS = _load("hmac_sha256_test.json")
X25519, X25519_PARAMS = _load("x25519_test.json")
ED25519, ED25519_PARAMS = _load("ed25519_test.json")


@pytest.mark.parametrize(
    ("data", "params", "algorithm"),
    [
        (CHACHA, CHACHA_PARAMS, "CHACHA20-POLY1305"),
        (HMAC, HMAC_PARAMS, "HMACSHA256"),
        (X25519, X25519_PARAMS, "XDH"),
        (ED25519, ED25519_PARAMS, "EDDSA"),
    ],
    ids=["chacha20_poly1305", "hmac_sha256", "x25519", "ed25519"],
)
def test_vector_files_are_complete(data: dict[str, Any], params: list[Any], algorithm: str) -> None:
    """A truncated or swapped file must not silently shrink the suite."""
    assert data["algorithm"] == algorithm
    assert len(params) == data["numberOfTests"]


@pytest.mark.parametrize(("group", "test"), CHACHA_PARAMS)
def test_chacha20_poly1305(group: Vector, test: Vector) -> None:
    key = bytes.fromhex(test["key"])
    iv = bytes.fromhex(test["iv"])
    aad = bytes.fromhex(test["aad"])
    msg = bytes.fromhex(test["msg"])
    sealed = bytes.fromhex(test["ct"]) + bytes.fromhex(test["tag"])
    assert group["keySize"] == 256 and group["tagSize"] == 128

    if len(key) != 32 or len(iv) != 12:
        # cryptography only does 32-byte keys and 12-byte nonces; so does our code.
        assert test["result"] == "invalid", f"tc{test['tcId']}: a valid vector with odd sizes"
        with pytest.raises(ValueError):
            ChaCha20Poly1305(key).decrypt(iv, sealed, aad)
        with pytest.raises(ValueError):
            encrypt_field(ChaCha20Poly1305(key), 1, iv, msg, FieldContext("t", "c", "r"))
        return

    aead = SecretKey(key).aead()
    if test["result"] == "valid":
        assert aead.encrypt(iv, msg, aad) == sealed, f"tc{test['tcId']} ({test['comment']})"
        assert aead.decrypt(iv, sealed, aad) == msg
    else:
        assert test["result"] == "invalid"
        with pytest.raises(InvalidTag):
            aead.decrypt(iv, sealed, aad)


@pytest.mark.parametrize(("group", "test"), HMAC_PARAMS)
def test_hmac_sha256(group: Vector, test: Vector) -> None:
    key = bytes.fromhex(test["key"])
    msg = bytes.fromhex(test["msg"])
    expected = bytes.fromhex(test["tag"])
    tag_bytes = group["tagSize"] // 8
    assert len(expected) == tag_bytes
    computed = hmac_sha256(key, msg)[:tag_bytes]
    if test["result"] == "valid":
        assert computed == expected, f"tc{test['tcId']} ({test['comment']})"
    else:
        assert test["result"] == "invalid"
        assert computed != expected, f"tc{test['tcId']} ({test['comment']}) was accepted"


@pytest.mark.parametrize(("group", "test"), X25519_PARAMS)
def test_x25519(group: Vector, test: Vector) -> None:
    assert group["curve"] == "curve25519"
    private = bytes.fromhex(test["private"])
    public = bytes.fromhex(test["public"])
    shared = bytes.fromhex(test["shared"])
    flags = set(test["flags"])

    if test["result"] == "invalid":  # none in the current file; refuse or differ
        try:
            assert crypto_scalarmult(private, public) != shared
        except CryptoError:
            pass
        return

    if "ZeroSharedSecret" in flags:
        # libsodium refuses an all-zero shared secret (RFC 7748 §6.1 allows it to):
        # "acceptable" either way, and refusing is the safer reading.
        assert test["result"] == "acceptable"
        assert shared == bytes(32)
        with pytest.raises(CryptoError):
            crypto_scalarmult(private, public)
        # Every such public key has low order, so sealing a share to it must fail too.
        assert "LowOrderPublic" in flags
        with pytest.raises(SealedShareError):
            seal_share(base64.b64encode(public).decode(), "mhs1-share")
        return

    assert crypto_scalarmult(private, public) == shared, f"tc{test['tcId']} ({test['comment']})"


@pytest.mark.parametrize(("group", "test"), ED25519_PARAMS)
def test_ed25519(group: Vector, test: Vector) -> None:
    """Valid signatures verify; every invalid one (malleable, non-canonical, small-order
    key, wrong length) is refused, never raising."""
    key = bytes.fromhex(group["publicKey"]["pk"])
    verified = verify(key, bytes.fromhex(test["sig"]), bytes.fromhex(test["msg"]))
    assert verified is (test["result"] == "valid"), test["comment"]
