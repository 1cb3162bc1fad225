"""Malformed input through the real gateway, with valid signatures: always a readable 4xx.

A property-based test drives every operation of the gateway's OpenAPI document with
signed requests whose path, query and body values lie inside and far outside their
limits (strings up to 10^5 characters, numbers up to 10^30, unicode, empty, nulls, wrong
types, bodies that are not JSON or not UTF-8) and counts the answers: no 5xx, no stack
trace, no dropped connection. `MEDIHAVEN_FUZZ_EXAMPLES` sets the examples per operation
(a few in CI; `make fuzz` runs many). The cases a first independent client found are
named regression tests, and so is signing the target URI exactly as sent (RFC 9421
§2.2.2: percent-encoding kept), which any RFC 9421 client does.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.base import API_PREFIX, Role
from gateway.access import ACCESS
from mesh.httpsig import sign_request
from tests.gateway.support import Mesh, Staff, mesh

SERVICES = [
    "services.keyvault",
    "services.auth",
    "services.records",
    "services.scheduling",
    "services.chat",
    "services.audit",
]
UNLIMITED = {
    f"MEDIHAVEN_RATE_{bucket}_{what}": "1000000"
    for bucket in ("GENERAL", "PATIENT")
    for what in ("CAPACITY", "PER_S")
}
EXAMPLES = int(os.environ.get("MEDIHAVEN_FUZZ_EXAMPLES", "4"))
HUGE = "9" * 30
LONG = "A" * 3000


@dataclass
class Fuzzed:
    """What the fuzzer saw, for the report and the assertions."""

    statuses: Counter[int] = field(default_factory=Counter)
    dropped: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def record(self, where: str, response: httpx.Response | None, error: str = "") -> None:
        if response is None:
            self.dropped.append(f"{where}: {error}")
            return
        self.statuses[response.status_code] += 1
        if response.status_code >= 500:
            self.server_errors.append(f"{where}: {response.status_code} {response.text[:200]}")
        elif response.status_code >= 400 and not _readable(response):
            self.unreadable.append(f"{where}: {response.status_code} {response.text[:200]}")


def _readable(response: httpx.Response) -> bool:
    """A 4xx a person can read: JSON `{"error": {"message": …}}`, no stack trace."""
    if "Traceback" in response.text:
        return False
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(message, str) and bool(message)


class Client:
    """One staff member's keep-alive connection, signing the URL exactly as sent."""

    def __init__(self, base: str, staff: Staff) -> None:
        self.base = base
        self.account_id = staff.account_id
        self.key: Ed25519PrivateKey = staff.client.private_key
        self.http = httpx.Client(timeout=30)

    def send(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        *,
        content_type: str = "application/json",
        sign: bool = True,
    ) -> httpx.Response:
        url = self.base + target
        headers: dict[str, str] = {}
        if sign:
            try:
                headers = sign_request(self.key, self.account_id, method, url, body)
            except ValueError:  # not signable (e.g. a URI beyond the profile's 4096 chars)
                headers = {"Signature-Input": "sig1=()", "Signature": "sig1=:AA==:"}
        if method in ("POST", "PUT"):
            headers["Content-Type"] = content_type
        # `httpx.URL` would re-encode the path; send the raw target as it was signed.
        request = self.http.build_request(method, url, content=body, headers=headers)
        request.url = httpx.URL(url)
        return self.http.send(request)

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mesh, dict[Role, Client]]]:
    with mesh("gwmalformed", tmp_path_factory.mktemp("malformedlogs"), SERVICES, **UNLIMITED) as m:
        clients = {
            Role.administrator: Client(m.url, m.admin()),
            Role.physician: Client(m.url, m.staff("physician")),
            Role.receptionist: Client(m.url, m.staff("receptionist")),
        }
        try:
            yield m, clients
        finally:
            for client in clients.values():
                client.close()


# ------------------------------------------------------------------ named regressions

