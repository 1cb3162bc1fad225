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
import hashlib
import itertools
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypedDict, TypeVar, Unpack, cast

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

from contracts.audit import AuditType
from contracts.base import (
    DEAD_LETTER_EXCHANGE,
    Principal,
    RpcMethod,
    broadcast_exchange,
    dead_letter_queue,
    instance_queue,
    rpc_queue,
)
from contracts.common import PingReply, PingRequest, ping, served_by
from contracts.errors import ErrorCode, ErrorReply
from mesh import metrics, watchdog
from mesh.amqp import BUS_UNAVAILABLE, confirmed
from mesh.context import (
    HEADER_DEADLINE,
    HEADER_IDEMPOTENCY,
    HEADER_METHOD,
    HEADER_PRINCIPAL,
    HEADER_PROOF,
    HEADER_REQUEST_BYTES,
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
    Unauthenticated,
    Unavailable,
    error_from_reply,
)
from mesh.httpsig import RequestProof, SignatureError, parse_proof
from mesh.idempotency import run_idempotent
from mesh.logging import get_logger
from mesh.proofs import Operation, authorise, verify_operation

if TYPE_CHECKING:
    from mesh.runtime import Runtime

log = get_logger("mesh.rpc")

ReqT = TypeVar("ReqT", bound=BaseModel)
RespT = TypeVar("RespT", bound=BaseModel)

REPLY_TO = "amq.rabbitmq.reply-to"
QUORUM = {"x-queue-type": "quorum"}
JSON = "application/json"
CLOSE_TIMEOUT_S = 5.0
"""How long closing a channel the server no longer needs may take (a broker that does
not answer must not hold a renewal or a stop)."""


class CallOptions(TypedDict, total=False):
    """What a caller may say about one call besides the method and its request."""

    principal: Principal | None
    idempotency_key: str | None
    proof: str | None
    signed_body: bytes | None
    timeout: float | None
    instance: str | None


# ---------------------------------------------------------------------------- client


