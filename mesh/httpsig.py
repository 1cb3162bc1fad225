"""Ed25519-signed HTTP requests: RFC 9421 (HTTP Message Signatures) + RFC 9530 (Content-Digest).

Choice: the signature base is built here with `http_sfv` rather than through the
`http-message-signatures` package, because the keyvault must re-verify a signature from
values forwarded over the bus (no request object), and the browser app must build the
very same base; both are easiest to keep exact with this small, plain RFC 9421 subset.

One profile only: label `sig1`, `alg="ed25519"`, covered components exactly
`"@method" "@target-uri" "content-digest"` (in that order), parameters `created`, `keyid`
(the staff account id), `nonce` (random, at least 128 bits) and `alg`. Freshness is
checked explicitly (never a library's one-day default), and Content-Digest is compared
with the body whenever the body is at hand. Replay (nonce memory) is the gateway's job.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_sfv.dictionary import Dictionary
from http_sfv.item import InnerList, Item
from pydantic import BaseModel, ConfigDict, Field

LABEL = "sig1"
ALG = "ed25519"
COMPONENTS = ("@method", "@target-uri", "content-digest")
MAX_HEADER_CHARS = 4096
NONCE_BYTES = 18  # 144 bits, 24 base64url characters


class SignatureReason(StrEnum):
    """Why a signed request was refused: one list, one human message each."""

    missing = "missing"
    malformed = "malformed"
    unsupported = "unsupported"
    unknown_key = "unknown_key"
    disabled = "disabled"
    bad_signature = "bad_signature"
    stale = "stale"
    replayed = "replayed"
    digest_mismatch = "digest_mismatch"


MESSAGES: dict[SignatureReason, str] = {
    SignatureReason.missing: "the request is not signed (Signature, Signature-Input and "
    "Content-Digest headers are required)",
    SignatureReason.malformed: "the request signature headers are malformed",
    SignatureReason.unsupported: f'only label "{LABEL}", alg "{ALG}" covering '
    + " ".join(COMPONENTS)
    + " with created, keyid and nonce is accepted",
    SignatureReason.unknown_key: "the signing key (keyid) is not known",
    SignatureReason.disabled: "the signing account is disabled",
    SignatureReason.bad_signature: "the signature does not verify",
    SignatureReason.stale: "the signature's created time is outside the accepted window",
    SignatureReason.replayed: "this signed request was already used (nonce replayed)",
    SignatureReason.digest_mismatch: "Content-Digest does not match the body",
}


class SignatureError(Exception):
    """A refused signature; `reason` is machine-readable, `str()` is for people."""

    def __init__(self, reason: SignatureReason, detail: str | None = None) -> None:
        self.reason = reason
        self.message = MESSAGES[reason] + (f": {detail}" if detail else "")
        super().__init__(self.message)


class RequestProof(BaseModel):
    """What the keyvault needs to re-verify a user's request signature (sent on the bus)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = Field(max_length=16)
    target_uri: str = Field(max_length=MAX_HEADER_CHARS)
    content_digest: str = Field(max_length=MAX_HEADER_CHARS)
    signature_input: str = Field(max_length=MAX_HEADER_CHARS)
    signature: str = Field(max_length=MAX_HEADER_CHARS)


@dataclass(frozen=True)
class ParsedSignature:
    key_id: str
    created: int
    nonce: str
    alg: str
    components: tuple[str, ...]
    params_line: str
    signature: bytes


def content_digest(body: bytes) -> str:
    """RFC 9530 Content-Digest of `body` with SHA-256."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def signature_base(method: str, target_uri: str, digest: str, params_line: str) -> bytes:
    """The RFC 9421 signature base for our three covered components."""
    lines = [
        f'"@method": {method.upper()}',
        f'"@target-uri": {target_uri}',
        f'"content-digest": {digest}',
        f'"@signature-params": {params_line}',
    ]
    return "\n".join(lines).encode()


def _params_line(created: int, key_id: str, nonce: str) -> str:
    inner = InnerList([Item(c) for c in COMPONENTS])
    inner.params["created"] = created
    inner.params["keyid"] = key_id
    inner.params["nonce"] = nonce
    inner.params["alg"] = ALG
    return str(inner)


def sign_request(
    private_key: Ed25519PrivateKey,
    key_id: str,
    method: str,
    target_uri: str,
    body: bytes,
    *,
    created: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Headers to add to a request: Content-Digest, Signature-Input and Signature."""
    created = int(time.time()) if created is None else created
    nonce = nonce or secrets.token_urlsafe(NONCE_BYTES)
    digest = content_digest(body)
    params = _params_line(created, key_id, nonce)
    signature = private_key.sign(signature_base(method, target_uri, digest, params))
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{LABEL}={params}",
        "Signature": f"{LABEL}=:{base64.b64encode(signature).decode()}:",
    }


