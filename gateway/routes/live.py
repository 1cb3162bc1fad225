"""`/api/v1/ws`: the live channel, opened by a signed handshake.

The client signs the handshake like any request (`GET ws://…/api/v1/ws?last_id=N`, RFC
9421 headers); a stale or replayed handshake is refused. With `last_id`, the messages the
client missed are sent first (in order, with their text: the handshake's signature is
fresh), then live notifications follow; none is sent twice on a connection.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from contracts import chat
from gateway.errors import ApiError, error_response
from gateway.live import Connection, Hub
from gateway.security import Caller, Security
from mesh.errors import RpcError
from mesh.httpsig import SignatureError
from mesh.logging import get_logger
from mesh.runtime import Runtime

router = APIRouter(tags=["live"])
log = get_logger("gateway.ws")
CATCH_UP_PAGE = 200


async def _catch_up(runtime: Runtime, caller: Caller, connection: Connection, after: int) -> None:
    while True:
        page = await runtime.rpc.call(
            chat.HISTORY,
            chat.HistoryRequest(after_id=after, limit=CATCH_UP_PAGE),
            principal=caller.principal,
            proof=caller.proof_json,
        )
        for message in page.messages:
            await connection.send({"type": "message", **message.model_dump(mode="json")})
        if page.next_cursor is None:
            return
        after = page.next_cursor


QUERY_SIGNATURE = {"sig_input": "signature-input", "sig": "signature", "digest": "content-digest"}


def handshake_material(url: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The signed target URI and signature headers of a handshake.

    A browser cannot set headers on a WebSocket handshake, so it may send the three
    signature values as query parameters instead; they are then not part of the URI it
    signed, which is the URL without them (the other parameters kept in order).
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    carried = {QUERY_SIGNATURE[k]: v for k, v in query if k in QUERY_SIGNATURE}
    if not carried or "signature" in {k.lower() for k in headers}:
        return url, headers
    kept = urlencode([(k, v) for k, v in query if k not in QUERY_SIGNATURE])
    return urlunsplit(parts._replace(query=kept)), {**headers, **carried}


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
async def live(websocket: WebSocket, last_id: int | None = Query(default=None, ge=0)) -> None:
    security: Security | None = websocket.app.state.security
    runtime: Runtime | None = websocket.app.state.runtime
    if security is None or runtime is None:
        await websocket.close(code=1013, reason="the gateway is starting")
        return
    address = websocket.client.host if websocket.client else None
    target, headers = handshake_material(str(websocket.url), dict(websocket.headers))
    try:
        caller = await security.verify_signed("GET", target, headers, b"", address)
    except SignatureError as exc:
        await _deny(websocket, 401, "unauthenticated", exc.message, {"reason": exc.reason.value})
        return
    except ApiError as exc:
        await _deny(websocket, exc.status, exc.code, exc.message, exc.details, exc.headers)
        return
    await websocket.accept()
    hub: Hub = runtime.state["hub"]
    connection = Connection(
        websocket, caller.principal.account_id, last_id or 0, caller.principal.role.value
    )
    hub.add(connection)  # first, so nothing committed during the catch-up is missed
    try:
        if last_id is not None:
            await _catch_up(runtime, caller, connection, last_id)
        await websocket.send_json({"type": "ready", "account_id": caller.principal.account_id})
        while True:
            await websocket.receive_text()  # the client may ping; nothing else is expected
    except WebSocketDisconnect:
        pass
    except RpcError as exc:
        await websocket.close(code=1011, reason=exc.message[:120])
    finally:
        hub.remove(connection)
