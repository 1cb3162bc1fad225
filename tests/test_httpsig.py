"""RFC 9421 request signatures: round trip, every refusal reason, shared vectors, fuzzing.

Regenerate the vectors shared with the browser's TypeScript suite (after a deliberate
format change only) with `python -m tests.test_httpsig`.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh import httpsig
from mesh.httpsig import (
    MESSAGES,
    ParsedSignature,
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
VECTORS = ROOT / "tests" / "vectors" / "httpsig_vectors.json"
URI = "https://clinic.example/api/v1/patients?mrn=MH-1"
BODY = b'{"a":1}'
KEY = Ed25519PrivateKey.generate()
R = SignatureReason


def proof(body: bytes = BODY, method: str = "POST", uri: str = URI, **kwargs: Any) -> RequestProof:
    headers = sign_request(KEY, "acc-1", method, uri, body, **kwargs)
    return proof_from_headers(method, uri, headers)


def check(p: RequestProof, body: bytes | None = BODY, key: Any = None, **kw: Any) -> Any:
    """Verify as the gateway does (with the body), reading the clock at each check."""
    return verify_proof(p, key or KEY.public_key(), now=time.time(), body=body, **kw)


def reason_of(call: Callable[[], object]) -> SignatureReason:
    with pytest.raises(SignatureError) as err:
        call()
    assert str(err.value).startswith(MESSAGES[err.value.reason])
    return err.value.reason


def resign(p: RequestProof, signature_input: str) -> RequestProof:
    """`p` with another Signature-Input, validly signed: a refusal is then the profile's."""
    params_line = signature_input.partition("=")[2]
    base = signature_base(p.method, p.target_uri, p.content_digest, params_line)
    sig = base64.b64encode(KEY.sign(base)).decode()
    return p.model_copy(update={"signature_input": signature_input, "signature": f"sig1=:{sig}:"})


# --- round trip ---------------------------------------------------------------------------


def test_round_trip_gateway_and_keyvault() -> None:
    p = proof()
    parsed = check(p)
    assert isinstance(parsed, ParsedSignature)
    assert (parsed.key_id, parsed.alg) == ("acc-1", "ed25519")
    assert parsed.components == ("@method", "@target-uri", "content-digest")
    assert len(parsed.nonce) >= 22 and len(parsed.signature) == 64
    assert p.signature_input == "sig1=" + parsed.params_line
    # The keyvault: no body, public key as raw bytes, proof after a trip through JSON.
    raw = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    on_bus = RequestProof.model_validate_json(p.model_dump_json())
    assert verify_proof(on_bus, raw, now=time.time()) == parsed


def test_empty_body_and_fresh_nonces() -> None:
    assert content_digest(b"") == "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
    # RFC 9530 section 2 example.
    assert (
        content_digest(b'{"hello": "world"}\n')
        == "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:"
    )
    assert check(proof(body=b"", method="GET"), body=b"").key_id == "acc-1"
    nonces = {parse_proof(proof()).nonce for _ in range(50)}
    assert len(nonces) == 50


def test_header_names_are_case_insensitive() -> None:
    headers = sign_request(KEY, "acc-1", "PUT", URI, BODY)
    mixed = {k.upper() if k == "Signature" else k.lower(): f" {v}\t" for k, v in headers.items()}
    assert check(proof_from_headers("PUT", URI, mixed)).key_id == "acc-1"


def test_signing_refuses_what_verifying_would_refuse() -> None:
    for args in [
        ("acc-1", "post", URI),
        ("acc-1", "POST", "/relative/path"),
        ("acc-1", "POST", "https://clinic.example"),
        ("acc-1", "POST", URI + "\n"),
        ("acc-1", "POST", URI + "#fragment"),
        ("", "POST", URI),
        ("acc-\n1", "POST", URI),
    ]:
        with pytest.raises(ValueError):
            sign_request(KEY, *args, BODY)
    with pytest.raises(ValueError):
        sign_request(KEY, "acc-1", "POST", URI, BODY, nonce="too-short")
    with pytest.raises(ValueError):
        sign_request(KEY, "acc-1", "POST", URI, BODY, created=-1)