LONG_IDS = [
    ("POST", f"/tokens/{LONG}/revoke", Role.administrator, "{}"),
    ("PUT", f"/staff/{LONG}/status", Role.administrator, '{"status":"disabled"}'),
    ("POST", f"/chat/conversations/{LONG}/messages", Role.physician, '{"text":"hello"}'),
    ("POST", f"/chat/conversations/{LONG}/read", Role.physician, '{"up_to_message_id":1}'),
    ("GET", f"/chat/conversations/{LONG}/receipts", Role.physician, ""),
    ("GET", f"/audit/patients/{LONG}", Role.administrator, ""),
]
HUGE_OFFSETS = [
    f"/audit/events?offset={HUGE}",
    f"/audit/patients/{uuid.uuid4()}?offset={HUGE}",
    f"/audit/export?offset={HUGE}",
]


@pytest.mark.parametrize(
    ("method", "path", "role", "body"),
    LONG_IDS,
    ids=["revoke-token", "staff-status", "send", "mark-read", "receipts", "patient-history"],
)
def test_an_id_longer_than_its_limit_is_a_422_naming_it(
    world: tuple[Mesh, dict[Role, Client]], method: str, path: str, role: Role, body: str
) -> None:
    _, clients = world
    response = clients[role].send(method, API_PREFIX + path, body.encode())
    assert response.status_code == 422, response.text
    locations = [e["loc"] for e in response.json()["error"]["details"]]
    assert any(loc[0] == "path" for loc in locations), locations
    # the same keep-alive connection goes on serving
    assert clients[role].send("GET", API_PREFIX + "/me").status_code == 200


@pytest.mark.parametrize("path", HUGE_OFFSETS, ids=["events", "patient-history", "export"])
def test_a_30_digit_offset_is_a_422_not_a_database_error(
    world: tuple[Mesh, dict[Role, Client]], path: str
) -> None:
    _, clients = world
    admin = clients[Role.administrator]
    response = admin.send("GET", API_PREFIX + path)
    assert response.status_code == 422, response.text
    assert ["query", "offset"] in [e["loc"][:2] for e in response.json()["error"]["details"]]
    assert admin.send("GET", API_PREFIX + "/audit/events?limit=1").status_code == 200


@pytest.mark.parametrize(
    "segment", ["abc%7Edef", "abc~def", "with%20space", "%C3%A9t%C3%A9", "a%2Fb"]
)
def test_the_target_uri_is_verified_exactly_as_sent(
    world: tuple[Mesh, dict[Role, Client]], segment: str
) -> None:
    """A client signing the URL it sends (percent-encoding kept) is never refused for the
    signature: the conversation is simply unknown (404)."""
    _, clients = world
    response = clients[Role.physician].send(
        "GET", f"{API_PREFIX}/chat/conversations/{segment}/receipts"
    )
    assert response.status_code == 404, response.text


def test_a_signature_over_another_encoding_of_the_same_path_is_refused(
    world: tuple[Mesh, dict[Role, Client]],
) -> None:
    """`%7E` and `~` name the same conversation but are different target URIs: signing
    one and sending the other is a bad signature (nothing is normalised)."""
    _, clients = world
    doctor = clients[Role.physician]
    signed = doctor.base + f"{API_PREFIX}/chat/conversations/abc%7Edef/receipts"
    headers = sign_request(doctor.key, doctor.account_id, "GET", signed, b"")
    sent = doctor.base + f"{API_PREFIX}/chat/conversations/abc~def/receipts"
    request = doctor.http.build_request("GET", sent, headers=headers)
    response = doctor.http.send(request)
    assert response.status_code == 401
    assert response.json()["error"]["details"]["reason"] == "bad_signature"


