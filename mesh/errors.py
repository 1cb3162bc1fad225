"""Typed RPC errors: a service raises one, the caller receives the same class back.

Raise these from handlers for expected refusals; anything else becomes an `internal`
error reply with a generic message (details stay in the service's log).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contracts.errors import ErrorCode, ErrorReply


class RpcError(Exception):
    """An error reply from a service (or a transport failure), with a typed code."""

    code: ErrorCode = ErrorCode.internal

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        details: dict[str, Any] | list[Any] | None = None,
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.details = details

    def to_reply(self) -> ErrorReply:
        return ErrorReply(code=self.code, message=self.message, details=self.details)


def _error_class(code: ErrorCode, name: str) -> type[RpcError]:
    return type(name, (RpcError,), {"code": code, "__doc__": f"Error reply `{code}`."})


BadRequest = _error_class(ErrorCode.bad_request, "BadRequest")
InvalidRequest = _error_class(ErrorCode.validation, "InvalidRequest")
Unauthenticated = _error_class(ErrorCode.unauthenticated, "Unauthenticated")
Forbidden = _error_class(ErrorCode.forbidden, "Forbidden")
OffDuty = _error_class(ErrorCode.off_duty, "OffDuty")
NotFound = _error_class(ErrorCode.not_found, "NotFound")
Conflict = _error_class(ErrorCode.conflict, "Conflict")
IntegrityError = _error_class(ErrorCode.integrity, "IntegrityError")
RateLimited = _error_class(ErrorCode.rate_limited, "RateLimited")
Sealed = _error_class(ErrorCode.sealed, "Sealed")
Unavailable = _error_class(ErrorCode.unavailable, "Unavailable")
NoRoute = _error_class(ErrorCode.no_route, "NoRoute")
RpcTimeout = _error_class(ErrorCode.timeout, "RpcTimeout")
InternalError = _error_class(ErrorCode.internal, "InternalError")

_BY_CODE: dict[ErrorCode, type[RpcError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        InvalidRequest,
        Unauthenticated,
        Forbidden,
        OffDuty,
        NotFound,
        Conflict,
        IntegrityError,
        RateLimited,
        Sealed,
        Unavailable,
        NoRoute,
        RpcTimeout,
        InternalError,
    )
}


UNREACHABLE = frozenset({ErrorCode.unavailable, ErrorCode.timeout, ErrorCode.no_route})
"""Codes that say the callee could not be asked (down, too slow, no such queue), not that
it refused: a check that cannot be made fails closed, as 503, never as a refusal."""


def unreachable(exc: RpcError) -> bool:
    return exc.code in UNREACHABLE


def invalid_field(loc: str | Sequence[str | int], msg: str, kind: str) -> RpcError:
    """A 422 naming the request field at fault (dotted path or parts), as pydantic would."""
    parts = loc.split(".") if isinstance(loc, str) else list(loc)
    return InvalidRequest(msg, details=[{"loc": parts, "msg": msg, "type": kind}])


def error_from_reply(reply: ErrorReply) -> RpcError:
    """The typed exception for an error reply."""
    return _BY_CODE.get(reply.code, RpcError)(reply.message, code=reply.code, details=reply.details)
