"""`/api/v1/ws`: the live channel, opened by a signed handshake.

The client signs the handshake like any request (`GET ws://…/api/v1/ws?last_id=N&
after_event=E`, RFC 9421 headers); a stale or replayed handshake is refused. With
`last_id`, the messages the client missed are sent first (in order, with their text: the
handshake's signature stands for that one read, `chat.catch_up`), up to a page; if more
were missed, a `catch_up_truncated` notice names where the client goes on with signed
reads. With `after_event`, every live-log event after it that this caller may hear (the
same check as live delivery) follows, oldest first (`resume_gap` first if the bounded log
no longer holds them all). `ready` then names the newest event id (`event_id`), and live
notifications follow; none is sent twice on a connection.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from redis.exceptions import RedisError

from contracts import chat
from gateway.errors import ApiError, error_response
from gateway.live import Connection
from gateway.routing import signed_request
from gateway.security import Caller, Security, signed_target
from gateway.state import state_of
from mesh.errors import RpcError
from mesh.httpsig import SignatureError
from mesh.logging import get_logger
from mesh.runtime import Runtime

router = APIRouter(tags=["live"])
log = get_logger("gateway.ws")


async def _catch_up(
    runtime: Runtime, caller: Caller, connection: Connection, request: chat.CatchUpRequest
) -> None:
    """What the client missed: one read, the one its signed handshake stands for."""
    page = await runtime.rpc.call(
        chat.CATCH_UP,
        request,
        principal=caller.principal,
        proof=caller.proof_json,
        signed_body=caller.body,
    )
    for message in page.messages:
        await connection.send({"type": "message", **message.model_dump(mode="json")})
    if page.next_cursor is not None:
        await connection.send({"type": "catch_up_truncated", "after_id": page.next_cursor})


QUERY_SIGNATURE = {"sig_input": "signature-input", "sig": "signature", "digest": "content-digest"}


def handshake_material(url: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The signed target URI and signature headers of a handshake.

    A browser cannot set headers on a WebSocket handshake, so it may send the three
    signature values as query parameters instead; they are then not part of the URI it
    signed, which is the URL as sent without them (the other parameters kept in order and
    in their own percent-encoding).
    """
    parts = urlsplit(url)
    pieces = parts.query.split("&") if parts.query else []
    carried: dict[str, str] = {}
    kept: list[str] = []
    for piece in pieces:
        name, _, value = piece.partition("=")
        field = QUERY_SIGNATURE.get(unquote(name))
        if field is None:
            kept.append(piece)
        else:
            carried[field] = unquote(value.replace("+", " "))
    if not carried or "signature" in {k.lower() for k in headers}:
        return url, headers
    return urlunsplit(parts._replace(query="&".join(kept))), {**headers, **carried}


async def _deny(
    websocket: WebSocket,
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> None:
    """Refuse the handshake with an HTTP answer the client can read (401, 429, 503)."""
    try:
        await websocket.send_denial_response(
            error_response(status, code, message, details, headers)
        )
    except RuntimeError:  # a server without the denial-response extension
        await websocket.close(code=4000 + status, reason=message[:120])


@router.websocket("/ws")
async def live(websocket: WebSocket) -> None:
    """The query (`last_id`) is read from the signed target URI itself, after the
    signature, with the contract's own model: a malformed one is a readable 422."""
    security: Security | None = websocket.app.state.security
    runtime: Runtime | None = websocket.app.state.runtime
    if security is None or runtime is None:
        await websocket.close(code=1013, reason="the gateway is starting")
        return
    address = websocket.client.host if websocket.client else None
    target, headers = handshake_material(
        signed_target(websocket.scope, websocket.url), dict(websocket.headers)
    )
    try:
        caller = await security.verify_signed("GET", target, headers, b"", address)
    except SignatureError as exc:
        await _deny(websocket, 401, "unauthenticated", exc.message, {"reason": exc.reason.value})
        return
    except ApiError as exc:
        await _deny(websocket, exc.status, exc.code, exc.message, exc.details, exc.headers)
        return
    catch_up: chat.CatchUpRequest | None = None
    if urlsplit(target).query:
        try:
            catch_up = signed_request(chat.CATCH_UP, caller)
        except RequestValidationError as exc:
            details = [
                {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                for e in exc.errors()
            ]
            await _deny(websocket, 422, "validation", "the handshake is not valid", details)
            return
    hub = state_of(runtime).hub
    if hub is None:  # only before the start-up hook ran
        await _deny(websocket, 503, "unavailable", "the live channel is starting; try again")
        return
    await websocket.accept()
    connection = Connection(
        websocket,
        caller.principal.account_id,
        (catch_up.last_id or 0) if catch_up else 0,
        caller.principal.role.value,
    )
    hub.add(connection)  # first (held back until caught up): nothing meanwhile is missed
    try:
        if catch_up is not None and catch_up.last_id is not None:
            await _catch_up(runtime, caller, connection, catch_up)
        if hub.log is not None:
            await connection.resume(hub.log, catch_up.after_event if catch_up else None)
        else:
            connection.pending = None  # no log to resume from: live pushes only
        await websocket.send_json(
            {
                "type": "ready",
                "account_id": caller.principal.account_id,
                "event_id": connection.last_event_id,
            }
        )
        while True:
            await websocket.receive_text()  # the client may ping; nothing else is expected
    except WebSocketDisconnect:
        pass
    except RpcError as exc:
        await websocket.close(code=1011, reason=exc.message[:120])
    except RedisError as exc:  # the live log is out of reach: the client tries again
        log.warning("live.resume_failed", error=str(exc))
        await websocket.close(code=1011, reason="live updates are unavailable")
    finally:
        hub.remove(connection)
