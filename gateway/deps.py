"""FastAPI dependencies shared by the gateway's routes: the verified caller and the RPC."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from contracts.base import RpcMethod
from gateway.access import allowed
from gateway.admission import Admission
from gateway.errors import ApiError
from gateway.security import Caller, Security
from mesh import attendance
from mesh.runtime import Runtime

ReqT = TypeVar("ReqT", bound=BaseModel)
RespT = TypeVar("RespT", bound=BaseModel)


def runtime(request: Request) -> Runtime:
    rt: Runtime | None = request.app.state.runtime
    if rt is None:
        raise ApiError(503, "the gateway is starting")
    return rt


def security(request: Request) -> Security:
    sec: Security | None = getattr(request.app.state, "security", None)
    if sec is None:
        raise ApiError(503, "the gateway is starting")
    return sec


def admission(request: Request) -> Admission:
    gate: Admission | None = getattr(request.app.state, "admission", None)
    if gate is None:
        raise ApiError(503, "the gateway is starting")
    return gate


def signed(*, patient_data: bool = False) -> Callable[[Request], Awaitable[Caller]]:
    """Dependency: the request's verified caller (or a 401/429/503 refusal)."""

    async def verified_caller(request: Request) -> Caller:
        return await security(request).verify(request, patient_data=patient_data)

    return verified_caller


async def forward(
    request: Request,
    caller: Caller,
    method: RpcMethod[ReqT, RespT],
    body: ReqT,
    **kwargs: Any,
) -> RespT:
    """Check the route table, then call the service as the caller (principal + proof),
    once the call has its turn (`gateway.admission`)."""
    async with admission(request).turn(caller.principal.account_id):
        as_caller = await _as_caller(request, caller, method, body)
        return await runtime(request).rpc.call(method, body, **as_caller, **kwargs)


async def _as_caller(
    request: Request, caller: Caller, method: RpcMethod[Any, Any], body: BaseModel
) -> dict[str, Any]:
    """The route table's and attendance's checks of the caller; then the keyword
    arguments that make a call the caller's (principal, proof, signed body, idempotency)."""
    if not allowed(method, caller.principal.role):
        raise ApiError(403, f"a {caller.principal.role.value} may not do this")
    await attendance.enforce(runtime(request), caller.principal, method, body)
    return {
        "principal": caller.principal,
        "proof": caller.proof_json,
        "signed_body": caller.body,
        "idempotency_key": caller.idempotency_key if method.write else None,
    }


class JsonReply(Response):
    media_type = "application/json"


async def relay(
    request: Request,
    caller: Caller,
    method: RpcMethod[ReqT, RespT],
    body: ReqT,
    **kwargs: Any,
) -> Response:
    """As `forward`, for a route whose reply is the service's reply: the JSON the service
    wrote (its contract model, serialised) goes to the client as it is, with the route's
    status code, instead of being validated into a model and serialised again twice."""
    route = request.scope.get("route")
    shown = getattr(route, "response_model", None)
    if shown is not None and shown is not method.response:
        raise TypeError(f"{method.name}: the route shows {shown}, the reply is {method.response}")
    async with admission(request).turn(caller.principal.account_id):
        as_caller = await _as_caller(request, caller, method, body)
        raw = await runtime(request).rpc.call_json(method, body, **as_caller, **kwargs)
    return JsonReply(raw, status_code=getattr(route, "status_code", None) or 200)


def rpc_request(model: type[ReqT], **fields: Any) -> ReqT:
    """The contract's request built from path/query/body parts, or a 422 naming the fields
    (for rules the route's own parameters cannot express, e.g. across several fields)."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None