class RpcClient:
    """Calls methods of other services. One instance per connection; safe for many tasks."""

    def __init__(
        self,
        connection: AbstractConnection,
        default_deadline_s: float,
        *,
        user_id: str | None = None,
        user_of: Callable[[str], str] | None = None,
    ) -> None:
        """`user_id`: this process's broker user, set on every request (the broker checks
        it). `user_of(identity)`: the broker user a reply must come from; a reply from
        anyone else is dropped (someone answering in a service's name)."""
        self._connection = connection
        self._default_deadline = default_deadline_s
        self._user_id = user_id
        self._user_of = user_of
        self._channel: AbstractChannel | None = None
        self._pending: dict[str, asyncio.Future[AbstractIncomingMessage]] = {}
        self._gathering: dict[str, list[AbstractIncomingMessage]] = {}
        self._expected: dict[str, str] = {}
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
        expected = self._expected.get(correlation_id)
        if expected is not None and message.user_id != expected:
            log.warning("rpc.reply_refused", user_id=message.user_id, expected=expected)
            return
        fut = self._pending.pop(correlation_id, None)
        if fut is not None and not fut.done():
            fut.set_result(message)
        elif correlation_id in self._gathering:
            self._gathering[correlation_id].append(message)
        # A reply nobody waits for any more (the caller timed out) is dropped here.

    async def call(
        self, method: RpcMethod[ReqT, RespT], request: ReqT, **options: Unpack[CallOptions]
    ) -> RespT:
        """Call `method` and return its typed reply, or raise the typed error it replied.

        Principal, trace and (for a method served for a user) the user's proof and signed
        body default to those of the call being served (if any), so they follow a request
        through the mesh; a method that is not served for a user never receives them.
        `instance` addresses one replica (see `RpcServer.instance`) instead of any.
        """
        raw = await self.call_json(method, request, **options)
        return method.response.model_validate_json(raw)

    async def call_json(
        self, method: RpcMethod[ReqT, RespT], request: ReqT, **options: Unpack[CallOptions]
    ) -> bytes:
        """As `call`, but the reply stays the JSON the service wrote (`method.response`
        serialised), for a caller that only hands it on (the gateway relaying a reply)."""
        instance = options.get("instance")
        return await self.call_raw(
            instance_queue(method.service, instance) if instance else method.queue,
            method.name,
            request.model_dump_json().encode(),
            principal=options.get("principal"),
            idempotency_key=options.get("idempotency_key"),
            proof=options.get("proof"),
            signed_body=options.get("signed_body"),
            timeout=options.get("timeout"),
            for_user=method.for_user,
        )

    def _envelope(
        self,
        method_name: str,
        body: bytes,
        principal: Principal | None,
        idempotency_key: str | None,
        proof: str | None,
        signed_body: bytes | None,
        timeout: float | None,
        for_user: bool,
    ) -> tuple[aio_pika.Message, float]:
        """The request message (headers from the call being served) and its timeout."""
        parent = current_call.get()
        timeout = timeout if timeout is not None else self._default_deadline
        deadline = time.time() + timeout
        if parent is not None:
            deadline = min(deadline, parent.deadline)
            timeout = max(deadline - time.time(), 0.001)
            principal = principal or parent.principal
            if for_user and proof is None:
                proof, signed_body = parent.proof, parent.signed_body
            traceparent = new_traceparent(parent.trace_id or None)
        else:
            traceparent = new_traceparent()
        if not for_user:
            proof = signed_body = None
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
            if signed_body:
                # The signed HTTP body follows the request JSON in the same message body.
                headers[HEADER_REQUEST_BYTES] = len(body)
                body = body + signed_body
        correlation_id = self._prefix + str(next(self._ids))
        message = aio_pika.Message(
            body,
            content_type=JSON,
            headers=headers,
            correlation_id=correlation_id,
            message_id=correlation_id,  # aiormq matches a returned message by its id
            reply_to=REPLY_TO,
            expiration=max(timeout, 0.001),
            user_id=self._user_id,
        )
        return message, timeout

    def _expect_reply_from(self, correlation_id: str, method_name: str) -> None:
        if self._user_of is not None:
            self._expected[correlation_id] = self._user_of(served_by(method_name.split(".")[0]))

    async def call_raw(
        self,
        queue: str,
        method_name: str,
        body: bytes,
        *,
        principal: Principal | None = None,
        idempotency_key: str | None = None,
        proof: str | None = None,
        signed_body: bytes | None = None,
        timeout: float | None = None,
        for_user: bool = True,
    ) -> bytes:
        """Send already-serialised `body`; returns the raw reply body (status ok)."""
        if self._channel is None:
            raise Unavailable("the RPC client is not started")
        message, timeout = self._envelope(
            method_name, body, principal, idempotency_key, proof, signed_body, timeout, for_user
        )
        parent = current_call.get()
        memo = parent.replies if parent is not None and HEADER_PROOF in message.headers else None
        memo_key = (queue, method_name, hashlib.sha256(message.body).digest())
        if memo is not None and memo_key in memo:
            return memo[memo_key]  # a retried write asking what its first attempt asked
        correlation_id = message.correlation_id or ""
        fut: asyncio.Future[AbstractIncomingMessage] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = fut
        self._expect_reply_from(correlation_id, method_name)
        try:
            # The deadline bounds the publish too: its confirm (needed for `mandatory`)
            # never comes from a node gone silent (a partition), and the connection is
            # declared dead only after the heartbeat's grace (`mesh.amqp.HEARTBEAT_S`).
            async with asyncio.timeout(timeout):
                try:
                    await confirmed(
                        self._channel.default_exchange.publish(message, queue, mandatory=True)
                    )
                except PublishError:
                    raise NoRoute(
                        f"no service is listening on {queue!r}", details={"queue": queue}
                    ) from None
                except BUS_UNAVAILABLE as exc:
                    # The broker is restarting or unreachable: the robust connection
                    # reconnects by itself; until then callers get a clean, retryable refusal.
                    raise Unavailable(
                        f"the message bus is unavailable ({type(exc).__name__})"
                    ) from None
                reply = await fut
        except TimeoutError:
            raise RpcTimeout(
                f"{method_name} did not answer within {timeout:.3g} s",
                details={"method": method_name},
            ) from None
        finally:
            self._pending.pop(correlation_id, None)
            self._expected.pop(correlation_id, None)
        result = _reply_body(reply)
        if memo is not None:
            memo[memo_key] = result
        return result

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
            method.name,
            request.model_dump_json().encode(),
            principal,
            None,
            None,
            None,
            window_s,
            method.for_user,
        )
        correlation_id = message.correlation_id or ""
        replies: list[AbstractIncomingMessage] = []
        self._gathering[correlation_id] = replies
        self._expect_reply_from(correlation_id, method.name)
        try:
            # Checked, not assumed: publishing to a missing exchange would close the
            # channel that every call of this client shares. Checked passively, on a
            # channel of its own: a caller may publish to a service's broadcast exchange
            # but not declare it (broker permissions), and a missing one closes the
            # channel it was looked up on.
            if not await self._exchange_exists(broadcast_exchange(method.service)):
                return []
            exchange = await self._channel.get_exchange(
                broadcast_exchange(method.service), ensure=False
            )
            try:
                await confirmed(exchange.publish(message, "", mandatory=True))
            except PublishError:
                return []
            await asyncio.sleep(window_s)
        finally:
            self._gathering.pop(correlation_id, None)
            self._expected.pop(correlation_id, None)
        results: list[RespT | RpcError] = []
        for reply in replies:
            try:
                results.append(method.response.model_validate_json(_reply_body(reply)))
            except RpcError as exc:
                results.append(exc)
        return results

    async def _exchange_exists(self, name: str) -> bool:
        """A passive declare (no configure permission needed) on a throwaway channel."""
        channel = await self._connection.channel(publisher_confirms=False)
        try:
            await channel.get_exchange(name, ensure=True)
            return True
        except (aio_pika.exceptions.ChannelClosed, aiormq.exceptions.ChannelNotFoundEntity):
            return False
        finally:
            if not channel.is_closed:
                with contextlib.suppress(Exception):
                    await channel.close()


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
        self.startup: list[Callable[[Any], Awaitable[None]]] = []
        """Hooks the runtime runs (with itself) once the service's own startup is done,
        e.g. to spawn a background job the router's handlers belong to (`mesh.rewrap`)."""

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


