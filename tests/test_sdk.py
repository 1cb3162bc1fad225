"""The SDK (and so the CLI) sends, and signs, paths with each id as one encoded segment."""

from __future__ import annotations

import time

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cli.sdk import MedihavenClient, path
from mesh.httpsig import proof_from_headers, verify_proof
from tests.support.clinic import TEST_ORIGIN


def test_an_id_stays_one_path_segment() -> None:
    assert path("/api/v1/patients/{patient_id}", patient_id="a/b c?d#e%f") == (
        "/api/v1/patients/a%2Fb%20c%3Fd%23e%25f"
    )
    assert path("/x/{a}/y/{b}", a="é", b="~") == "/x/%C3%A9/y/~"


def test_the_request_is_signed_exactly_as_it_is_sent() -> None:
    key = Ed25519PrivateKey.generate()
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    client = MedihavenClient(TEST_ORIGIN, "acc-1", key, transport=httpx.MockTransport(record))
    client.get(path("/api/v1/chat/conversations/{c}/receipts", c="abc~d%20ef"), limit=2)
    (request,) = sent
    proof = proof_from_headers(request.method, str(request.url), request.headers)
    assert proof.target_uri.endswith("/chat/conversations/abc~d%2520ef/receipts?limit=2")
    verify_proof(proof, key.public_key(), now=time.time(), body=request.content)
