"""Every error leaves the gateway as JSON `{"error": {"code", "message", "details"}}`.

Never a stack trace: unexpected exceptions are logged and answered with a generic 500.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.errors import HTTP_STATUS, ErrorCode
from contracts.fhir import FHIR_JSON, FHIR_PREFIX
from mesh import fhir
from mesh.errors import RpcError
from mesh.httpsig import SignatureError
from mesh.logging import get_logger

log = get_logger("gateway.errors")

HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(Exception):
    """An HTTP refusal raised by the gateway itself (not by a service)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or HTTP_CODES.get(status, "error")
        self.message = message
        self.details = details
        self.headers = headers


def is_fhir(path: str) -> bool:
    return path == FHIR_PREFIX or path.startswith(FHIR_PREFIX + "/")


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
    *,
    path: str = "",
) -> JSONResponse:
    """The error as JSON; under the FHIR base, as an OperationOutcome (FHIR clients read
    nothing else), with the same status and the same plain sentence."""
    if is_fhir(path):
        return JSONResponse(
            fhir.outcome(status, message),
            status_code=status,
            headers=headers,
            media_type=FHIR_JSON,
        )
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details}},
        status_code=status,
        headers=headers,
    )


def _validation_sentence(details: list[dict[str, Any]]) -> str:
    """One sentence naming each refused parameter (FHIR: the OperationOutcome's text)."""
    parts = []
    for d in details:
        loc = [str(p) for p in d["loc"] if p not in ("query", "path", "body")]
        parts.append(f"{'.'.join(loc) or 'request'}: {d['msg']}")
    return "the request is not valid (" + "; ".join(parts) + ")"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            exc.status, exc.code, exc.message, exc.details, exc.headers, path=request.url.path
        )

    @app.exception_handler(SignatureError)
    async def signature_error(request: Request, exc: SignatureError) -> JSONResponse:
        return error_response(
            401,
            ErrorCode.unauthenticated.value,
            exc.message,
            {"reason": exc.reason.value},
            path=request.url.path,
        )

    @app.exception_handler(RpcError)
    async def rpc_error(request: Request, exc: RpcError) -> JSONResponse:
        return error_response(
            HTTP_STATUS[exc.code], exc.code.value, exc.message, exc.details, path=request.url.path
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        if is_fhir(request.url.path):  # FHIR: an unsupported or bad parameter is a 400
            return error_response(
                400, "bad_request", _validation_sentence(details), path=request.url.path
            )
        return error_response(422, "validation", "the request is not valid", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers) if exc.headers else None
        return error_response(
            exc.status_code, code, str(exc.detail), None, headers, path=request.url.path
        )

    app.add_middleware(CatchAll)


class CatchAll:
    """Answers an unexpected exception with the generic 500 JSON, and does not raise it on.

    (Starlette's own error middleware re-raises after answering, and uvicorn then closes
    the connection: the client's next request on that keep-alive connection would be
    reset. Here the connection stays usable.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            log.exception("gateway.unhandled", error_type=type(exc).__name__)
            if not started:
                path = str(scope.get("path", ""))
                response = error_response(500, "internal", "internal error", path=path)
                await response(scope, receive, send)