def proof_from_headers(method: str, target_uri: str, headers: Mapping[str, str]) -> RequestProof:
    """Collect the signature material of a request (header names case-insensitive)."""
    lower = {k.lower(): v for k, v in headers.items()}
    values = [lower.get(n) for n in ("content-digest", "signature-input", "signature")]
    if any(not v for v in values):
        raise SignatureError(SignatureReason.missing)
    digest, signature_input, signature = values
    try:
        return RequestProof(
            method=method,
            target_uri=target_uri,
            content_digest=digest or "",
            signature_input=signature_input or "",
            signature=signature or "",
        )
    except ValueError:
        raise SignatureError(SignatureReason.malformed, "a header is too long") from None


def _dictionary(value: str, what: str) -> Dictionary:
    parsed = Dictionary()
    try:
        parsed.parse(value.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise SignatureError(SignatureReason.malformed, f"{what}: {exc}") from None
    return parsed


def parse_proof(proof: RequestProof) -> ParsedSignature:
    """Parse and check the profile of a proof (no cryptography, no clock)."""
    inputs = _dictionary(proof.signature_input, "Signature-Input")
    signatures = _dictionary(proof.signature, "Signature")
    if len(inputs) != 1 or len(signatures) != 1:
        raise SignatureError(SignatureReason.unsupported, "exactly one signature is accepted")
    if LABEL not in inputs or LABEL not in signatures:
        raise SignatureError(SignatureReason.unsupported, f'the label must be "{LABEL}"')
    inner, sig_item = inputs[LABEL], signatures[LABEL]
    if not isinstance(inner, InnerList) or not isinstance(sig_item, Item):
        raise SignatureError(SignatureReason.malformed, "wrong structured-field types")
    if not isinstance(sig_item.value, bytes) or len(sig_item.value) != 64:
        raise SignatureError(SignatureReason.malformed, "the signature must be 64 bytes")
    components = tuple(item.value for item in inner)
    if components != COMPONENTS:
        raise SignatureError(SignatureReason.unsupported, f"covered components {components}")
    params = dict(inner.params)
    if set(params) != {"created", "keyid", "nonce", "alg"}:
        raise SignatureError(SignatureReason.unsupported, f"parameters {sorted(params)}")
    created, key_id, nonce, alg = (params[k] for k in ("created", "keyid", "nonce", "alg"))
    if alg != ALG:
        raise SignatureError(SignatureReason.unsupported, f"alg {alg!r}")
    if isinstance(created, bool) or not isinstance(created, int):
        raise SignatureError(SignatureReason.malformed, "created must be an integer")
    if not isinstance(key_id, str) or not key_id or len(key_id) > 128:
        raise SignatureError(SignatureReason.malformed, "keyid must be a short string")
    if not isinstance(nonce, str) or not 22 <= len(nonce) <= 128:
        raise SignatureError(SignatureReason.malformed, "nonce must carry at least 128 bits")
    return ParsedSignature(
        key_id=key_id,
        created=created,
        nonce=nonce,
        alg=alg,
        components=components,
        params_line=str(inner),
        signature=sig_item.value,
    )


def verify_proof(
    proof: RequestProof,
    public_key: Ed25519PublicKey | bytes,
    *,
    now: float,
    window_s: float = 30.0,
    skew_s: float = 5.0,
    body: bytes | None = None,
) -> ParsedSignature:
    """Verify freshness, the body's digest (when given) and the Ed25519 signature."""
    parsed = parse_proof(proof)
    if parsed.created < now - window_s or parsed.created > now + skew_s:
        raise SignatureError(SignatureReason.stale)
    if body is not None and not hmac.compare_digest(proof.content_digest, content_digest(body)):
        raise SignatureError(SignatureReason.digest_mismatch)
    try:
        key = (
            public_key
            if isinstance(public_key, Ed25519PublicKey)
            else Ed25519PublicKey.from_public_bytes(public_key)
        )
        key.verify(
            parsed.signature,
            signature_base(
                proof.method, proof.target_uri, proof.content_digest, parsed.params_line
            ),
        )
    except (InvalidSignature, ValueError):
        raise SignatureError(SignatureReason.bad_signature) from None
    return parsed
