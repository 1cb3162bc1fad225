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
from typing import Any
from urllib.parse import quote, urlencode

from pydantic import ValidationError

from contracts.base import RpcMethod
from contracts.common import routes
from contracts.errors import HTTP_STATUS, ErrorCode
from contracts.http import RouteError, build_request
from tests.support.clinic import TEST_ORIGIN, StaffMember


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
