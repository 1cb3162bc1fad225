"""Idempotent RPC writes: a redelivered or retried request runs once.

The key is claimed by inserting it in the same transaction as the handler's writes.
A second delivery with the same key blocks on that row until the first commits, then
finds the stored reply and returns it; if the first rolled back (crash, error), the key
is free again and the write runs. A key reused for a different request is refused.

A write made for a user is also claimed by its signature (key id and nonce, unique):
the same signed request sent again under another idempotency key is a replay, refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from mesh import db
from mesh.context import CallContext
from mesh.db import Sql
from mesh.errors import BadRequest, Conflict, InternalError, Unauthenticated

MAX_KEY_LENGTH = 191


def _request_hash(method: str, request: BaseModel) -> bytes:
    return hashlib.sha256(method.encode() + b"\0" + request.model_dump_json().encode()).digest()


NOT_KEPT = b""
"""Stored instead of a reply that must not rest in the database in clear."""


async def run_idempotent(
    handler: Callable[[Any, CallContext], Awaitable[BaseModel]],
    request: BaseModel,
    ctx: CallContext,
    *,
    keep_reply: bool = True,
) -> bytes:
    """Run a write handler at most once per idempotency key; returns the reply body."""
    key = ctx.idempotency_key
    if not key or len(key) > MAX_KEY_LENGTH:
        raise BadRequest(
            f"{ctx.method} is a write: it needs an idempotency key of 1 to "
            f"{MAX_KEY_LENGTH} characters"
        )
    if ctx.runtime is None or ctx.runtime.db is None:
        raise InternalError(f"{ctx.method} is a write but its service has no database")
    database = ctx.runtime.db
    request_hash = _request_hash(ctx.method, request)
    proof = ctx.operation.once_key[:MAX_KEY_LENGTH] if ctx.operation is not None else None
    body: bytes | None = None
    # The whole write is the unit a deadlock or certification conflict runs again: the
    # key's claim, the handler (its reads too) and the stored reply.
    ctx.replies = {}
    try:
        async for attempt in database.transactions():
            async with attempt as conn:
                body = None
                try:
                    await db.execute(
                        conn,
                        "INSERT INTO mesh_idempotency (idem_key, method, request_hash, proof) "
                        "VALUES (%s, %s, %s, %s)",
                        (key, ctx.method, request_hash, proof),
                    )
                except Exception as exc:
                    if not db.is_duplicate_key(exc):
                        raise
                    if proof is not None and await _proof_used_elsewhere(conn, proof, key):
                        raise Unauthenticated(
                            "request signature refused: this signed request was already used"
                        ) from None
                else:
                    ctx.transaction = conn
                    try:
                        result = await handler(request, ctx)
                    finally:
                        ctx.transaction = None
                    body = result.model_dump_json().encode()
                    await db.execute(
                        conn,
                        "UPDATE mesh_idempotency SET response = %s WHERE idem_key = %s",
                        (body if keep_reply else NOT_KEPT, key),
                    )
    finally:
        ctx.replies = None
    if body is not None:
        ctx.runtime.written()  # committed: let the outbox relay publish its events now
        return body
    # The key was taken: this is a repeat of a committed write.
    row = await database.fetchone(
        "SELECT method, request_hash, response FROM mesh_idempotency WHERE idem_key = %s",
        (key,),
    )
    if row is None or row[2] is None:
        raise Conflict("a request with this idempotency key is still in progress")
    if row[0] != ctx.method or bytes(row[1]) != request_hash:
        raise Conflict("this idempotency key was already used for a different request")
    if bytes(row[2]) == NOT_KEPT:
        raise Conflict(
            "this request was already carried out; its reply is not kept (it held a secret "
            "or patient data)"
        )
    return bytes(row[2])


async def _proof_used_elsewhere(conn: Sql, proof: str, key: str) -> bool:
    """The duplicate was the signature, under another key (a replay, not a redelivery)."""
    row = await db.fetchone(
        conn, "SELECT idem_key FROM mesh_idempotency WHERE proof = %s", (proof,)
    )
    return row is not None and row[0] != key
