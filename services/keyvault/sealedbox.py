"""Transport of unseal shares to the keyvault in an X25519 sealed box (DESIGN §4).

The keyvault publishes the public half of a transport key pair; an
administrator's client seals their share to it (libsodium ``crypto_box_seal``:
an ephemeral X25519 key, then XSalsa20-Poly1305), so the gateway and the bus
only ever carry ciphertext. Only the keyvault process, holding the private
half in memory, can open it. Errors never include the sealed or opened text.
"""

from __future__ import annotations

import base64
import binascii

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

__all__ = [
    "MAX_SEALED_CHARS",
    "SealedShareError",
    "new_transport_key",
    "open_share",
    "public_key_b64",
    "seal_share",
]

_PUBLIC_KEY_BYTES = 32
_SEAL_OVERHEAD = 32 + 16  # ephemeral public key + Poly1305 tag
MAX_SEALED_CHARS = 4096  # a share is ~63 characters; refuse anything absurd before decoding


class SealedShareError(ValueError):
    """A sealed share (or a transport public key) cannot be used; says why, never what."""


def _b64decode(text: str, what: str) -> bytes:
    if not isinstance(text, str):
        raise SealedShareError(f"{what} must be base64 text")
    compact = text.strip()
    if len(compact) > MAX_SEALED_CHARS:
        raise SealedShareError(f"{what} is too long")
    if not compact.isascii():
        raise SealedShareError(f"{what} is not valid base64")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise SealedShareError(f"{what} is not valid base64") from None


def new_transport_key() -> PrivateKey:
    """A fresh X25519 key pair for this keyvault process (kept in memory only)."""
    return PrivateKey.generate()


def public_key_b64(key: PrivateKey | PublicKey) -> str:
    """The public half, base64-encoded, to publish to clients that seal shares."""
    public = key.public_key if isinstance(key, PrivateKey) else key
    return base64.b64encode(bytes(public)).decode("ascii")


def seal_share(public_key_b64: str, share_text: str) -> str:
    """Client side: seal ``share_text`` to the keyvault's public key; base64 result."""
    raw = _b64decode(public_key_b64, "transport public key")
    if len(raw) != _PUBLIC_KEY_BYTES:
        raise SealedShareError(f"transport public key must be {_PUBLIC_KEY_BYTES} bytes")
    if not isinstance(share_text, str):
        raise TypeError("share text must be a string")
    try:
        sealed = SealedBox(PublicKey(raw)).encrypt(share_text.encode("utf-8"))
    except CryptoError:  # e.g. a low-order point: no shared secret can be made
        raise SealedShareError("transport public key is not usable") from None
    return base64.b64encode(sealed).decode("ascii")


def open_share(private_key: PrivateKey, sealed_b64: str) -> str:
    """Keyvault side: open a sealed share; :class:`SealedShareError` on anything else."""
    raw = _b64decode(sealed_b64, "sealed share")
    if len(raw) <= _SEAL_OVERHEAD:
        raise SealedShareError("sealed share is too short")
    try:
        plain = SealedBox(private_key).decrypt(raw)
    except CryptoError:
        raise SealedShareError(
            "sealed share does not open with this keyvault's transport key "
            "(sealed to another key, or corrupted)"
        ) from None
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        raise SealedShareError("sealed share does not hold text") from None
