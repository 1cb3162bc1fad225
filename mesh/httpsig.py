# Choice: the RFC 9421 base is built here (four lines) with http_sfv for parsing, not with the
# http-message-signatures package: its verifier needs a request object and reads the wall clock,
# while the keyvault re-verifies forwarded values at a given `now` and the browser must match.
"""Ed25519-signed HTTP requests: RFC 9421 (HTTP Message Signatures) + RFC 9530 (Content-Digest).

One profile, shared by the SDK/CLI (signing), the gateway (verifying the HTTP request) and
the keyvault (re-verifying the same signature from a `RequestProof` forwarded on the bus):
label `sig1`, `alg="ed25519"`, covered components exactly `"@method" "@target-uri"
"content-digest"` in that order, parameters `created`, `keyid` (the staff account id),
`nonce` (random, at least 128 bits, base64url) and `alg`. Signature-Input and Signature must
be in canonical structured-field form, so the `@signature-params` line that is verified is,
byte for byte, the text that was sent, and the parsed values are the signed ones (no room
for a parser differential with the browser). Freshness is checked explicitly
against the caller's clock (never a library's one-day default); Content-Digest is compared
with the body whenever the body is at hand. Replay (nonce memory) is the gateway's job.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from http_sfv.dictionary import Dictionary
from http_sfv.item import InnerList, Item
from pydantic import BaseModel, ConfigDict, Field

from mesh import ed25519

LABEL = "sig1"
ALG = "ed25519"
COMPONENTS = ("@method", "@target-uri", "content-digest")
PARAMETERS = frozenset({"created", "keyid", "nonce", "alg"})
HEADERS = ("Content-Digest", "Signature-Input", "Signature")
MAX_FIELD_CHARS = 4096  # bounds parsing work on hostile input
MAX_METHOD_CHARS = 16
MAX_KEY_ID_CHARS = 128
NONCE_BYTES = 18  # 144 bits, 24 base64url characters
MIN_NONCE_CHARS = 22  # 22 base64url characters carry 132 bits >= 128

_METHOD = re.compile(r"[A-Z]{1,16}")
# Absolute URI with a non-empty path: the library and RFC 9110 would turn "" into "/".
_TARGET_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]+/[^#]*")
_DIGEST = re.compile(r"sha-256=:[A-Za-z0-9+/]{43}=:")
_NONCE = re.compile(r"[A-Za-z0-9_\-]{22,128}={0,2}")


class SignatureReason(StrEnum):
    """Why a signed request was refused: the one list, each with one human message."""

    missing = "missing"
    malformed = "malformed"
    unsupported = "unsupported"
    stale = "stale"
    bad_signature = "bad_signature"
    digest_mismatch = "digest_mismatch"
    # Decided by the gateway (key lookup, account state, nonce cache), listed here too.
    unknown_key = "unknown_key"
    disabled = "disabled"
    replayed = "replayed"


MESSAGES: dict[SignatureReason, str] = {
    SignatureReason.missing: "the request is not signed (Content-Digest, Signature-Input and "
    "Signature headers are required)",
    SignatureReason.malformed: "the request signature headers are malformed",
    SignatureReason.unsupported: f'only label "{LABEL}", alg "{ALG}" covering '
    + " ".join(f'"{c}"' for c in COMPONENTS)
    + " with created, keyid and nonce is accepted",
    SignatureReason.stale: "the signature's created time is outside the accepted window",
    SignatureReason.bad_signature: "the signature does not verify",
    SignatureReason.digest_mismatch: "Content-Digest does not match the body",
    SignatureReason.unknown_key: "the signing key (keyid) is not known",
    SignatureReason.disabled: "the signing account is disabled",
    SignatureReason.replayed: "this signed request was already used (nonce replayed)",
}


class SignatureError(Exception):
    """A refused signature: `reason` is for machines (401 body, audit), `message` for people."""

    def __init__(self, reason: SignatureReason, detail: str | None = None) -> None:
        self.reason = reason
        self.message = MESSAGES[reason] + (f": {detail}" if detail else "")
        super().__init__(self.message)


class RequestProof(BaseModel):
    """The signed request's material, as the gateway forwards it on the bus to the keyvault."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = Field(max_length=MAX_METHOD_CHARS)
    target_uri: str = Field(max_length=MAX_FIELD_CHARS)
    content_digest: str = Field(max_length=MAX_FIELD_CHARS)
    signature_input: str = Field(max_length=MAX_FIELD_CHARS)
    signature: str = Field(max_length=MAX_FIELD_CHARS)


@dataclass(frozen=True)
class ParsedSignature:
    """A proof that fits the profile; `params_line` is the Signature-Input member as sent."""

    key_id: str
    created: int
    nonce: str
    alg: str
    components: tuple[str, ...]
    params_line: str
    signature: bytes