# --- each refusal reason ------------------------------------------------------------------


def good() -> RequestProof:
    """A fresh, valid proof (made when the case runs, so it is never stale)."""
    return proof()


OTHER_DIGEST = content_digest(b"other")


def _flipped(p: RequestProof) -> RequestProof:
    raw = bytearray(parse_proof(p).signature)
    raw[5] ^= 0x01
    return p.model_copy(update={"signature": f"sig1=:{base64.b64encode(raw).decode()}:"})


REFUSALS: list[tuple[str, Callable[[], object], SignatureReason]] = [
    (
        "tampered method",
        lambda: check(good().model_copy(update={"method": "PUT"})),
        R.bad_signature,
    ),
    (
        "tampered URI",
        lambda: check(good().model_copy(update={"target_uri": URI + "&x=1"})),
        R.bad_signature,
    ),
    ("tampered body", lambda: check(good(), body=b'{"a":2}'), R.digest_mismatch),
    (
        "tampered digest header, gateway",
        lambda: check(good().model_copy(update={"content_digest": OTHER_DIGEST})),
        R.digest_mismatch,
    ),
    (
        "tampered digest header, keyvault",
        lambda: check(good().model_copy(update={"content_digest": OTHER_DIGEST}), body=None),
        R.bad_signature,
    ),
    (
        "other key",
        lambda: check(good(), key=Ed25519PrivateKey.generate().public_key()),
        R.bad_signature,
    ),
    ("invalid public key bytes", lambda: check(good(), key=b"\x01" * 31), R.bad_signature),
    ("flipped signature bit", lambda: check(_flipped(good())), R.bad_signature),
    ("stale", lambda: check(proof(created=int(time.time()) - 31)), R.stale),
    ("future", lambda: check(proof(created=int(time.time()) + 60)), R.stale),
    (
        "stale, narrower window",
        lambda: check(proof(created=int(time.time()) - 10), window_s=5),
        R.stale,
    ),
    ("missing headers", lambda: proof_from_headers("GET", URI, {}), R.missing),
    (
        "missing Signature",
        lambda: proof_from_headers(
            "GET", URI, {"Content-Digest": OTHER_DIGEST, "Signature-Input": "sig1=()"}
        ),
        R.missing,
    ),
    (
        "empty Signature-Input",
        lambda: check(good().model_copy(update={"signature_input": ""})),
        R.missing,
    ),
    (
        "header given twice",
        lambda: proof_from_headers(
            "GET",
            URI,
            {
                "Content-Digest": good().content_digest,
                "Signature-Input": good().signature_input,
                "Signature": good().signature,
                "signature": good().signature,
            },
        ),
        R.malformed,
    ),
    (
        "header too long",
        lambda: proof_from_headers(
            "GET",
            URI,
            {"Content-Digest": "x" * 5000, "Signature-Input": "a", "Signature": "b"},
        ),
        R.malformed,
    ),
]


