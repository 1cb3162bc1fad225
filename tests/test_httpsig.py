"""RFC 9421 request signatures: round trip, every refusal reason, vectors, fuzzing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.httpsig import (
    RequestProof,
    SignatureError,
    SignatureReason,
    content_digest,
    parse_proof,
    proof_from_headers,
    sign_request,
    signature_base,
    verify_proof,
)

ROOT = Path(__file__).resolve().parents[1]
WYCHEPROOF = ROOT.parent / "shared" / "vectors" / "ed25519_test.json"
VECTORS = ROOT / "tests" / "vectors" / "httpsig_vectors.json"
URI = "https://clinic.example/api/v1/patients?mrn=MH-1"
KEY = Ed25519PrivateKey.generate()


def proof(
    body: bytes = b'{"a":1}', method: str = "POST", uri: str = URI, **kwargs: Any
) -> RequestProof:
    headers = sign_request(KEY, "acc-1", method, uri, body, **kwargs)
    return proof_from_headers(method, uri, headers)


def check(p: RequestProof, body: bytes | None = b'{"a":1}', key: Any = None, **kw: Any) -> Any:
    return verify_proof(p, key or KEY.public_key(), now=time.time(), body=body, **kw)


def reason_of(p: RequestProof, **kw: Any) -> SignatureReason:
    with pytest.raises(SignatureError) as err:
        check(p, **kw)
    return err.value.reason


def test_round_trip() -> None:
    parsed = check(proof())
    assert parsed.key_id == "acc-1" and parsed.alg == "ed25519"
    assert len(parsed.nonce) >= 22
    assert check(proof(body=b"", method="GET"), body=b"").key_id == "acc-1"


def test_each_refusal_reason() -> None:
    good = proof()
    assert reason_of(good.model_copy(update={"method": "PUT"})) is SignatureReason.bad_signature
    assert (
        reason_of(good.model_copy(update={"target_uri": URI + "&x=1"}))
        is SignatureReason.bad_signature
    )
    assert reason_of(good, body=b'{"a":2}') is SignatureReason.digest_mismatch
    forged_digest = good.model_copy(update={"content_digest": content_digest(b"other")})
    assert reason_of(forged_digest, body=None) is SignatureReason.bad_signature
    other_key = Ed25519PrivateKey.generate().public_key()
    assert reason_of(good, key=other_key) is SignatureReason.bad_signature
    now = int(time.time())
    assert reason_of(proof(created=now - 31)) is SignatureReason.stale
    assert reason_of(proof(created=now + 60)) is SignatureReason.stale
    assert check(proof(created=now - 28)).key_id == "acc-1"
    with pytest.raises(SignatureError) as err:
        proof_from_headers("GET", URI, {"Signature": "sig1=:AA==:"})
    assert err.value.reason is SignatureReason.missing


def test_profile_is_enforced() -> None:
    good = proof()
    variants = {
        "other alg": good.signature_input.replace('alg="ed25519"', 'alg="hmac-sha256"'),
        "missing component": good.signature_input.replace(' "content-digest"', ""),
        "other label": good.signature_input.replace("sig1=", "sig2="),
        "no nonce": good.signature_input.replace(";nonce=", ";nonc="),
        "two signatures": good.signature_input + ", " + good.signature_input.replace("sig1", "s2"),
    }
    for name, value in variants.items():
        with pytest.raises(SignatureError) as err:
            parse_proof(good.model_copy(update={"signature_input": value}))
        assert err.value.reason in (SignatureReason.unsupported, SignatureReason.malformed), name


def test_garbage_only_ever_raises_signature_error() -> None:
    for value in ["", "sig1", "sig1=", "sig1=(", "sig1=:notb64:", "sig1=?1", "é", "sig1=1;a"]:
        for field in ("signature_input", "signature"):
            with pytest.raises(SignatureError):
                check(proof().model_copy(update={field: value}))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.text(max_size=200))
def test_fuzzed_headers_only_raise_signature_error(sig_input: str, signature: str) -> None:
    p = proof().model_copy(update={"signature_input": sig_input, "signature": signature})
    with pytest.raises(SignatureError):
        check(p)


def make_vector() -> dict[str, Any]:
    """A fixed vector, shared with the browser's TypeScript tests (same file)."""
    seed = bytes(range(32))
    key = Ed25519PrivateKey.from_private_bytes(seed)
    body = b'{"given_name":"Ada","family_name":"Okafor"}'
    uri = "https://clinic.example/api/v1/patients"
    headers = sign_request(key, "acc-42", "POST", uri, body, created=1767225600, nonce="n" * 24)
    p = proof_from_headers("POST", uri, headers)
    parsed = parse_proof(p)
    return {
        "private_key_seed_hex": seed.hex(),
        "key_id": "acc-42",
        "method": "POST",
        "target_uri": uri,
        "body": body.decode(),
        "created": 1767225600,
        "nonce": "n" * 24,
        "content_digest": headers["Content-Digest"],
        "signature_input": headers["Signature-Input"],
        "signature": headers["Signature"],
        "signature_base": signature_base(
            "POST", uri, headers["Content-Digest"], parsed.params_line
        ).decode(),
    }


def test_shared_vector_is_reproduced_exactly() -> None:
    vector = make_vector()
    # To regenerate after a deliberate format change:
    #   VECTORS.write_text(json.dumps({"vectors": [make_vector()]}, indent=2) + "\n")
    assert VECTORS.exists(), f"{VECTORS} is missing"
    stored = json.loads(VECTORS.read_text())["vectors"][0]
    assert stored == vector
    assert stored["signature_base"].splitlines()[-1].startswith('"@signature-params": (')
    p = RequestProof(
        method=stored["method"],
        target_uri=stored["target_uri"],
        content_digest=stored["content_digest"],
        signature_input=stored["signature_input"],
        signature=stored["signature"],
    )
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(stored["private_key_seed_hex"]))
    verify_proof(p, key.public_key(), now=stored["created"], body=stored["body"].encode())


def _wycheproof() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    if not WYCHEPROOF.exists():
        return []
    data = json.loads(WYCHEPROOF.read_text())
    return [(f"tc{t['tcId']}", g, t) for g in data["testGroups"] for t in g["tests"]]


CASES = _wycheproof()


@pytest.mark.skipif(not CASES, reason="../shared/vectors/ed25519_test.json is absent")
@pytest.mark.parametrize(("name", "group", "case"), CASES, ids=[c[0] for c in CASES])
def test_wycheproof_ed25519(name: str, group: dict[str, Any], case: dict[str, Any]) -> None:
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(group["publicKey"]["pk"]))
    message, signature = bytes.fromhex(case["msg"]), bytes.fromhex(case["sig"])
    if case["result"] == "valid":
        key.verify(signature, message)
    else:
        with pytest.raises((InvalidSignature, ValueError)):
            key.verify(signature, message)