def test_bodies_that_are_not_json_or_not_utf8_are_422(
    world: tuple[Mesh, dict[Role, Client]],
) -> None:
    _, clients = world
    desk = clients[Role.receptionist]
    for body in (b"\xff\xfe\x00", b"not json", b"[1, 2]", b'{"demographics": ' * 5000, b"null"):
        response = desk.send("POST", API_PREFIX + "/patients", body)
        assert 400 <= response.status_code < 500, (body[:20], response.text)
        assert _readable(response), response.text
    assert desk.send("GET", API_PREFIX + "/me").status_code == 200


def test_an_unknown_query_parameter_is_named(world: tuple[Mesh, dict[Role, Client]]) -> None:
    _, clients = world
    response = clients[Role.administrator].send("GET", API_PREFIX + "/tokens?colour=blue")
    assert response.status_code == 422
    assert ["query", "colour"] in [e["loc"][:2] for e in response.json()["error"]["details"]]


# ------------------------------------------------------------------ the WebSocket handshake


def _handshake(client: Client, query: str, *, sign: bool = True) -> httpx.Response:
    """A WebSocket upgrade request, signed like the browser's (signature in the query)."""
    target = f"{API_PREFIX}/ws" + (f"?{query}" if query else "")
    url = client.base.replace("http://", "ws://") + target
    signed = sign_request(client.key, client.account_id, "GET", url, b"") if sign else {}
    carried = {
        "sig_input": signed.get("Signature-Input", ""),
        "sig": signed.get("Signature", ""),
        "digest": signed.get("Content-Digest", ""),
    }
    joiner = "&" if query else "?"
    full = client.base + target + (joiner + urlencode(carried, quote_via=quote) if sign else "")
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    with httpx.Client(timeout=10) as http:
        request = http.build_request("GET", full, headers=headers)
        request.url = httpx.URL(full)
        return http.send(request)


@pytest.mark.parametrize(
    ("query", "sign", "status"),
    [
        ("last_id=-1", True, 422),
        (f"last_id={HUGE}", True, 422),
        ("last_id=abc", True, 422),
        ("last_id=1&last_id=2", True, 422),
        ("sig_input=" + "A" * 6000 + "&sig=x&digest=y", False, 401),
        ("", False, 401),
        ("sig_input=garbage&sig=garbage&digest=garbage", False, 401),
    ],
    ids=["negative", "huge", "not-a-number", "repeated", "oversized", "unsigned", "garbage"],
)
def test_a_malformed_handshake_gets_a_readable_refusal(
    world: tuple[Mesh, dict[Role, Client]], query: str, sign: bool, status: int
) -> None:
    _, clients = world
    response = _handshake(clients[Role.physician], query, sign=sign)
    assert response.status_code == status, response.text
    assert _readable(response), response.text


# ------------------------------------------------------------------ property-based, every operation

VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "\x00", "\u202e", "💉" * 500, "é" * 20000, "A" * 100_000]),
    st.sampled_from(["../../etc/passwd", "' OR 1=1 --", "%00", "%FF", "null", "{}", "[]"]),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 10**30, 1.5, -1e308, 1e308]),
    st.none(),
    st.booleans(),
    st.just(str(uuid.UUID(int=0))),
    st.builds(lambda: str(uuid.uuid4())),
    st.sampled_from(["2026-12-01", "2026-02-30", "2026-12-01T10:00:00Z", "10:00", "24:00"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
URL_VALUES = VALUES.map(lambda v: v[:1000] if isinstance(v, str) else v)
"""Path and query values: as hostile, but an HTTP client sends no URL over 64 KiB (the
10^5-character values go into bodies; a URL longer than the profile's 4096 characters
cannot be signed and is refused as such)."""
RAW_BODIES = st.sampled_from(
    [b"", b"\xff\xfe", b"not json", b"[]", b"null", b"1e999", b'{"a":' * 2000, b"{}"]
)


LEFT_OUT = {f"{API_PREFIX}/vault/seal"}
"""Sealing needs no input and would take the keyvault (and every later case) down."""


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if (
                method.upper() in ("GET", "POST", "PUT")
                and path.startswith(API_PREFIX)
                and path not in LEFT_OUT
            ):
                found.append((method.upper(), path, operation))
    return found


def body_fields(spec: dict[str, Any], operation: dict[str, Any]) -> list[str]:
    schema = (operation.get("requestBody", {}).get("content", {}).get("application/json", {})).get(
        "schema", {}
    )
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return list(schema.get("properties", {}))


def role_for(operation: dict[str, Any]) -> Role:
    """A role allowed to call the operation, so requests get past the role check."""
    name = operation.get("operationId", "")
    for method_name, roles in ACCESS.items():
        if name.startswith(method_name.replace(".", "_")):
            return sorted(roles)[0]
    return Role.administrator


def fuzz(
    client: Client,
    method: str,
    path: str,
    operation: dict[str, Any],
    spec: dict[str, Any],
    fuzzed: Fuzzed,
) -> None:
    """`EXAMPLES` signed requests to one operation, every value drawn from VALUES."""
    params = [p for p in operation.get("parameters", []) if p["in"] in ("path", "query")]
    fields = body_fields(spec, operation)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        values=st.fixed_dictionaries({p["name"]: URL_VALUES for p in params}),
        body=st.fixed_dictionaries({name: VALUES for name in fields}),
        raw=st.one_of(st.none(), RAW_BODIES),
    )
    def run(values: dict[str, Any], body: dict[str, Any], raw: bytes | None) -> None:
        target = path
        query = []
        for p in params:
            value = values[p["name"]]
            text = value if isinstance(value, str) else json.dumps(value)
            if p["in"] == "path":
                target = target.replace("{" + p["name"] + "}", quote(text, safe="") or "x")
            elif value is not None:
                query.append((p["name"], text))
        if query:
            target += "?" + urlencode(query, quote_via=quote)
        content = b""
        if method in ("POST", "PUT"):
            content = raw if raw is not None else json.dumps(body).encode()
        where = f"{method} {path}"
        try:
            response = client.send(method, target, content)
        except httpx.InvalidURL:
            return  # not sendable by an HTTP client at all (over 64 KiB)
        except httpx.HTTPError as exc:
            fuzzed.record(where, None, f"{type(exc).__name__}: {exc}")
            return
        fuzzed.record(where, response)

    run()


def test_every_operation_answers_every_value_with_a_readable_4xx(
    world: tuple[Mesh, dict[Role, Client]],
) -> None:
    m, clients = world
    with httpx.Client(timeout=30) as http:
        spec = http.get(m.url + API_PREFIX + "/openapi.json").json()
    fuzzed = Fuzzed()
    ops = operations(spec)
    assert len(ops) >= 55
    for method, path, operation in ops:
        fuzz(clients[role_for(operation)], method, path, operation, spec, fuzzed)
    report = {
        "operations": len(ops),
        "requests": sum(fuzzed.statuses.values()) + len(fuzzed.dropped),
        "statuses": dict(sorted(fuzzed.statuses.items())),
        "server_errors": len(fuzzed.server_errors),
        "dropped_connections": len(fuzzed.dropped),
    }
    print("\nfuzzing the gateway:", json.dumps(report))
    for problem in [*fuzzed.server_errors, *fuzzed.dropped, *fuzzed.unreadable][:20]:
        print("  ", problem)
    assert fuzzed.server_errors == []
    assert fuzzed.dropped == []
    assert fuzzed.unreadable == []


def test_the_readme_health_example_is_what_the_gateway_writes(
    world: tuple[Mesh, dict[Role, Client]],
) -> None:
    """Byte for byte, once instance ids and latencies (which vary) are set aside."""
    m, _ = world
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = readme.split("```json\n", 1)[1].split("\n```", 1)[0]
    with httpx.Client(timeout=10) as http:
        written = http.get(m.url + API_PREFIX + "/health/mesh").text

    def shape(text: str) -> str:
        return re.sub(r'"instance":"[^"]*","latency_ms":[0-9.]+', '"instance":_,"latency":_', text)

    assert shape(written) == shape(example)
