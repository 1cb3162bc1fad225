"""Shamir's Secret Sharing of the keyvault's 256-bit root key (DESIGN §4).

The root key is never stored: at initialisation it is split K-of-N among the
administrators, and at unseal any K of them rebuild it. pycryptodome's
``Shamir`` only shares 16-byte secrets (one polynomial over GF(2^128)), so the
32-byte key is split as two 16-byte halves with two *independent* random
polynomials evaluated at the *same* share indices; share *i* is the pair
``(left_i, right_i)``. K-1 shares reveal nothing about either half, and any K
rebuild both.

A share travels as operator-friendly text::

    mhs1-<base64url( version | k | index | set_id(4) | share(32) | checksum(4) )>

The checksum (first 4 bytes of SHA-256 over the rest) catches copy-paste typos
before anything is combined; ``set_id`` names one initialisation, so a share
kept from an earlier initialisation is refused instead of silently producing a
wrong key. Error messages never echo share text or share bytes.

Python cannot wipe the immutable ``bytes`` that pycryptodome returns for each
half; :func:`combine_shares` hands back a ``bytearray`` so that at least the
copy the keyvault keeps can be zeroed on seal.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from Crypto.Protocol.SecretSharing import Shamir

__all__ = [
    "CHECKSUM_BYTES",
    "MAX_SHARES",
    "ROOT_KEY_BYTES",
    "SET_ID_BYTES",
    "SHARE_PREFIX",
    "SHARE_VERSION",
    "Share",
    "ShareCombineError",
    "ShareFormatError",
    "combine_shares",
    "format_share",
    "parse_share",
    "split_root_key",
]

SHARE_PREFIX = "mhs1-"
SHARE_VERSION = 1
ROOT_KEY_BYTES = 32
SET_ID_BYTES = 4
CHECKSUM_BYTES = 4
MAX_SHARES = 255  # share indices are one byte and 0 would be the secret itself
_HALF = ROOT_KEY_BYTES // 2
_BODY_BYTES = 1 + 1 + 1 + SET_ID_BYTES + ROOT_KEY_BYTES
_RAW_BYTES = _BODY_BYTES + CHECKSUM_BYTES
_B64_CHARS = -(-_RAW_BYTES * 4 // 3)  # unpadded base64url length of the raw share
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_CHECKSUM_DOMAIN = b"medihaven.shamir-share.v1"


class ShareFormatError(ValueError):
    """A share's text cannot be read; ``reason`` says why without echoing the share."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"share refused: {reason}")
        self.reason = reason


class ShareCombineError(ValueError):
    """Well-formed shares that cannot be combined (too few, duplicates, mixed sets)."""


@dataclass(frozen=True, slots=True)
class Share:
    """One administrator's share, parsed and checksum-verified.

    ``value`` is the 32-byte share (left half ‖ right half); it is secret, so
    it is kept out of ``repr``.
    """

    version: int
    k: int
    index: int
    set_id: bytes
    value: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if self.version != SHARE_VERSION:
            raise ShareFormatError(f"unsupported share version {self.version}")
        if not 2 <= self.k <= MAX_SHARES:
            raise ShareFormatError(f"threshold {self.k} is out of range 2..{MAX_SHARES}")
        if not 1 <= self.index <= MAX_SHARES:
            raise ShareFormatError(f"index {self.index} is out of range 1..{MAX_SHARES}")
        if len(self.set_id) != SET_ID_BYTES:
            raise ShareFormatError(f"set id must be {SET_ID_BYTES} bytes")
        if len(self.value) != ROOT_KEY_BYTES:
            raise ShareFormatError(f"share value must be {ROOT_KEY_BYTES} bytes")


def _validate_split_params(k: int, n: int) -> None:
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (k, n)):
        raise ValueError("k and n must be integers")
    if k < 2:
        raise ValueError(f"threshold k={k} is too small: at least 2 shares must be required")
    if n > MAX_SHARES:
        raise ValueError(f"n={n} shares is too many: at most {MAX_SHARES} are supported")
    if k > n:
        raise ValueError(f"threshold k={k} exceeds the number of shares n={n}")


def _checksum(body: bytes) -> bytes:
    return hashlib.sha256(_CHECKSUM_DOMAIN + body).digest()[:CHECKSUM_BYTES]