def content_digest(body: bytes) -> str:
    """RFC 9530 Content-Digest of the exact body bytes (the empty body included)."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def signature_base(method: str, target_uri: str, digest: str, params_line: str) -> bytes:
    """The RFC 9421 signature base for the profile's three components, values verbatim."""
    lines = [
        f'"@method": {method}',
        f'"@target-uri": {target_uri}',
        f'"content-digest": {digest}',
        f'"@signature-params": {params_line}',
    ]
    return "\n".join(lines).encode("ascii")


def _method_problem(method: str) -> str | None:
    return None if _METHOD.fullmatch(method) else "the method must be an upper-case token"


def _target_uri_problem(uri: str) -> str | None:
    # Printable ASCII only: a newline or a space would let a value forge another base line.
    if (
        len(uri) > MAX_FIELD_CHARS
        or not (uri.isascii() and uri.isprintable())
        or " " in uri
        or not _TARGET_URI.fullmatch(uri)
    ):
        return "the target URI must be an absolute ASCII URI with a path and no fragment"
    return None


def _key_id(value: object) -> str:
    """The keyid, or ValueError. type(), not isinstance(): http_sfv's Token is a str."""
    if type(value) is not str or not 0 < len(value) <= MAX_KEY_ID_CHARS:
        raise ValueError(f"keyid must be a string of 1 to {MAX_KEY_ID_CHARS} characters")
    if not (value.isascii() and value.isprintable()):
        raise ValueError("keyid must be printable ASCII")
    return value


def _nonce(value: object) -> str:
    """The nonce, or ValueError: base64url, long enough to carry 128 random bits."""
    if type(value) is not str or not _NONCE.fullmatch(value):
        raise ValueError("nonce must be a base64url string carrying at least 128 bits")
    return value


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
    """Headers to add to a request: Content-Digest, Signature-Input and Signature.

    Raises ValueError for input the verifier would refuse, so a bad call fails here and
    not as a 401 later.
    """
    created = int(time.time()) if created is None else created
    nonce = secrets.token_urlsafe(NONCE_BYTES) if nonce is None else nonce
    problem = _method_problem(method) or _target_uri_problem(target_uri)
    if problem:
        raise ValueError(problem)
    if type(created) is not int or created < 0:
        raise ValueError("created must be an int >= 0")
    digest = content_digest(body)
    params = _params_line(created, _key_id(key_id), _nonce(nonce))
    signature = private_key.sign(signature_base(method, target_uri, digest, params))
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{LABEL}={params}",
        "Signature": f"{LABEL}=:{base64.b64encode(signature).decode()}:",
    }


def proof_from_headers(method: str, target_uri: str, headers: Mapping[str, str]) -> RequestProof:
    """Collect a request's signature material; header names are case-insensitive.

    A header given twice (e.g. two field lines, or two spellings in a dict) is refused:
    it could carry a second signature that the checks would not look at.
    """
    found: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in ("content-digest", "signature-input", "signature"):
            if key in found:
                raise SignatureError(SignatureReason.malformed, f"{name} is given more than once")
            found[key] = value.strip(" \t")
    absent = [h for h in HEADERS if not found.get(h.lower())]
    if absent:
        raise SignatureError(SignatureReason.missing, "no " + ", ".join(absent))
    try:
        return RequestProof(
            method=method,
            target_uri=target_uri,
            content_digest=found["content-digest"],
            signature_input=found["signature-input"],
            signature=found["signature"],
        )
    except ValueError:  # pydantic's ValidationError: a value is too long
        raise SignatureError(SignatureReason.malformed, "a value is too long") from None


def _dictionary(value: str, what: str) -> Dictionary:
    """Parse a one-signature dictionary field and insist on its canonical serialization."""
    if not value:
        raise SignatureError(SignatureReason.missing, f"no {what}")
    if len(value) > MAX_FIELD_CHARS:
        raise SignatureError(SignatureReason.malformed, f"{what} is too long")
    parsed = Dictionary()
    try:
        parsed.parse(value.encode("ascii"))
        canonical = str(parsed)
    except Exception:  # a third-party parser on hostile input: anything is a refusal
        raise SignatureError(SignatureReason.malformed, f"{what} is not a dictionary") from None
    if canonical != value:
        # Duplicate labels or parameters (last one wins when parsed), extra spaces,
        # leading zeros, unpadded base64: refused rather than guessed at.
        raise SignatureError(SignatureReason.malformed, f"{what} is not in canonical form")
    return parsed


def parse_proof(proof: RequestProof) -> ParsedSignature:
    """Parse a proof and check it fits the profile (no cryptography, no clock)."""
    if not proof.method or not proof.target_uri or not proof.content_digest:
        raise SignatureError(SignatureReason.missing, "method, target URI or Content-Digest")
    problem = _method_problem(proof.method) or _target_uri_problem(proof.target_uri)
    if problem:
        raise SignatureError(SignatureReason.malformed, problem)
    if not _DIGEST.fullmatch(proof.content_digest):
        raise SignatureError(SignatureReason.malformed, "Content-Digest must be sha-256=:<base64>:")
    return _parse_usual(proof) or _parse_fields(proof)


