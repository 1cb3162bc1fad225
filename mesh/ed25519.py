"""Ed25519 signature verification, once for the whole mesh (request proofs, prescriptions).

libsodium (PyNaCl) rather than OpenSSL: both agree on every Project Wycheproof vector
(tests/keyvault/test_vectors.py), and libsodium verifies in about half the time, which
matters because every user request is verified by each service it reaches. libsodium is
strict: it refuses non-canonical signatures and small-order keys.
"""

from __future__ import annotations

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import VerifyKey

KEY_BYTES = 32
SIGNATURE_BYTES = 64


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True only if `signature` is `public_key`'s Ed25519 signature of `message`; never
    raises, whatever the inputs hold."""
    if len(public_key) != KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, CryptoError, ValueError, TypeError):
        return False
    return True
