"""Python SDK: an HTTP client that signs every request as the gateway expects.

    client = MedihavenClient("http://127.0.0.1:8000", account_id, private_key)
    me = client.get("/api/v1/me")

Each request gets RFC 9421 headers (Content-Digest, Signature-Input, Signature) made by
`mesh.httpsig.sign_request` over the method, the exact URL sent and the body.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.auth import REGISTRATION_KEY_ID
from mesh.httpsig import sign_request


def path(template: str, **params: str) -> str:
    """An API path with its parameters percent-encoded (`{name}` in `template`), so an id
    holding `/`, `?`, `#`, `%` or a space stays one path segment; the request is then
    signed exactly as it is sent (RFC 9421 §2.2.2)."""
    return template.format(**{name: quote(str(value), safe="") for name, value in params.items()})


class ApiError(Exception):
    """An error answer of the gateway, with its status, code, message and details."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        error = response.json()["error"]
        raise ApiError(response.status_code, error["code"], error["message"], error.get("details"))
    except (ValueError, KeyError, TypeError):
        raise ApiError(response.status_code, "error", response.text[:500]) from None


class MedihavenClient:
    """Signs and sends requests; `key_id` is the account id (or `register` to register)."""

    def __init__(
        self,
        base_url: str,
        key_id: str,
        private_key: Ed25519PrivateKey,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.key_id = key_id
        self.private_key = private_key
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """Send a signed request and return the raw response (no status check). Retrying a
        write with the same `idempotency_key` (and a fresh signature) writes it once."""
        url = httpx.URL(
            self.base_url + path, params={k: v for k, v in (params or {}).items() if v is not None}
        )
        content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = sign_request(self.private_key, self.key_id, method, str(url), content)
        if body is not None:
            headers["Content-Type"] = "application/json"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return self._http.request(method, url, content=content, headers=headers)

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = self.request(method, path, body, params)
        _raise_for(response)
        return response.json() if response.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, None, **params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, {} if body is None else body)

    def put(self, path: str, body: Any = None) -> Any:
        return self.call("PUT", path, {} if body is None else body)


def register(
    base_url: str,
    private_key: Ed25519PrivateKey,
    *,
    token: str,
    username: str,
    display_name: str,
    public_key: str,
    specialty: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> dict[str, Any]:
    """Register a new key with a registration token; returns the new account."""
    client = MedihavenClient(base_url, REGISTRATION_KEY_ID, private_key, transport=transport)
    try:
        body = {
            "token": token,
            "username": username,
            "display_name": display_name,
            "public_key": public_key,
        }
        if specialty:
            body["specialty"] = specialty
        result: dict[str, Any] = client.post("/api/v1/register", body)
        return result
    finally:
        client.close()


def unsigned(base_url: str, method: str, path: str, body: Any = None) -> Any:
    """A request to an unauthenticated route (health, keyvault status and unseal)."""
    with httpx.Client(timeout=10.0) as http:
        response = http.request(method, base_url.rstrip("/") + path, json=body)
    _raise_for(response)
    return response.json()


def signature_fingerprint(signature_b64: str) -> str:
    """SHA-256 of a prescription's signature bytes, hex in groups of four: what the
    printed prescription shows, to compare with the signature on record."""
    digest = hashlib.sha256(base64.b64decode(signature_b64)).hexdigest()
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def sign_prescription(
    private_key: Ed25519PrivateKey, prescriber_id: str, prescription: dict[str, Any]
) -> dict[str, Any]:
    """The prescription body with its `signature`: Ed25519 over the canonical prescription
    (`contracts.records.canonical_prescription`) by the prescribing physician's key."""
    from contracts import records

    unsigned_request = records.PrescribeRequest.model_validate(
        {**prescription, "signature": "A" * 86 + "=="}
    )
    core = unsigned_request.core(prescriber_id)
    signature = base64.b64encode(private_key.sign(records.canonical_prescription(core))).decode()
    return {**prescription, "signature": signature}


def new_prescription(
    private_key: Ed25519PrivateKey,
    prescriber_id: str,
    patient_id: str,
    encounter_id: str,
    medication: dict[str, Any],
    alerts: list[str],
    override_reason: str,
) -> dict[str, Any]:
    """A new prescription's body, signed (`sign_prescription`): a fresh id, created now,
    with the safety check's alert codes, overridden for `override_reason` (none: "")."""
    return sign_prescription(
        private_key,
        prescriber_id,
        {
            "prescription_id": str(uuid.uuid4()),
            "patient_id": patient_id,
            "encounter_id": encounter_id,
            "created_at": datetime.now(UTC).isoformat(),
            "medication": medication,
            "alerts": alerts,
            "override_reason": override_reason if alerts else "",
        },
    )