def format_share(share: Share) -> str:
    """Encode a share as the copy-pasteable ``mhs1-…`` text shown to an operator."""
    body = bytes([share.version, share.k, share.index]) + share.set_id + share.value
    raw = body + _checksum(body)
    return SHARE_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def split_root_key(key: bytes | bytearray, k: int, n: int, set_id: bytes) -> list[str]:
    """Split a 32-byte root key into ``n`` share texts, any ``k`` of which rebuild it.

    ``set_id`` (4 bytes, e.g. random) identifies this initialisation; store it
    with the check value so shares from another initialisation are refused.
    """
    _validate_split_params(k, n)
    if not isinstance(key, bytes | bytearray) or len(key) != ROOT_KEY_BYTES:
        raise ValueError(f"root key must be {ROOT_KEY_BYTES} bytes")
    if not isinstance(set_id, bytes) or len(set_id) != SET_ID_BYTES:
        raise ValueError(f"set id must be {SET_ID_BYTES} bytes")
    left = Shamir.split(k, n, bytes(key[:_HALF]))
    right = Shamir.split(k, n, bytes(key[_HALF:]))
    texts: list[str] = []
    for (index_l, share_l), (index_r, share_r) in zip(left, right, strict=True):
        if index_l != index_r:  # pragma: no cover - pycryptodome numbers shares 1..n
            raise RuntimeError("Shamir share indices disagree between halves")
        share = Share(SHARE_VERSION, k, index_l, set_id, bytes(share_l) + bytes(share_r))
        texts.append(format_share(share))
    return texts


def parse_share(text: str, *, set_id: bytes | None = None) -> Share:
    """Read an operator's share text; refuse anything malformed or mistyped.

    Whitespace anywhere is ignored (terminals wrap long lines). When ``set_id``
    is given, a share from another initialisation is refused here already.
    Never raises anything but :class:`ShareFormatError`.
    """
    if not isinstance(text, str):
        raise ShareFormatError("share must be text")
    compact = "".join(text.split())
    if not compact.startswith(SHARE_PREFIX):
        raise ShareFormatError(f"share must start with {SHARE_PREFIX!r}")
    encoded = compact[len(SHARE_PREFIX) :]
    if len(encoded) != _B64_CHARS:
        raise ShareFormatError("share has the wrong length (incomplete or extra characters)")
    if not encoded.isascii() or _B64URL.fullmatch(encoded) is None:
        raise ShareFormatError("share contains characters that are not base64url")
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        raise ShareFormatError("share is not valid base64url") from None
    # Unused trailing bits would let two texts decode alike and hide a typo in
    # the last character from the checksum: insist on the canonical encoding.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != encoded:
        raise ShareFormatError("share is corrupt (non-canonical encoding): check for a typo")
    if len(raw) != _RAW_BYTES:  # pragma: no cover - implied by the length check
        raise ShareFormatError("share has the wrong length")
    body, checksum = raw[:_BODY_BYTES], raw[_BODY_BYTES:]
    if _checksum(body) != checksum:
        raise ShareFormatError("share is corrupt (checksum mismatch): check for a typo")
    share = Share(
        version=body[0],
        k=body[1],
        index=body[2],
        set_id=bytes(body[3 : 3 + SET_ID_BYTES]),
        value=bytes(body[3 + SET_ID_BYTES :]),
    )
    if set_id is not None and share.set_id != set_id:
        raise ShareFormatError(
            "share belongs to another initialisation of the keyvault (set id differs)"
        )
    return share


def combine_shares(shares: Sequence[Share], *, set_id: bytes | None = None) -> bytearray:
    """Rebuild the 32-byte root key from at least ``k`` shares of one set.

    Refuses fewer than ``k`` shares, two shares with the same index, and
    shares from different initialisations (or from a set other than
    ``set_id`` when given). If more than ``k`` are given, the ``k`` lowest
    indices are used.

    A *wrong* share (say, hand-edited but re-checksummed) cannot be detected
    here: interpolation silently yields a wrong key. The caller must verify the
    result against the stored check value (``ciphers.check_root_key``) before
    using it.
    """
    if not shares:
        raise ShareCombineError("no shares were given")
    first = shares[0]
    for share in shares:
        if not isinstance(share, Share):
            raise ShareCombineError("only parsed shares can be combined")
        if share.set_id != first.set_id:
            raise ShareCombineError(
                "shares come from different initialisations of the keyvault (set ids differ)"
            )
        if share.k != first.k or share.version != first.version:
            raise ShareCombineError("shares disagree on their threshold or version")
    if set_id is not None and first.set_id != set_id:
        raise ShareCombineError(
            "shares belong to another initialisation of the keyvault (set id differs)"
        )
    indices = [share.index for share in shares]
    if len(set(indices)) != len(indices):
        raise ShareCombineError("the same share was given more than once (duplicate index)")
    if len(shares) < first.k:
        raise ShareCombineError(f"{first.k} shares are needed, only {len(shares)} given")
    chosen = sorted(shares, key=lambda s: s.index)[: first.k]
    left = Shamir.combine([(s.index, s.value[:_HALF]) for s in chosen])
    right = Shamir.combine([(s.index, s.value[_HALF:]) for s in chosen])
    key = bytearray(ROOT_KEY_BYTES)
    key[:_HALF] = left
    key[_HALF:] = right
    return key
