"""Between a signed HTTP request and the RPC request it stands for (pure functions).

`build_request` is the one mapping from (path parameters, raw query string, raw body) to
a method's request model; the gateway uses it to make the RPC request and every service
that re-verifies a user's signature uses it again on the forwarded signature material,
so both derive the same request from the same signed bytes. `target_of` is its inverse
for clients (SDK, CLI, tests): the method, path with query, and body that a request is
sent as. `operation_of` finds which routed method a signed target URI belongs to.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from pydantic import BaseModel

from contracts.base import HttpRoute, RpcMethod

ReqT = TypeVar("ReqT", bound=BaseModel)
RespT = TypeVar("RespT", bound=BaseModel)


class RouteError(ValueError):
    """The HTTP request does not fit its route: `loc` names the part (for a 422)."""

    def __init__(self, loc: Sequence[str | int], message: str, kind: str) -> None:
        super().__init__(message)
        self.loc = tuple(loc)
        self.message = message
        self.kind = kind

    def details(self) -> list[dict[str, Any]]:
        return [{"loc": list(self.loc), "msg": self.message, "type": self.kind}]


def _route(method: RpcMethod[Any, Any]) -> HttpRoute:
    if method.route is None:
        raise TypeError(f"{method.name} has no HTTP route")
    return method.route


def parse_query(raw_query: str) -> dict[str, str]:
    """The query parameters of a raw query string: each name once, UTF-8 only."""
    try:
        pairs = parse_qsl(raw_query, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise RouteError(
            ["query"], "the query string is not valid UTF-8", "query_encoding"
        ) from None
    values: dict[str, str] = {}
    for name, value in pairs:
        if name in values:
            raise RouteError(["query", name], f"the parameter {name!r} is given twice", "repeated")
        values[name] = value
    return values


def _body_object(route: HttpRoute, body: bytes) -> dict[str, Any]:
    if not route.has_body:
        if body:
            raise RouteError(["body"], f"a {route.method} request has no body", "unexpected_body")
        return {}
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except UnicodeDecodeError:
        raise RouteError(["body"], "the body is not valid UTF-8", "body_encoding") from None
    except ValueError:
        raise RouteError(["body"], "the body is not valid JSON", "json_invalid") from None
    except RecursionError:
        raise RouteError(["body"], "the body is nested too deeply", "json_too_deep") from None
    if not isinstance(value, dict):
        raise RouteError(["body"], "the body must be a JSON object", "object_type")
    return value


def build_request(
    method: RpcMethod[ReqT, Any],
    path_params: Mapping[str, str],
    raw_query: str,
    body: bytes,
) -> ReqT:
    """The RPC request a signed HTTP request stands for.

    Raises `RouteError` (unknown or repeated query parameter, a body field that belongs
    in the path or query, a body that is not a JSON object) or pydantic's
    `ValidationError` (a value the request model refuses).
    """
    route = _route(method)
    query = parse_query(raw_query)
    fields = method.request.model_fields
    for name in query:
        if name not in route.query:
            raise RouteError(["query", name], f"unknown query parameter {name!r}", "unknown")
    document = _body_object(route, body)
    for name in document:
        if name in route.query or name in route.path_params:
            raise RouteError(
                ["body", name], f"{name!r} belongs in the URL, not in the body", "misplaced"
            )
        if name not in fields:
            raise RouteError(["body", name], f"unknown field {name!r}", "extra_forbidden")
    data: dict[str, Any] = {**document, **query, **dict(path_params)}
    return method.request.model_validate(data)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def query_field(model: type[BaseModel], wire: str) -> str:
    """The field a query parameter fills: the one whose alias it is (FHIR's `_count`
    cannot be a Python field name), else the field of that name."""
    for name, info in model.model_fields.items():
        if info.alias == wire:
            return name
    return wire


def target_of(method: RpcMethod[ReqT, Any], request: ReqT) -> tuple[str, str, bytes]:
    """(HTTP method, path with query, body bytes) that `request` is sent as."""
    route = _route(method)
    values = request.model_dump(mode="json")
    path = route.full_path
    for name in route.path_params:
        path = path.replace("{" + name + "}", quote(_text(values[name]), safe=""))
    fields = method.request.model_fields
    query = []
    in_query = {query_field(method.request, wire): wire for wire in route.query}
    for name, wire in in_query.items():
        value = values.get(name)
        if value is not None and getattr(request, name) != fields[name].default:
            query.append((wire, _text(value)))
    if query:
        path += "?" + urlencode(query, quote_via=quote)
    if not route.has_body:
        for name, info in fields.items():
            if name not in in_query and name not in route.path_params:
                if getattr(request, name) != info.default:
                    raise ValueError(f"{method.name}: {name} cannot travel in a {route.method}")
        return route.method, path, b""
    body_fields = set(fields) - set(in_query) - set(route.path_params)
    body = {k: v for k, v in values.items() if k in body_fields}
    return route.method, path, json.dumps(body, separators=(",", ":")).encode()


def _pattern(route: HttpRoute) -> re.Pattern[str]:
    parts = re.split(r"(\{[a-z_]+\})", route.full_path)
    regex = "".join(
        f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts if p
    )
    return re.compile(regex)


class RouteIndex:
    """Finds the routed method of a signed request: literal routes win over parameters."""

    def __init__(self, methods: Sequence[RpcMethod[Any, Any]]) -> None:
        routed = [m for m in methods if m.route is not None]
        routed.sort(key=lambda m: len(_route(m).path_params))
        self._entries = [(m, _route(m).method, _pattern(_route(m))) for m in routed]

    def match(self, http_method: str, raw_path: str) -> tuple[RpcMethod[Any, Any], dict[str, str]]:
        """The method and its decoded path parameters; RouteError if none fits."""
        for method, verb, pattern in self._entries:
            if verb != http_method:
                continue
            found = pattern.fullmatch(raw_path)
            if found is None:
                continue
            try:
                params = {k: unquote(v, errors="strict") for k, v in found.groupdict().items()}
            except UnicodeDecodeError:
                raise RouteError(["path"], "the path is not valid UTF-8", "path_encoding") from None
            return method, params
        raise RouteError(["path"], f"no route {http_method} {raw_path}", "unknown_route")

    def operation_of(
        self, http_method: str, target_uri: str
    ) -> tuple[RpcMethod[Any, Any], dict[str, str], str]:
        """(method, path parameters, raw query) of a signed `@method` and `@target-uri`."""
        parts = urlsplit(target_uri)
        method, params = self.match(http_method, parts.path)
        return method, params, parts.query