@pytest.mark.parametrize(("name", "call", "reason"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_each_refusal_reason(
    name: str, call: Callable[[], object], reason: SignatureReason
) -> None:
    assert reason_of(call) is reason, name


def test_window_and_skew_edges_are_accepted() -> None:
    now = int(time.time())
    p_old, p_new = proof(created=now - 20), proof(created=now + 4)
    assert verify_proof(p_old, KEY.public_key(), now=now, body=BODY).created == now - 20
    assert verify_proof(p_new, KEY.public_key(), now=now, body=BODY).created == now + 4
    assert verify_proof(p_old, KEY.public_key(), now=now + 10, body=BODY)
    with pytest.raises(SignatureError):
        verify_proof(p_old, KEY.public_key(), now=now + 10.5, body=BODY)
    with pytest.raises(SignatureError):
        verify_proof(p_new, KEY.public_key(), now=now - 1.5, body=BODY)


SI = good().signature_input
PROFILE_VARIANTS = {
    # name: (Signature-Input, expected reason), each re-signed with the right key
    "other alg": (SI.replace('alg="ed25519"', 'alg="hmac-sha256"'), R.unsupported),
    "alg as a token": (SI.replace('alg="ed25519"', "alg=ed25519"), R.unsupported),
    "no @method": (SI.replace('"@method" ', ""), R.unsupported),
    "no @target-uri": (SI.replace(' "@target-uri"', ""), R.unsupported),
    "no content-digest": (SI.replace(' "content-digest"', ""), R.unsupported),
    "extra component": (SI.replace('"content-digest"', '"content-digest" "date"'), R.unsupported),
    "reordered": (
        SI.replace('"@method" "@target-uri"', '"@target-uri" "@method"'),
        R.unsupported,
    ),
    "component with a parameter": (
        SI.replace('"content-digest"', '"content-digest";sf'),
        R.unsupported,
    ),
    "component as a token": (SI.replace('"content-digest"', "content-digest"), R.unsupported),
    "other label": (SI.replace("sig1=", "sig2="), R.unsupported),
    "no nonce": (SI.replace(";nonce=", ";nonc="), R.unsupported),
    "extra parameter": (SI + ';tag="x"', R.unsupported),
    "no alg": (SI.replace(';alg="ed25519"', ""), R.unsupported),
    "created as a string": (re.sub(r"created=(\d+)", r'created="\1"', SI), R.malformed),
    "created as a date": (SI.replace(";created=", ";created=@"), R.malformed),
    "keyid as a token": (SI.replace('keyid="acc-1"', "keyid=acc-1"), R.malformed),
    "empty keyid": (SI.replace('keyid="acc-1"', 'keyid=""'), R.malformed),
    "not an inner list": ('sig1="@method";created=1', R.malformed),
    "duplicate label": (SI + ", " + SI, R.malformed),
    "duplicate parameter": (SI + ";created=1", R.malformed),
    "two signatures": (SI + ", " + SI.replace("sig1=", "sig2="), R.unsupported),
    "extra spaces": (SI.replace(" ", "  "), R.malformed),
    "leading zero": (SI.replace(";created=", ";created=0"), R.malformed),
}


@pytest.mark.parametrize("name", list(PROFILE_VARIANTS))
def test_profile_is_enforced_even_when_validly_signed(name: str) -> None:
    signature_input, reason = PROFILE_VARIANTS[name]
    assert signature_input != SI
    assert reason_of(lambda: check(resign(good(), signature_input))) is reason


def test_short_nonce_and_signature_shapes() -> None:
    fresh = good()
    short = fresh.signature_input.replace(parse_proof(fresh).nonce, "c2hvcnQ")
    assert reason_of(lambda: check(resign(fresh, short))) is R.malformed
    sig_variants = {
        "not bytes": 'sig1="abc"',
        "63 bytes": "sig1=:" + base64.b64encode(b"x" * 63).decode() + ":",
        "with a parameter": good().signature + ";x=1",
        "unpadded": good().signature.replace("=:", ":"),
        "other label": good().signature.replace("sig1", "sig2"),
    }
    for name, value in sig_variants.items():
        with pytest.raises(SignatureError) as err:
            check(good().model_copy(update={"signature": value}))
        assert err.value.reason in (R.malformed, R.unsupported), name


def test_values_that_could_forge_base_lines_are_refused() -> None:
    for update in [
        {"method": "POST\n"},
        {"method": "post"},
        {"target_uri": URI + '\n"@target-uri": x'},
        {"target_uri": "https://clinic.example/é"},
        {"content_digest": good().content_digest + ", sha-512=:AA==:"},
        {"content_digest": "sha-512=:" + "A" * 86 + "==:"},
    ]:
        with pytest.raises(SignatureError) as err:
            check(good().model_copy(update=update))
        assert err.value.reason is R.malformed, update


def test_one_list_of_reasons_with_messages() -> None:
    assert set(MESSAGES) == set(SignatureReason)
    assert {r.value for r in SignatureReason} >= {
        "missing", "malformed", "unsupported", "stale", "bad_signature",
        "digest_mismatch", "unknown_key", "disabled", "replayed",
    }  # fmt: skip
    err = SignatureError(R.replayed, "nonce abc")
    assert err.reason is R.replayed and str(err) == MESSAGES[R.replayed] + ": nonce abc"


# --- interoperability: a plain RFC 9421 base, as an independent implementation sees it ----


class _Message:
    def __init__(self, method: str, url: str, headers: dict[str, str]) -> None:
        self.method, self.url, self.headers = method, url, headers


def test_interoperates_with_http_message_signatures() -> None:
    import http_message_signatures as hms
    from http_message_signatures.algorithms import ED25519

    resolver = hms.MappingKeyResolver(
        public_keys={"acc-1": KEY.public_key()}, private_keys={"acc-1": KEY}
    )
    # Ours, verified by the library.
    headers = sign_request(KEY, "acc-1", "POST", URI, BODY)
    verifier = hms.HTTPMessageVerifier(signature_algorithm=ED25519, key_resolver=resolver)
    [result] = verifier.verify(
        _Message("POST", URI, dict(headers)),
        require_components=("@method", "@target-uri", "content-digest"),
        body=BODY,
    )
    assert result.label == "sig1" and result.parameters["keyid"] == "acc-1"
    # The library's, verified by us (it orders the parameters differently: verified as sent).
    message = _Message("POST", URI, {})
    hms.HTTPMessageSigner(signature_algorithm=ED25519, key_resolver=resolver).sign(
        message,
        key_id="acc-1",
        created=datetime.now(UTC),
        nonce="q3-_Zp8Wm1xV0aJkT2rN9sLd",
        label="sig1",
        covered_component_ids=("@method", "@target-uri", "content-digest"),
        body=BODY,
    )
    theirs = proof_from_headers("POST", URI, message.headers)
    assert theirs.signature_input != headers["Signature-Input"]
    assert check(theirs).nonce == "q3-_Zp8Wm1xV0aJkT2rN9sLd"


# --- shared vectors (read by the TypeScript suite too) -------------------------------------

VECTOR_CASES: list[dict[str, Any]] = [
    {
        "name": "post-json",
        "key_id": "acc-42",
        "method": "POST",
        "target_uri": "https://clinic.example/api/v1/patients",
        "body": '{"given_name":"Ada","family_name":"Okafor"}',
        "created": 1767225600,
        "nonce": "q3-_Zp8Wm1xV0aJkT2rN9sLd",
    },
    {
        "name": "get-empty-body-query",
        "key_id": "acc-42",
        "method": "GET",
        "target_uri": "https://clinic.example/api/v1/patients?family=Okafor&dob=1990-04-01",
        "body": "",
        "created": 1767225630,
        "nonce": "AAAAAAAAAAAAAAAAAAAAAA",
    },
    {
        # RFC 9421 §2.2.2: the target URI exactly as sent, percent-encoding kept (never
        # decoded nor re-encoded by the signer or the verifier).
        "name": "percent-encoded-path",
        "key_id": "acc-42",
        "method": "GET",
        "target_uri": "https://clinic.example/api/v1/chat/conversations/abc%7Edef/receipts",
        "body": "",
        "created": 1767225660,
        "nonce": "BBBBBBBBBBBBBBBBBBBBBB",
    },
    {
        "name": "encoded-space-and-query",
        "key_id": "acc-42",
        "method": "GET",
        "target_uri": "https://clinic.example/api/v1/patients/search"
        "?family_name=van%20Dijk&date_of_birth=1990-04-01",
        "body": "",
        "created": 1767225690,
        "nonce": "CCCCCCCCCCCCCCCCCCCCCC",
    },
    {
        "name": "encoded-path-with-body",
        "key_id": "acc-42",
        "method": "POST",
        "target_uri": "https://clinic.example/api/v1/chat/conversations/a%20b%2Fc/messages",
        "body": '{"text":"Grüße, ünd 🩺"}',
        "created": 1767225720,
        "nonce": "DDDDDDDDDDDDDDDDDDDDDD",
    },
]


def make_vectors() -> dict[str, Any]:
    """The shared vectors: fixed key (from a fixed seed), inputs, and expected outputs."""
    seed = bytes(range(32))
    key = Ed25519PrivateKey.from_private_bytes(seed)
    vectors = []
    for case in VECTOR_CASES:
        body = str(case["body"]).encode()
        method, uri = str(case["method"]), str(case["target_uri"])
        headers = sign_request(
            key, str(case["key_id"]), method, uri, body,
            created=int(case["created"]), nonce=str(case["nonce"]),
        )  # fmt: skip
        params_line = headers["Signature-Input"].partition("=")[2]
        base = signature_base(method, uri, headers["Content-Digest"], params_line)
        vectors.append(
            {
                **case,
                "content_digest": headers["Content-Digest"],
                "signature_input": headers["Signature-Input"],
                "signature_base": base.decode(),
                "signature": headers["Signature"],
            }
        )
    return {
        "description": "RFC 9421 + RFC 9530 request signatures (mesh/httpsig.py); Ed25519 is "
        "deterministic, so signatures are exact too. Bodies are UTF-8.",
        "private_key_seed_hex": seed.hex(),
        "public_key_hex": key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex(),
        "vectors": vectors,
    }


def write_vectors() -> None:
    VECTORS.parent.mkdir(parents=True, exist_ok=True)
    VECTORS.write_text(json.dumps(make_vectors(), indent=2) + "\n")


def test_shared_vectors_are_reproduced_exactly() -> None:
    assert VECTORS.exists(), f"{VECTORS} is missing: run python -m tests.test_httpsig"
    stored = json.loads(VECTORS.read_text())
    assert stored == make_vectors()
    first = stored["vectors"][0]
    assert first["signature_input"] == (
        'sig1=("@method" "@target-uri" "content-digest");created=1767225600;keyid="acc-42";'
        'nonce="q3-_Zp8Wm1xV0aJkT2rN9sLd";alg="ed25519"'
    )
    assert first["signature_base"] == (
        '"@method": POST\n'
        '"@target-uri": https://clinic.example/api/v1/patients\n'
        '"content-digest": sha-256=:zmtLxRltUP+MmlQzPFssXrzZ54Hf2R8Qa70D2HFdZbk=:\n'
        '"@signature-params": ("@method" "@target-uri" "content-digest");created=1767225600;'
        'keyid="acc-42";nonce="q3-_Zp8Wm1xV0aJkT2rN9sLd";alg="ed25519"'
    )
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(stored["public_key_hex"]))
    for v in stored["vectors"]:
        p = RequestProof(
            method=v["method"],
            target_uri=v["target_uri"],
            content_digest=v["content_digest"],
            signature_input=v["signature_input"],
            signature=v["signature"],
        )
        parsed = verify_proof(p, public, now=v["created"], body=v["body"].encode())
        assert (parsed.key_id, parsed.nonce) == (v["key_id"], v["nonce"])


# --- Wycheproof Ed25519 through cryptography ------------------------------------------------


# Ed25519 itself (every Project Wycheproof vector through mesh.ed25519.verify, which
# verify_proof uses) is checked in tests/keyvault/test_vectors.py.


# --- garbage never raises anything but SignatureError --------------------------------------

GARBAGE = [
    "", " ", "sig1", "sig1=", "sig1=(", "sig1=()", "sig1=:notb64:", "sig1=?1", "é", "\x00",
    "sig1=1;a", "sig1=(\"@method\"", "sig1=@99999999999999999", "sig1=9999999999999999",
    'sig1=%"%ff"', "sig1=" + "(" * 500, "sig1=(" + '"a" ' * 2000 + ")", "SIG1=()",
    "sig1=();created=@-99999999999999", "sig1=:" + "A" * 5000 + ":", "\ud800",
]  # fmt: skip


def _only_signature_errors(p: RequestProof, body: bytes | None = BODY) -> None:
    try:
        check(p, body=body)
    except SignatureError:
        pass


@pytest.mark.parametrize("value", GARBAGE)
def test_garbage_only_ever_raises_signature_error(value: str) -> None:
    for field in ("signature_input", "signature", "content_digest", "method", "target_uri"):
        with pytest.raises(SignatureError):
            check(good().model_copy(update={field: value}))


SF_CHARS = st.sampled_from([*'sig1=()";:@%?*-_.,/+ \tabcdefz0123456789ABZ', "é", "\x7f"])


@st.composite
def mutated(draw: st.DrawFn, original: str) -> str:
    """`original` with a few characters replaced, inserted or deleted."""
    chars = list(original)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(chars)))
        op = draw(st.sampled_from(["replace", "insert", "delete"]))
        if op == "insert" or i == len(chars):
            chars.insert(i, draw(SF_CHARS))
        elif op == "replace":
            chars[i] = draw(SF_CHARS)
        else:
            del chars[i]
    return "".join(chars)


FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.text(max_size=200), st.text(max_size=200))
def test_fuzzed_text_only_raises_signature_error(sig_input: str, signature: str) -> None:
    p = good().model_copy(update={"signature_input": sig_input, "signature": signature})
    with pytest.raises(SignatureError):
        check(p)


@FUZZ
@given(
    st.one_of(mutated(good().signature_input), st.text(SF_CHARS, max_size=120)),
    st.one_of(mutated(good().signature), st.just(good().signature)),
    st.one_of(mutated(good().content_digest), st.just(good().content_digest)),
    st.one_of(st.just(BODY), st.none(), st.binary(max_size=16)),
)
def test_fuzzed_structured_fields_only_raise_signature_error(
    sig_input: str, signature: str, digest: str, body: bytes | None
) -> None:
    p = good().model_copy(
        update={"signature_input": sig_input, "signature": signature, "content_digest": digest}
    )
    _only_signature_errors(p, body)


@FUZZ
@given(
    st.text(max_size=20),
    st.text(max_size=80),
    st.dictionaries(
        st.sampled_from(["Signature", "signature", "Signature-Input", "content-digest", "X"]),
        st.text(max_size=80),
    ),
)
def test_fuzzed_requests_only_raise_signature_error(
    method: str, uri: str, headers: dict[str, str]
) -> None:
    try:
        p = proof_from_headers(method, uri, headers)
    except SignatureError:
        return
    _only_signature_errors(p)