def _split_body(body: bytes, headers: dict[str, Any]) -> tuple[bytes, bytes]:
    """(request JSON, signed HTTP body) of a message (see `RpcClient._envelope`)."""
    length = headers.get(HEADER_REQUEST_BYTES)
    if isinstance(length, int) and 0 <= length <= len(body):
        return body[:length], body[length:]
    return body, b""


async def _audit_refusal(runtime: Runtime, type: AuditType, ctx: CallContext, detail: str) -> None:
    """Audit a refused call (best effort: the refusal itself is the safe outcome)."""
    from mesh import audit  # mesh.audit needs the runtime, which needs this module

    source = runtime.identity or runtime.name
    await audit.record_refusal(runtime, source, type, f"{ctx.method}: {detail}")


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
        self._user_id = runtime.broker_user
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._dlx: AbstractExchange | None = None
        self._consumer_tag: str | None = None
        self._own_queue: AbstractQueue | None = None
        self._own_tag: str | None = None
        self._watch: asyncio.Task[None] | None = None
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
        queue_name = rpc_queue(self.router.service)
        await self._declare_dead_letters(dead_letter_queue(queue_name))
        await self._consume()
        self._watch = asyncio.create_task(
            watchdog.keep_consuming(
                queue_name,
                connected=self._connected,
                consuming=self._consuming,
                renew=self._renew,
                interval_s=self.runtime.settings.rpc_watch_s,
            ),
            name=f"watch {queue_name}",
        )
        log.info("rpc.serving", queue=queue_name, prefetch=self.prefetch, instance=self.instance)

    async def _consume(self, channel: AbstractChannel | None = None) -> None:
        """A channel of its own (`channel`, if already opened), with a consumer on the
        service's request queue and one on this replica's own queue (declared where
        missing)."""
        if channel is None:
            channel = await self.runtime.connection.channel(publisher_confirms=False)
        try:
            await channel.set_qos(prefetch_count=self.prefetch)
            dlx = await channel.declare_exchange(DEAD_LETTER_EXCHANGE, "topic", durable=True)
            # Replies and dead letters go out on the newest channel (`_reply`), also for
            # requests taken on an older one that is being renewed.
            self._channel, self._dlx = channel, dlx
            # auto_delete: once the last replica stops consuming, the queue goes away, so
            # a caller's `mandatory` publish is returned at once instead of waiting for a
            # deadline. (No queue-level dead-lettering: requests that expire in the queue
            # are the caller's business, not poison; `_dead_letter` sends only
            # unparseable ones.) Transient on purpose, not a quorum queue, also in a
            # cluster: a request is worth only its deadline, and its reply-to dies with
            # the caller's connection anyway. If its node is lost, the consumers on the
            # other nodes are cancelled and aio-pika declares it again on theirs (and, if
            # that ever fails, the watchdog does); the requests it held time out
            # (docs/clustering.md).
            self._queue = await channel.declare_queue(
                rpc_queue(self.router.service), durable=False, auto_delete=True
            )
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
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), CLOSE_TIMEOUT_S)
            raise

    def _connected(self) -> bool:
        connected = getattr(self.runtime.connection, "connected", None)
        return bool(connected is None or connected.is_set())

    async def _consuming(self) -> bool:
        """The broker's answer: this replica's channel is open with both consumers on it,
        the request queue exists with a consumer, and so does this replica's queue."""
        channel = self._channel
        if channel is None or channel.is_closed or not (self._consumer_tag and self._own_tag):
            return False
        underlay = cast(aiormq.Channel, await channel.get_underlay_channel())
        if not {self._consumer_tag, self._own_tag} <= underlay.consumers.keys():
            return False
        probe = await underlay.connection.channel(publisher_confirms=False, timeout=5)
        try:  # passive: a missing queue is a no (404, which closes the probe), not a new one
            shared = await probe.queue_declare(rpc_queue(self.router.service), passive=True)
            own = await probe.queue_declare(
                instance_queue(self.router.service, self.instance), passive=True
            )
            return bool(shared.consumer_count and own.consumer_count)
        finally:
            if not probe.is_closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(probe.close(), CLOSE_TIMEOUT_S)

    async def _renew(self) -> None:
        """Open a new channel, close the old one (the broker hands its unacknowledged
        requests out again: writes run once by their idempotency key), then consume
        again on the new one.

        In that order. A queue process whose record the broker has lost (an "orphan": a
        node's loss can leave one) deletes, when its last consumer leaves, whatever record
        then holds its name: consumed first and the old channel closed after, the new
        queue lost its record each time (a CI run saw chat renew for good, its request
        queue unroutable, after a node was killed). And the old channel is touched only
        once a new one has opened: on a silent connection (a partition) a close or cancel
        that times out left aiormq unable to give the connection up and reconnect, while
        the open of a new channel just fails.
        """
        channel = await self.runtime.connection.channel(publisher_confirms=False)
        old = self._channel
        self._consumer_tag = self._own_tag = None
        if old is not None and not old.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.close(), CLOSE_TIMEOUT_S)
        await self._consume(channel)

    async def _declare_dead_letters(self, name: str) -> None:
        """The request queue's dead-letter queue: durable, so a quorum queue (it outlives
        any one node of a cluster), declared and bound once on a channel of its own.

        A broker that still has it as the classic queue of earlier versions refuses the
        redeclaration (406, which closes the channel it came on): the old queue is kept
        and used as it is, and the log says how to replace it.
        """
        connection = self.runtime.connection
        channel = await connection.channel(publisher_confirms=False)
        try:
            dlq: AbstractQueue
            try:
                dlq = await channel.declare_queue(name, durable=True, arguments=QUORUM)
            except aio_pika.exceptions.ChannelPreconditionFailed:
                log.warning(
                    "rpc.dead_letter_queue_classic",
                    queue=name,
                    hint="a classic queue from an earlier version: delete it once, empty "
                    "(rabbitmqctl delete_queue), and the next start makes it a quorum queue",
                )
                channel = await connection.channel(publisher_confirms=False)
                dlq = await channel.get_queue(name, ensure=True)  # passive: as it is
            await dlq.bind(DEAD_LETTER_EXCHANGE, routing_key=name)
        finally:
            if not channel.is_closed:
                with contextlib.suppress(Exception):
                    await channel.close()

    async def stop(self, grace_s: float) -> None:
        """Stop taking requests, finish the ones in flight (up to `grace_s`), then close."""
        await watchdog.stop(self._watch)
        self._watch = None
        for queue, tag in ((self._queue, self._consumer_tag), (self._own_queue, self._own_tag)):
            if queue is not None and tag is not None:
                try:
                    await queue.cancel(tag, timeout=CLOSE_TIMEOUT_S)
                except Exception as exc:  # the channel may already be gone
                    log.warning("rpc.cancel_failed", error=str(exc))
        self._consumer_tag = self._own_tag = None
        if self._in_flight:
            try:
                await asyncio.wait_for(self._idle.wait(), grace_s)
            except TimeoutError:
                log.warning("rpc.stop_grace_exceeded", in_flight=len(self._in_flight))
        if self._channel is not None and not self._channel.is_closed:
            try:
                await asyncio.wait_for(self._channel.close(), CLOSE_TIMEOUT_S)
            except Exception as exc:  # the connection's close ends it anyway
                log.warning("rpc.close_failed", error=f"{type(exc).__name__}: {exc}")

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
                user_id=self._user_id,
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
                    user_id=self._user_id,
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
        # Metrics by the methods this router serves: a made-up name any caller can send
        # would otherwise add a series (and a histogram) each, without bound.
        label = method_name if method_name in self.router.routes else "unknown"
        try:
            deadline = float(_str_header(headers, HEADER_DEADLINE) or "inf")
        except ValueError:
            deadline = float("inf")
        if time.time() >= deadline:
            # The caller has given up: never start work it no longer waits for.
            metrics.RPC_SERVED.labels(self.router.service, label, "expired").inc()
            await message.ack()
            return
        route = self.router.routes.get(method_name)
        outcome = "ok"
        try:
            if route is None:
                raise NotFound(f"unknown method {method_name!r}", details={"method": method_name})
            request_body, signed_body = _split_body(message.body, headers)
            ctx = CallContext(
                method=method_name,
                principal=_principal_from(headers),
                traceparent=_str_header(headers, HEADER_TRACEPARENT) or new_traceparent(),
                deadline=deadline,
                idempotency_key=_str_header(headers, HEADER_IDEMPOTENCY),
                proof=_str_header(headers, HEADER_PROOF),
                signed_body=signed_body,
                caller=self.runtime.settings.identity_of(message.user_id),
                runtime=self.runtime,
            )
            body = await self._dispatch(route, request_body, ctx)
            await self._reply(message, body, "ok")
        except RpcError as exc:
            if message.redelivered and exc.code is ErrorCode.unauthenticated:
                # Redelivered after a replica stopped mid-request: the user's signature
                # may already be spent downstream (the keyvault serves each proof once),
                # or have gone stale. Still refused, but as retryable: the client sends
                # the request again with a fresh signature (an idempotent write, once).
                exc = Unavailable(
                    "the request was interrupted (a replica stopped); send it again with a "
                    "fresh signature"
                )
            outcome = exc.code.value
            await self._reply_error(message, exc)
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                # Not even JSON: keep it for inspection in the dead-letter queue.
                metrics.RPC_SERVED.labels(self.router.service, label, "dead_lettered").inc()
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
        metrics.RPC_SERVED.labels(self.router.service, label, outcome).inc()
        metrics.RPC_SECONDS.labels(self.router.service, label).observe(
            time.perf_counter() - started
        )

    async def _dispatch(self, route: _Route[Any, Any], body: bytes, ctx: CallContext) -> bytes:
        method = route.method
        if not method.may_call(ctx.caller):
            await _audit_refusal(
                self.runtime, AuditType.bus_call_refused, ctx, f"{ctx.caller or '?'}"
            )
            raise Forbidden(
                f"{ctx.caller or 'this caller'} may not call {method.name}",
                details={"caller": ctx.caller},
            )
        # A call for a user: the user's signature first, so a caller without one learns
        # nothing (not even what a valid request looks like).
        claim = self._claim(method, ctx) if method.for_user else None
        try:
            operation = await self._signed_operation(ctx) if method.for_user else None
            # One pass in pydantic-core: parsing and validating together (no json.loads).
            request = method.request.model_validate_json(body)
            if operation is not None:
                await self._authorise(method, request, operation, ctx, claim)
        finally:
            if claim is not None and not claim.done():
                claim.cancel()
        if method.roles is not None and (
            ctx.principal is None or ctx.principal.role not in method.roles
        ):
            raise Forbidden(
                f"{method.name} is not allowed for this role",
                details={"role": ctx.principal.role if ctx.principal else None},
            )
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

    def _claim(self, method: RpcMethod[Any, Any], ctx: CallContext) -> asyncio.Task[bool] | None:
        """Where the runtime keeps a ledger (the keyvault): claim the proof's single use at
        once, while its signature is being checked (the claim is a round trip to Redis);
        a refused signature then costs the claimant nothing, since only someone who saw
        the proof knows its nonce."""
        ledger = self.runtime.ledger
        if ledger is None or ctx.proof is None:
            return None
        try:
            signature = parse_proof(RequestProof.model_validate_json(ctx.proof))
        except (ValueError, SignatureError):
            return None  # refused by the signature check anyway
        once = f"{signature.key_id}:{signature.nonce}:{method.name}"
        if method.per_replica:
            # Served by each replica in turn for one request (sealing every replica): once
            # per replica, whichever queue it comes by. Everything else (rotation, decrypt,
            # blind indexes, MACs) once across replicas.
            once += f"@{self.instance}"
        return asyncio.ensure_future(ledger.claim(once))

    async def _signed_operation(self, ctx: CallContext) -> Operation:
        """The operation the forwarded proof was made for, its signature verified."""
        runtime = self.runtime
        try:
            if runtime.accounts is None:
                raise Unauthenticated(f"{self.router.service} cannot check signatures")
            return await verify_operation(
                ctx.proof, ctx.signed_body, runtime.accounts, runtime.settings
            )
        except Unauthenticated as exc:
            await _audit_refusal(runtime, AuditType.bus_signature_refused, ctx, exc.message)
            raise

    async def _authorise(
        self,
        method: RpcMethod[Any, Any],
        request: BaseModel,
        operation: Operation,
        ctx: CallContext,
        claim: asyncio.Task[bool] | None,
    ) -> None:
        """The user's own signature for this very operation, before any handler runs: the
        principal comes from the signing account; a proof is used at most once where the
        runtime keeps a ledger (the keyvault: `claim`), and a write's proof once by its
        idempotency record."""
        runtime = self.runtime
        try:
            authorise(method, request, operation, ctx.caller)
            principal = operation.principal
            if ctx.principal is not None and (
                principal is None or principal.account_id != ctx.principal.account_id
            ):
                raise Unauthenticated("the acting principal is not the account that signed")
            if runtime.ledger is not None and (claim is None or not await claim):
                raise Unauthenticated(
                    "request signature refused: this signed request was already used"
                )
        except Unauthenticated as exc:
            await _audit_refusal(runtime, AuditType.bus_signature_refused, ctx, exc.message)
            raise
        ctx.principal, ctx.operation = principal, operation
