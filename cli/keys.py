"""A staff member's Ed25519 key on their own device: made here, never sent anywhere.

The private key is kept in a PKCS#8 PEM file encrypted with a passphrase (the
`cryptography` package's best available scheme), readable by its owner only (0600).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


class KeyFileError(Exception):
    """The key file is missing, unreadable, or the passphrase is wrong."""


def generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_key_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def save(key: Ed25519PrivateKey, path: Path, passphrase: str) -> None:
    if len(passphrase) < 8:
        raise KeyFileError("choose a passphrase of at least 8 characters")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    os.chmod(path, 0o600)


def load(path: Path, passphrase: str) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read the key file {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, passphrase.encode())
    except (ValueError, TypeError):
        raise KeyFileError("the passphrase is wrong or the key file is damaged") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError("the key file does not hold an Ed25519 key")
    return key
