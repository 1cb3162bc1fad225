"""RPC over RabbitMQ: a thin layer on aio-pika, written once for every service.

Client: one channel per connection, replies over direct reply-to, a map of futures keyed
by correlation id, a per-call deadline that is also the message expiration, and
`mandatory` publishing, so a call to a service with no queue fails at once.

Server: one request queue per service (replicas compete on it), a bounded prefetch,
pydantic validation both ways, typed error replies, deadline checks before any work,
idempotent writes (see `mesh.idempotency`) and a graceful stop that finishes in-flight work.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aio_pika.exceptions import PublishError
from pydantic import BaseModel, ValidationError

from contracts.base import (
    DEAD_LETTER_EXCHANGE,
    Principal,
    RpcMethod,
    broadcast_exchange,
    dead_letter_queue,
    instance_queue,
    rpc_queue,
)
from contracts.common import PingReply, PingRequest, ping
from contracts.errors import ErrorCode, ErrorReply
from mesh import metrics
from mesh.context import (
    HEADER_DEADLINE,
    HEADER_IDEMPOTENCY,
    HEADER_METHOD,
    HEADER_PRINCIPAL,
    HEADER_PROOF,
    HEADER_STATUS,
    HEADER_TRACEPARENT,
    CallContext,
    current_call,
    new_traceparent,
)
from mesh.db import DATABASE_UNAVAILABLE
from mesh.errors import (
    BadRequest,
    Forbidden,
    InternalError,
    InvalidRequest,
    NoRoute,
    NotFound,
    RpcError,
    RpcTimeout,
    Unavailable,
    error_from_reply,
)
from mesh.idempotency import run_idempotent
from mesh.logging import get_logger

if TYPE_CHECKING:
    from mesh.runtime import Runtime

log = get_logger("mesh.rpc")

ReqT = TypeVar("ReqT", bound=BaseModel)
RespT = TypeVar("RespT", bound=BaseModel)

REPLY_TO = "amq.rabbitmq.reply-to"
BUS_UNAVAILABLE: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,
    aio_pika.exceptions.AMQPException,
    aiormq.exceptions.ChannelInvalidStateError,  # a RuntimeError: "channel closed"
    ConnectionError,
)
JSON = "application/json"


# ---------------------------------------------------------------------------- client


class RpcClient:
    """Calls methods of other services. One instance per connection; safe for many tasks."""

    def __init__(self, connection: AbstractConnection, default_deadline_s: float) -> None:
        self._connection = connection
        self._default_deadline = default_deadline_s
        self._channel: AbstractChannel | None = None
        self._pending: dict[str, asyncio.Future[AbstractIncomingMessage]] = {}
        self._gathering: dict[str, list[AbstractIncomingMessage]] = {}
        self._prefix = secrets.token_hex(4) + "."
        self._ids = itertools.count()

    async def start(self) -> None:
        # Publisher confirms are what make a `mandatory` return visible to the publisher
        # (aiormq ties a return to its confirmation). The confirm arrives while the
        # request is already on its way, so awaiting it first costs little latency.
        await self._open()
        reconnects = getattr(self._connection, "reconnect_callbacks", None)
        if reconnects is not None:
            reconnects.add(self._on_reconnect)

    async def _open(self) -> None:
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = await channel.get_queue(REPLY_TO, ensure=False)
        await queue.consume(self._on_reply, no_ack=True)
        self._channel = channel

    async def _on_reconnect(self, *_: Any) -> None:
        """After the broker came back: a fresh channel with a fresh reply-to consumer.

        (A restored channel does not get its direct reply-to consumer back, and publishing
        with reply-to on a channel without one is refused by the broker.) Calls in flight
        on the old connection can never be answered: they fail now as `unavailable`.
        """
        old, self._channel = self._channel, None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(Unavailable("the message bus reconnected; try again"))
        self._pending.clear()
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()
        try:
            await self._open()
        except Exception as exc:
            log.warning("rpc.client_reopen_failed", error=str(exc))

    async def close(self) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(Unavailable("the RPC client is closing"))
        self._pending.clear()
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        correlation_id = message.correlation_id or ""
        fut = self._pending.pop(correlation_id, None)
        if fut is not None and not fut.done():
            fut.set_result(message)
        elif correlation_id in self._gathering:
            self._gathering[correlation_id].append(message)
        # A reply nobody waits for any more (the caller timed out) is dropped here.

    async def call(
        self,
        method: RpcMethod[ReqT, RespT],
        request: ReqT,
        *,
        principal: Principal | None = None,
        idempotency_key: str | None = None,
        proof: str | None = None,
        timeout: float | None = None,
        instance: str | None = None,
    ) -> RespT:
        """Call `method` and return its typed reply, or raise the typed error it replied.

        Principal, trace and request proof default to those of the call being served
        (if any), so they follow a request through the mesh. `instance` addresses one
        replica (see `RpcServer.instance`) instead of any.
        """
        raw = await self.call_json(
            method,
            request,
            principal=principal,
            idempotency_key=idempotency_key,
            proof=proof,
            timeout=timeout,
            instance=instance,
        )
        return method.response.model_validate_json(raw)

    async def call_json(
        self,
        method: RpcMethod[ReqT, RespT],
        request: ReqT,
        *,
        principal: Principal | None = None,
        idempotency_key: str | None = None,
        proof: str | None = None,
        timeout: float | None = None,
        instance: str | None = None,
    ) -> bytes:
        """As `call`, but the reply stays the JSON the service wrote (`method.response`
        serialised), for a caller that only hands it on (the gateway relaying a reply)."""
        return await self.call_raw(
            instance_queue(method.service, instance) if instance else method.queue,
            method.name,
            request.model_dump_json().encode(),
            principal=principal,
            idempotency_key=idempotency_key,
            proof=proof,
            timeout=timeout,
        )

    def _envelope(
        self,
        method_name: str,
        body: bytes,
        principal: Principal | None,
        idempotency_key: str | None,
        proof: str | None,
        timeout: float | None,
    ) -> tuple[aio_pika.Message, float]:
        """The request message (headers from the call being served) and its timeout."""
        parent = current_call.get()
        timeout = timeout if timeout is not None else self._default_deadline
        deadline = time.time() + timeout
        if parent is not None:
            deadline = min(deadline, parent.deadline)
            timeout = max(deadline - time.time(), 0.001)
            principal = principal or parent.principal
            proof = proof or parent.proof
            traceparent = new_traceparent(parent.trace_id or None)
        else:
            traceparent = new_traceparent()
        headers: dict[str, Any] = {
            HEADER_METHOD: method_name,
            HEADER_DEADLINE: repr(deadline),
            HEADER_TRACEPARENT: traceparent,
        }
        if principal is not None:
            headers[HEADER_PRINCIPAL] = principal.model_dump_json()
        if idempotency_key is not None:
            headers[HEADER_IDEMPOTENCY] = idempotency_key
        if proof is not None:
            headers[HEADER_PROOF] = proof
        correlation_id = self._prefix + str(next(self._ids))
        message = aio_pika.Message(
            body,
            content_type=JSON,
            headers=headers,
            correlation_id=correlation_id,
            message_id=correlation_id,  # aiormq matches a returned message by its id
            reply_to=REPLY_TO,
            expiration=max(timeout, 0.001),
        )
        return message, timeout

    async def call_raw(
        self,
        queue: str,
        method_name: str,
        body: bytes,
        *,
        principal: Principal | None = None,
        idempotency_key: str | None = None,
        proof: str | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """Send already-serialised `body`; returns the raw reply body (status ok)."""
        if self._channel is None:
            raise Unavailable("the RPC client is not started")
        message, timeout = self._envelope(
            method_name, body, principal, idempotency_key, proof, timeout
        )
        correlation_id = message.correlation_id or ""
        fut: asyncio.Future[AbstractIncomingMessage] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = fut
        try:
            try:
                await self._channel.default_exchange.publish(message, queue, mandatory=True)
            except PublishError:
                raise NoRoute(
                    f"no service is listening on {queue!r}", details={"queue": queue}
                ) from None
            except BUS_UNAVAILABLE as exc:
                # The broker is restarting or unreachable: the robust connection reconnects
                # by itself; until then callers get a clean, retryable refusal.
                raise Unavailable(
                    f"the message bus is unavailable ({type(exc).__name__})"
                ) from None
            reply = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise RpcTimeout(
                f"{method_name} did not answer within {timeout:.3g} s",
                details={"method": method_name},
            ) from None
        finally:
            self._pending.pop(correlation_id, None)
        return _reply_body(reply)

    async def gather(
        self,
        method: RpcMethod[ReqT, RespT],
        request: ReqT,
        *,
        window_s: float = 0.5,
        principal: Principal | None = None,
    ) -> list[RespT | RpcError]:
        """Ask every replica of a service (not just one) and collect what arrives in time.

        Used where each replica has its own state, e.g. each keyvault replica is sealed
        or unsealed on its own. Each item is a reply or the error that replica answered.
        """
        if self._channel is None:
            raise Unavailable("the RPC client is not started")
        message, _ = self._envelope(
            method.name, request.model_dump_json().encode(), principal, None, None, window_s
        )
        correlation_id = message.correlation_id or ""
        replies: list[AbstractIncomingMessage] = []
        self._gathering[correlation_id] = replies
        try:
            # Declared (idempotently), not assumed: publishing to a missing exchange
            # would close the channel that every call of this client shares.
            exchange = await self._channel.declare_exchange(
                broadcast_exchange(method.service), "fanout", durable=True
            )
            try:
                await exchange.publish(message, "", mandatory=True)
            except PublishError:
                return []
            await asyncio.sleep(window_s)
        finally:
            self._gathering.pop(correlation_id, None)
        results: list[RespT | RpcError] = []
        for reply in replies:
            try:
                results.append(method.response.model_validate_json(_reply_body(reply)))
            except RpcError as exc:
                results.append(exc)
        return results


def _reply_body(reply: AbstractIncomingMessage) -> bytes:
    """The body of an ok reply; raises the typed error of an error reply."""
    status = (reply.headers or {}).get(HEADER_STATUS)
    if status == "ok":
        return reply.body
    raise error_from_reply(ErrorReply.model_validate_json(reply.body))


# ---------------------------------------------------------------------------- server

Handler = Callable[[Any, CallContext], Awaitable[BaseModel]]


@dataclass(frozen=True)
class _Route(Generic[ReqT, RespT]):
    method: RpcMethod[ReqT, RespT]
    handler: Callable[[ReqT, CallContext], Awaitable[RespT]]


class RpcRouter:
    """The handlers of one service, keyed by the method names of `contracts/`."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.routes: dict[str, _Route[Any, Any]] = {}

    def handler(
        self, method: RpcMethod[ReqT, RespT]
    ) -> Callable[
        [Callable[[ReqT, CallContext], Awaitable[RespT]]],
        Callable[[ReqT, CallContext], Awaitable[RespT]],
    ]:
        """Decorator registering the handler of `method`."""
        if method.service != self.service:
            raise ValueError(f"{method.name} belongs to {method.service}, not {self.service}")

        def register(
            fn: Callable[[ReqT, CallContext], Awaitable[RespT]],
        ) -> Callable[[ReqT, CallContext], Awaitable[RespT]]:
            if method.name in self.routes:
                raise ValueError(f"{method.name} has two handlers")
            self.routes[method.name] = _Route(method, fn)
            return fn

        return register


