"""Per-call context: who acts, under which trace, until when.

A handler receives a `CallContext`; it is also stored in a contextvar, so any RPC call
or event the handler makes carries the same principal, trace and request proof onward
without passing them by hand.
"""

from __future__ import annotations

import contextvars
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from contracts.base import Principal

if TYPE_CHECKING:
    from mesh.db import Connection
    from mesh.proofs import Operation
    from mesh.runtime import Runtime

HEADER_METHOD = "x-method"
HEADER_DEADLINE = "x-deadline"
HEADER_PRINCIPAL = "x-principal"
HEADER_IDEMPOTENCY = "x-idempotency-key"
HEADER_PROOF = "x-request-proof"
HEADER_STATUS = "x-status"
HEADER_REQUEST_BYTES = "x-request-bytes"
"""When a signed HTTP body travels with a call: the length of the request JSON before it."""
HEADER_TRACEPARENT = "traceparent"


def new_traceparent(trace_id: str | None = None) -> str:
    """A W3C traceparent with a fresh span id (and a fresh trace id unless given)."""
    return f"00-{trace_id or secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a well-formed traceparent, else None."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    if len(parts) != 4 or len(parts[1]) != 32:
        return None
    return parts[1]


@dataclass
class CallContext:
    """What a handler knows about the call it serves."""

    method: str
    principal: Principal | None = None
    traceparent: str = field(default_factory=new_traceparent)
    deadline: float = field(default_factory=lambda: time.time() + 30)
    idempotency_key: str | None = None
    proof: str | None = None
    """The user's forwarded request-signature proof (JSON), verified by the runtime."""
    signed_body: bytes = b""
    """The signed HTTP request's body, as the user sent it (Content-Digest covers it)."""
    caller: str | None = None
    """The broker identity that sent this call (from the broker-validated `user_id`)."""
    operation: Operation | None = None
    """For a method served for a user: the signed operation, rebuilt from the proof."""
    runtime: Runtime | None = None
    transaction: Connection | None = None
    """For `write` methods of a service with a database: the open transaction's connection
    (set by `mesh.idempotency.run_idempotent` while the handler runs, else None)."""
    replies: dict[tuple[str, str, bytes], bytes] | None = None
    """While a write may run again (a transaction retried after a conflict): the replies
    of calls it made with the user's proof, by queue, method and body. The keyvault
    serves a proof once per method, so a second attempt gets the first one's reply
    instead (a repeat within one attempt would have been refused there anyway)."""

    @property
    def tx(self) -> Connection:
        """The open transaction's connection of a `write` method; raises outside one (a
        read, or a write's context after its handler returned): test `transaction` to
        see whether there is one."""
        conn = self.transaction
        if conn is None:
            raise RuntimeError(
                f"{self.method} has no open transaction: ctx.tx is only set while the "
                "handler of a write method (write=True) of a service with a database runs"
            )
        return conn

    @property
    def trace_id(self) -> str:
        return trace_id_of(self.traceparent) or ""

    def remaining(self) -> float:
        return self.deadline - time.time()


def runtime_of(ctx: CallContext, *, database: bool = True) -> Runtime:
    """The runtime serving `ctx`: the RPC server sets it on every call it serves, so a
    service's handler never sees None. With `database` (the default) it must also have
    its database (a service's handlers); without, any runtime will do (mesh helpers that
    serve processes without one too)."""
    runtime = ctx.runtime
    if database and (runtime is None or runtime.db is None):
        raise RuntimeError(f"{ctx.method} is not served by a service with a database")
    if runtime is None:
        raise RuntimeError(f"{ctx.method} is not served by a runtime")
    return runtime


current_call: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "medihaven_current_call", default=None
)
