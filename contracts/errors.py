"""Typed error replies: every RPC failure carries one of these codes.

The gateway maps a code to an HTTP status with `HTTP_STATUS`; callers inside the mesh
receive the same code as a typed exception (`mesh.rpc.RpcError` and subclasses).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from contracts.base import Model


class ErrorCode(StrEnum):
    bad_request = "bad_request"
    validation = "validation"
    unauthenticated = "unauthenticated"
    forbidden = "forbidden"
    off_duty = "off_duty"
    not_found = "not_found"
    conflict = "conflict"
    integrity = "integrity"
    rate_limited = "rate_limited"
    sealed = "sealed"
    unavailable = "unavailable"
    no_route = "no_route"
    timeout = "timeout"
    internal = "internal"


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.bad_request: 400,
    ErrorCode.validation: 422,
    ErrorCode.unauthenticated: 401,
    ErrorCode.forbidden: 403,
    ErrorCode.off_duty: 403,
    ErrorCode.not_found: 404,
    ErrorCode.conflict: 409,
    ErrorCode.integrity: 409,
    ErrorCode.rate_limited: 429,
    ErrorCode.sealed: 503,
    ErrorCode.unavailable: 503,
    ErrorCode.no_route: 503,
    ErrorCode.timeout: 504,
    ErrorCode.internal: 500,
}


class ErrorReply(Model):
    """Body of an error reply (`x-status: error`)."""

    code: ErrorCode
    message: str
    details: dict[str, Any] | list[Any] | None = None