def _validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]


def _principal_from(headers: dict[str, Any]) -> Principal | None:
    raw = headers.get(HEADER_PRINCIPAL)
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode()
    return Principal.model_validate_json(raw)


def _str_header(headers: dict[str, Any], name: str) -> str | None:
    value = headers.get(name)
    if isinstance(value, bytes):
        return value.decode()
    return value if isinstance(value, str) else None


class RpcServer:
    """Consumes one service's request queue and answers with its router's handlers."""

    def __init__(self, runtime: Runtime, router: RpcRouter, prefetch: int) -> None:
        self.runtime = runtime
        self.router = router
        self.prefetch = prefetch
        self.instance = runtime.instance
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._dlx: AbstractExchange | None = None
        self._consumer_tag: str | None = None
        self._own_queue: AbstractQueue | None = None
        self._own_tag: str | None = None
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._add_ping()

    def _add_ping(self) -> None:
        method = ping(self.router.service)
        if method.name in self.router.routes:
            return
        instance = self.instance

        async def answer_ping(_: PingRequest, __: CallContext) -> PingReply:
            return PingReply(service=method.service, instance=instance, version="1")

        self.router.routes[method.name] = _Route(method, answer_ping)

    async def start(self) -> None:
        channel = await self.runtime.connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=self.prefetch)
        queue_name = rpc_queue(self.router.service)
        dlx = await channel.declare_exchange(DEAD_LETTER_EXCHANGE, "topic", durable=True)
        dlq = await channel.declare_queue(dead_letter_queue(queue_name), durable=True)
        await dlq.bind(dlx, routing_key=dead_letter_queue(queue_name))
        # auto_delete: once the last replica stops consuming, the queue goes away, so a
        # caller's `mandatory` publish is returned at once instead of waiting for a deadline.
        # (No queue-level dead-lettering: requests that expire in the queue are the
        # caller's business, not poison; `_dead_letter` sends only unparseable ones.)
        self._queue = await channel.declare_queue(queue_name, durable=False, auto_delete=True)
        self._channel, self._dlx = channel, dlx
        self._consumer_tag = await self._queue.consume(self._on_request)
        # This replica's own queue: for calls addressed to it, and for broadcasts
        # (`RpcClient.gather`) that every replica answers.
        broadcast = await channel.declare_exchange(
            broadcast_exchange(self.router.service), "fanout", durable=True
        )
        self._own_queue = await channel.declare_queue(
            instance_queue(self.router.service, self.instance), exclusive=True, auto_delete=True
        )
        await self._own_queue.bind(broadcast)
        self._own_tag = await self._own_queue.consume(self._on_request)
        log.info("rpc.serving", queue=queue_name, prefetch=self.prefetch, instance=self.instance)

    async def stop(self, grace_s: float) -> None:
        """Stop taking requests, finish the ones in flight (up to `grace_s`), then close."""
        for queue, tag in ((self._queue, self._consumer_tag), (self._own_queue, self._own_tag)):
            if queue is not None and tag is not None:
                try:
                    await queue.cancel(tag)
                except Exception as exc:  # the channel may already be gone
                    log.warning("rpc.cancel_failed", error=str(exc))
        self._consumer_tag = self._own_tag = None
        if self._in_flight:
            try:
                await asyncio.wait_for(self._idle.wait(), grace_s)
            except TimeoutError:
                log.warning("rpc.stop_grace_exceeded", in_flight=len(self._in_flight))
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def _on_request(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
            self._idle.clear()
        try:
            await self._handle(message)
        finally:
            if task is not None:
                self._in_flight.discard(task)
                if not self._in_flight:
                    self._idle.set()

    async def _reply(self, message: AbstractIncomingMessage, body: bytes, status: str) -> None:
        if not message.reply_to or self._channel is None:
            return
        await self._channel.default_exchange.publish(
            aio_pika.Message(
                body,
                content_type=JSON,
                correlation_id=message.correlation_id,
                headers={HEADER_STATUS: status},
            ),
            message.reply_to,
            mandatory=False,
        )

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        """Keep an unparseable request for inspection in `<queue>.dlq`, then drop it."""
        if self._dlx is not None:
            queue_name = rpc_queue(self.router.service)
            await self._dlx.publish(
                aio_pika.Message(
                    message.body,
                    headers={**(message.headers or {}), "x-dead-letter-reason": reason},
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                dead_letter_queue(queue_name),
                mandatory=False,
            )
        await message.ack()

    async def _reply_error(self, message: AbstractIncomingMessage, error: RpcError) -> None:
        await self._reply(message, error.to_reply().model_dump_json().encode(), "error")

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        headers = dict(message.headers or {})
        method_name = _str_header(headers, HEADER_METHOD) or "?"
        try:
            deadline = float(_str_header(headers, HEADER_DEADLINE) or "inf")
        except ValueError:
            deadline = float("inf")
        if time.time() >= deadline:
            # The caller has given up: never start work it no longer waits for.
            metrics.RPC_SERVED.labels(self.router.service, method_name, "expired").inc()
            await message.ack()
            return
        route = self.router.routes.get(method_name)
        outcome = "ok"
        try:
            if route is None:
                raise NotFound(f"unknown method {method_name!r}", details={"method": method_name})
            ctx = CallContext(
                method=method_name,
                principal=_principal_from(headers),
                traceparent=_str_header(headers, HEADER_TRACEPARENT) or new_traceparent(),
                deadline=deadline,
                idempotency_key=_str_header(headers, HEADER_IDEMPOTENCY),
                proof=_str_header(headers, HEADER_PROOF),
                runtime=self.runtime,
            )
            body = await self._dispatch(route, message.body, ctx)
            await self._reply(message, body, "ok")
        except RpcError as exc:
            outcome = exc.code.value
            await self._reply_error(message, exc)
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                # Not even JSON: keep it for inspection in the dead-letter queue.
                metrics.RPC_SERVED.labels(self.router.service, method_name, "dead_lettered").inc()
                await self._reply_error(message, BadRequest("request body is not JSON"))
                await self._dead_letter(message, "request body is not JSON")
                return
            outcome = ErrorCode.validation.value
            await self._reply_error(
                message, InvalidRequest("request is not valid", details=_validation_details(exc))
            )
        except DATABASE_UNAVAILABLE as exc:
            # A database restart or failover: a clean, retryable refusal, never a 500.
            outcome = ErrorCode.unavailable.value
            log.warning("rpc.database_unavailable", method=method_name, error=str(exc))
            await self._reply_error(
                message, Unavailable("the database is unavailable; try again shortly")
            )
        except Exception:
            outcome = ErrorCode.internal.value
            log.exception("rpc.handler_failed", method=method_name)
            await self._reply_error(message, InternalError("internal error"))
        await message.ack()
        metrics.RPC_SERVED.labels(self.router.service, method_name, outcome).inc()
        metrics.RPC_SECONDS.labels(self.router.service, method_name).observe(
            time.perf_counter() - started
        )

    async def _dispatch(self, route: _Route[Any, Any], body: bytes, ctx: CallContext) -> bytes:
        method = route.method
        if method.roles is not None and (
            ctx.principal is None or ctx.principal.role not in method.roles
        ):
            raise Forbidden(
                f"{method.name} is not allowed for this role",
                details={"role": ctx.principal.role if ctx.principal else None},
            )
        # One pass in pydantic-core: parsing and validating together (no json.loads).
        request = method.request.model_validate_json(body)
        current_call.set(ctx)  # this task serves only this request
        structlog.contextvars.bind_contextvars(
            method=method.name,
            trace_id=ctx.trace_id,
            principal=ctx.principal.account_id if ctx.principal else None,
        )
        # A handler that overruns the deadline is not cancelled (a half-done write helps
        # no one); its late reply is dropped by the caller. Calls it makes onward carry
        # the same deadline, so the overrun stays bounded.
        if method.write:
            return await run_idempotent(route.handler, request, ctx, keep_reply=method.keep_reply)
        result = await route.handler(request, ctx)
        return cast(BaseModel, result).model_dump_json().encode()