# The fields exactly as this profile's signers write them (parameters in the order
# created, keyid, nonce, alg; no escapes in keyid). Every text these match is a canonical
# structured field that the general parser below reads to the same values; anything else
# (another order, escapes, any deviation) takes the general parser, so the fast path
# changes no decision, only the cost (the general parser is ~25x slower).
_USUAL_INPUT = re.compile(
    LABEL
    + "="
    + re.escape("(" + " ".join(f'"{c}"' for c in COMPONENTS) + ")")
    + r';created=(0|[1-9][0-9]{0,14});keyid="([\x20\x21\x23-\x5b\x5d-\x7e]{1,128})"'
    + r';nonce="([A-Za-z0-9_\-]{22,128}={0,2})";alg="'
    + ALG
    + '"'
)
_USUAL_SIGNATURE = re.compile(LABEL + r"=:([A-Za-z0-9+/]{86}==):")


def _parse_usual(proof: RequestProof) -> ParsedSignature | None:
    inputs = _USUAL_INPUT.fullmatch(proof.signature_input)
    signature = _USUAL_SIGNATURE.fullmatch(proof.signature)
    if inputs is None or signature is None:
        return None
    raw = base64.b64decode(signature.group(1))
    if base64.b64encode(raw).decode() != signature.group(1):
        return None  # non-zero padding bits: not canonical, let the general parser refuse
    created, key_id, nonce = inputs.groups()
    return ParsedSignature(
        key_id=key_id,
        created=int(created),
        nonce=nonce,
        alg=ALG,
        components=COMPONENTS,
        params_line=proof.signature_input[len(LABEL) + 1 :],
        signature=raw,
    )


def _parse_fields(proof: RequestProof) -> ParsedSignature:
    """The general parser (http_sfv), strict about canonical form and the profile."""
    inputs = _dictionary(proof.signature_input, "Signature-Input")
    signatures = _dictionary(proof.signature, "Signature")
    if len(inputs) != 1 or len(signatures) != 1:
        raise SignatureError(SignatureReason.unsupported, "exactly one signature is accepted")
    if LABEL not in inputs or LABEL not in signatures:
        raise SignatureError(SignatureReason.unsupported, f'the label must be "{LABEL}"')
    inner, sig_item = inputs[LABEL], signatures[LABEL]
    if not isinstance(inner, InnerList):
        raise SignatureError(SignatureReason.malformed, "Signature-Input must be an inner list")
    if not isinstance(sig_item, Item) or type(sig_item.value) is not bytes or sig_item.params:
        raise SignatureError(SignatureReason.malformed, "Signature must be a byte sequence")
    if len(sig_item.value) != 64:
        raise SignatureError(SignatureReason.malformed, "an Ed25519 signature has 64 bytes")
    # Compared serialized: a token, or a component with parameters (";sf", ";bs", ";req"),
    # names a different value than the plain string component.
    covered = tuple(str(item) for item in inner)
    if covered != tuple(f'"{c}"' for c in COMPONENTS):
        raise SignatureError(
            SignatureReason.unsupported, "covered components (" + " ".join(covered) + ")"
        )
    params = dict(inner.params)
    if set(params) != PARAMETERS:
        raise SignatureError(SignatureReason.unsupported, f"parameters {sorted(params)}")
    created, key_id, nonce, alg = (params[k] for k in ("created", "keyid", "nonce", "alg"))
    if alg != ALG or type(alg) is not str:
        raise SignatureError(SignatureReason.unsupported, f'alg must be the string "{ALG}"')
    if type(created) is not int:
        raise SignatureError(SignatureReason.malformed, "created must be an integer")
    try:
        key_id, nonce = _key_id(key_id), _nonce(nonce)
    except ValueError as exc:
        raise SignatureError(SignatureReason.malformed, str(exc)) from None
    return ParsedSignature(
        key_id=key_id,
        created=created,
        nonce=nonce,
        alg=ALG,
        components=COMPONENTS,
        params_line=proof.signature_input[len(LABEL) + 1 :],
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
    """Check profile, freshness, the body's digest (when given) and the Ed25519 signature.

    Without `body` (the keyvault) the digest is trusted only because the signature covers it.
    Order: cheap checks first; the nonce is not remembered here, so the gateway must record
    it only after this returns.
    """
    parsed = parse_proof(proof)
    if parsed.created < now - window_s:
        raise SignatureError(
            SignatureReason.stale, f"created {parsed.created} is more than {window_s:g} s old"
        )
    if parsed.created > now + skew_s:
        raise SignatureError(
            SignatureReason.stale,
            f"created {parsed.created} is more than {skew_s:g} s in the future",
        )
    if body is not None and not hmac.compare_digest(
        proof.content_digest.encode(), content_digest(body).encode()
    ):
        raise SignatureError(SignatureReason.digest_mismatch)
    if isinstance(public_key, Ed25519PublicKey):
        public_key = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    base = signature_base(proof.method, proof.target_uri, proof.content_digest, parsed.params_line)
    if not ed25519.verify(public_key, parsed.signature, base):
        raise SignatureError(SignatureReason.bad_signature)
    return parsed