@FUZZ
@given(
    st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"), max_size=40
    ),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=64),
    st.binary(max_size=64),
)
def test_fuzzed_round_trip(method: str, path: str, key_id: str, body: bytes) -> None:
    uri = "https://clinic.example/" + path
    p = proof_from_headers(method, uri, sign_request(KEY, key_id, method, uri, body))
    assert check(p, body=body).key_id == key_id


def _either(parse: Callable[[RequestProof], ParsedSignature], p: RequestProof) -> object:
    try:
        return parse(p)
    except SignatureError as exc:
        return exc.reason


@FUZZ
@given(
    st.one_of(
        mutated(good().signature_input),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=64).map(
            lambda key_id: resign(good(), _input_with_key_id(key_id)).signature_input
        ),
    ),
    st.one_of(mutated(good().signature), st.just(good().signature)),
)
def test_fast_path_decides_exactly_as_the_general_parser(sig_input: str, signature: str) -> None:
    """The regex fast path for the profile's usual form never changes a decision: wherever it
    answers, the http_sfv parser gives the same parsed values; elsewhere it stays out."""
    p = good().model_copy(update={"signature_input": sig_input, "signature": signature})
    fast = httpsig._parse_usual(p)
    general = _either(httpsig._parse_fields, p)
    if fast is not None:
        assert fast == general
    assert _either(parse_proof, p) == general


def _input_with_key_id(key_id: str) -> str:
    return "sig1=" + httpsig._params_line(int(time.time()), key_id, "n" * 24)


def test_fast_path_takes_the_usual_form_and_leaves_the_rest() -> None:
    usual = good()
    assert httpsig._parse_usual(usual) == httpsig._parse_fields(usual)
    escaped = resign(usual, _input_with_key_id('acc"1'))  # keyid with an escape
    reordered = resign(
        usual,
        'sig1=("@method" "@target-uri" "content-digest");keyid="acc-1";created='
        f'{int(time.time())};nonce="{"n" * 24}";alg="ed25519"',
    )
    for other in (escaped, reordered):
        assert httpsig._parse_usual(other) is None
    assert parse_proof(escaped).key_id == 'acc"1'
    assert check(reordered).key_id == "acc-1"  # any order is valid, read by http_sfv


if __name__ == "__main__":
    write_vectors()
    print(f"wrote {VECTORS}")
