"""Bad input as a client sends it: the HTTP request a raw RPC body stands for, signed.

Bad-input tests send raw JSON on the bus. A service serves a user's request only with
the user's signature of that very HTTP request, and rebuilds the request from the signed
bytes (`contracts.http.build_request`, the same builder the gateway answers a 422 with).
So each raw body is turned into the HTTP request a client would send for it (path and
query parameters taken from the body, values as they are, not validated), and signed as
such: a valid request then reaches the handler, whose refusals carry their reasons; an
invalid one is refused before any handler, by the gateway with the builder's reasons
(`gateway_reasons`) and on the bus by the service with a 4xx.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from pydantic import ValidationError

from contracts.base import RpcMethod
from contracts.common import routes
from contracts.errors import HTTP_STATUS, ErrorCode
from contracts.http import RouteError, build_request
from mesh.errors import RpcError
from tests.support.clinic import TEST_ORIGIN, Clinic, StaffMember


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def http_form(method: RpcMethod[Any, Any], raw: bytes) -> tuple[str, str, bytes]:
    """(HTTP method, path with query, body) that a client would send `raw` (an RPC body,
    perhaps invalid) as. A body that is not a JSON object is sent as it is."""
    route = method.route
    assert route is not None, f"{method.name} has no route"
    path = route.full_path
    try:
        document = json.loads(raw)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        for name in route.path_params:
            path = path.replace("{" + name + "}", "x")
        return route.method, path, raw if route.has_body else b""
    values = dict(document)
    for name in route.path_params:
        value = values.pop(name, "")
        path = path.replace("{" + name + "}", quote(_text(value), safe=""))
    query = [(name, _text(values.pop(name))) for name in route.query if name in values]
    if not route.has_body:  # anything else has nowhere to go but the query
        query += [(name, _text(value)) for name, value in values.items()]
        values = {}
    if query:
        path += "?" + urlencode(query, quote_via=quote)
    body = json.dumps(values, separators=(",", ":")).encode() if route.has_body else b""
    return route.method, path, body


def signed_raw(member: StaffMember, method: RpcMethod[Any, Any], raw: bytes) -> tuple[str, bytes]:
    """(proof, signed body) of the HTTP request `raw` stands for, signed by `member`."""
    verb, path, body = http_form(method, raw)
    return member.proof(verb, f"{TEST_ORIGIN}{path}", body), body


def gateway_reasons(method: RpcMethod[Any, Any], raw: bytes) -> str | None:
    """Why the HTTP request `raw` stands for is not a valid request of `method` (what the
    gateway answers with a 422, and why the service refuses it), or None if it is."""
    verb, path, body = http_form(method, raw)
    try:
        found, params, query = routes().operation_of(verb, f"{TEST_ORIGIN}{path}")
        if found is not method:
            return f"the path is not a route of {method.name}"
        build_request(method, params, query, body)
    except RouteError as exc:
        return json.dumps(exc.details())
    except ValidationError as exc:
        return json.dumps(exc.errors(include_url=False, include_input=False), default=str)
    return None


def is_4xx(code: ErrorCode) -> bool:
    return 400 <= HTTP_STATUS[code] < 500


# ----------------------------------------------------------------- bad-input tables

Case = tuple[str, RpcMethod[Any, Any], StaffMember, Any, ErrorCode, str]
"""(name, method, caller, raw body, expected code, text the reasons must name)"""


def raw_of(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


async def refusal(
    clinic: Clinic, method: RpcMethod[Any, Any], body: Any, caller: StaffMember
) -> RpcError:
    """`body` sent raw on the bus, with the caller's signature of the HTTP request it
    stands for (as the client would have sent it)."""
    raw = raw_of(body)
    proof, signed_body = signed_raw(caller, method, raw)
    with pytest.raises(RpcError) as err:
        await clinic.client.rpc.call_raw(
            method.queue,
            method.name,
            raw,
            principal=caller.principal,
            proof=proof,
            signed_body=signed_body,
            idempotency_key=str(uuid.uuid4()) if method.write else None,
        )
    return err.value


def judge(
    name: str,
    method: RpcMethod[Any, Any],
    body: Any,
    error: RpcError,
    code: ErrorCode,
    text: str,
    *,
    value_errors: bool = False,
) -> list[str]:
    """What is wrong with `error` as the answer to this bad input (nothing: []).

    `value_errors`: whether the contract may answer with a plain `ValueError` (pydantic's
    "Value error, ..." text, which the web app words as a sentence of its own,
    `frontend/src/shared/problems.ts`: records' contracts do); else such a text is a
    developer's message (scheduling's contracts give whole sentences)."""
    seen = f"{error.message} {json.dumps(error.details)}"
    reasons = gateway_reasons(method, raw_of(body))
    if not value_errors and "Value error" in f"{seen} {reasons}":
        return [f"{name}: a developer's message: {reasons or seen}"]
    if reasons is not None:
        # Not a valid request of the route at all: the gateway answers 422 with these
        # reasons; the service, rebuilding the request from the signed bytes, refuses it
        # before any handler (a 4xx, never a 500).
        problems = []
        if text not in reasons:
            problems.append(f"{name}: expected the reasons to name {text!r}, got {reasons}")
        if not is_4xx(error.code):
            problems.append(f"{name}: expected a 4xx on the bus, got {error.code}: {seen}")
        return problems
    if error.code is not code or text not in seen:
        return [f"{name}: expected {code} with {text!r}, got {error.code}: {seen}"]
    if error.code is ErrorCode.validation and not error.details:
        return [f"{name}: a 422 without details"]
    return []


async def assert_refused(clinic: Clinic, cases: list[Case], *, value_errors: bool = False) -> None:
    """Each case sent, and refused as it expects; every miss named in one failure."""
    failures = []
    for name, method, caller, body, code, text in cases:
        error = await refusal(clinic, method, body, caller)
        failures += judge(name, method, body, error, code, text, value_errors=value_errors)
    assert not failures, "\n".join(failures)
