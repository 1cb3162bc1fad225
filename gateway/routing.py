"""The gateway's routes, made from `contracts/`: one per method with an `HttpRoute`.

Each route is declared once, in the contract: its path, query parameters, body and
status. The endpoint made here documents them in the OpenAPI document (path parameters,
a query model, a body model, each with the contract's own constraints, so FastAPI
refuses what the contract refuses with a 422 naming the field), checks the signature,
then builds the RPC request from the signed request with `contracts.http.build_request`
(the very function every service uses to check the forwarded signature) and relays the
service's reply. Routes that do more than relay (registration, sealing every replica,
the NDJSON export, the WebSocket) are written by hand and use the same builder.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from contracts.base import HttpRoute, RpcMethod
from contracts.common import routes
from contracts.http import RouteError, build_request
from gateway.deps import relay, signed
from gateway.errors import ApiError
from gateway.security import Caller
from mesh.errors import NoRoute

ReqT = TypeVar("ReqT", bound=BaseModel)


def _where(route: HttpRoute, field: str) -> str:
    if field in route.path_params:
        return "path"
    if field in route.query:
        return "query"
    return "body"


def signed_request(method: RpcMethod[ReqT, Any], caller: Caller) -> ReqT:
    """The RPC request the verified, signed HTTP request stands for (or a 422 naming the
    field): built from the signed target URI and body, exactly as the service will."""
    route = method.route
    assert route is not None
    try:
        found, params, query = routes().operation_of(caller.proof.method, caller.proof.target_uri)
        if found is not method:
            raise RouteError(["path"], "the signed URI is not this route", "route_mismatch")
        return build_request(method, params, query, caller.body)
    except RouteError as exc:
        raise RequestValidationError(exc.details()) from None
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        for error in errors:
            loc = tuple(error.get("loc", ()))
            if loc and isinstance(loc[0], str):
                error["loc"] = (_where(route, loc[0]), *loc)
        raise RequestValidationError(errors) from None


def _fields(method: RpcMethod[Any, Any], names: list[str], suffix: str) -> type[BaseModel]:
    fields = method.request.model_fields
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        f"{method.request.__name__}{suffix}",
        __config__=ConfigDict(extra="forbid"),
        **{name: (fields[name].annotation, fields[name]) for name in names},
    )
    return model


def endpoint_for(method: RpcMethod[Any, Any]) -> Any:
    """A FastAPI endpoint for `method`, with a signature FastAPI documents and checks."""
    route = method.route
    assert route is not None
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [inspect.Parameter("request", keyword, annotation=Request)]
    for name in route.path_params:
        parameters.append(inspect.Parameter(name, keyword, annotation=Annotated[str, Path()]))
    if route.query:
        query = _fields(method, list(route.query), "Query")
        parameters.append(inspect.Parameter("query", keyword, annotation=Annotated[query, Query()]))
    body_names = [
        n
        for n in method.request.model_fields
        if n not in route.query and n not in route.path_params
    ]
    if route.has_body and body_names:
        body = _fields(method, body_names, "Body")
        parameters.append(inspect.Parameter("body", keyword, annotation=body))
    who = Depends(signed(patient_data=route.patient_data))
    parameters.append(inspect.Parameter("who", keyword, annotation=Caller, default=who))

    async def endpoint(**values: Any) -> Response:
        request: Request = values["request"]
        caller: Caller = values["who"]
        rpc_request = signed_request(method, caller)
        if route.instance is None:
            return await relay(request, caller, method, rpc_request)
        # Addressed to one replica (e.g. a share sealed to that keyvault replica's key).
        instance = getattr(rpc_request, route.instance)
        try:
            return await relay(request, caller, method, rpc_request, instance=instance)
        except NoRoute:
            raise ApiError(404, f"no {method.service} replica {instance!r} is running") from None

    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    endpoint.__name__ = method.name.replace(".", "_")
    endpoint.__doc__ = route.summary or None
    return endpoint


def declared_router(methods: list[RpcMethod[Any, Any]]) -> APIRouter:
    """The routes of `methods` (paths under the API prefix), literal paths first."""
    router = APIRouter()
    for method in sorted(methods, key=lambda m: len(m.route.path_params) if m.route else 0):
        route = method.route
        assert route is not None
        router.add_api_route(
            route.path,
            endpoint_for(method),
            methods=[route.method],
            response_model=method.response,
            status_code=route.status,
            tags=[method.service],
            summary=None,
        )
    return router
