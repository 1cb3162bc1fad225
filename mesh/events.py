"""Events on the topic exchange `medihaven.events`.

Publishing: persistent messages with publisher confirms. Events nobody subscribes to
yet go to the alternate exchange's queue instead of vanishing. Consuming: one durable
quorum queue per consumer group, with a dead-letter queue for poison messages (after
a few redeliveries) and an idempotent-consumer helper keyed by the event's message id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from pydantic import BaseModel, ValidationError

from contracts.base import (
    DEAD_LETTER_EXCHANGE,
    EVENTS_EXCHANGE,
    UNROUTED_EXCHANGE,
    UNROUTED_QUEUE,
    EventType,
    Principal,
    dead_letter_queue,
    event_queue,
)
from mesh import db, metrics
from mesh.amqp import BUS_UNAVAILABLE, confirmed
from mesh.context import HEADER_PRINCIPAL, HEADER_TRACEPARENT, current_call, new_traceparent
from mesh.logging import get_logger

log = get_logger("mesh.events")

EvT = TypeVar("EvT", bound=BaseModel)
DELIVERY_LIMIT = 5
"""Redeliveries of a failing event before it is dead-lettered."""


async def declare_topology(channel: AbstractChannel) -> aio_pika.abc.AbstractExchange:
    """Declare the events exchange, its alternate exchange and the dead-letter exchange."""
    unrouted = await channel.declare_exchange(UNROUTED_EXCHANGE, "fanout", durable=True)
    unrouted_queue = await channel.declare_queue(
        UNROUTED_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await unrouted_queue.bind(unrouted)
    await channel.declare_exchange(DEAD_LETTER_EXCHANGE, "topic", durable=True)
    return await channel.declare_exchange(
        EVENTS_EXCHANGE,
        "topic",
        durable=True,
        arguments={"alternate-exchange": UNROUTED_EXCHANGE},
    )


def context_headers() -> dict[str, Any]:
    """Trace and principal of the call being served, to travel with an event."""
    parent = current_call.get()
    if parent is None:
        return {HEADER_TRACEPARENT: new_traceparent()}
    headers: dict[str, Any] = {HEADER_TRACEPARENT: new_traceparent(parent.trace_id or None)}
    if parent.principal is not None:
        headers[HEADER_PRINCIPAL] = parent.principal.model_dump_json()
    return headers


REFUSED = (
    aiormq.exceptions.ChannelAccessRefused,
    aiormq.exceptions.ChannelNotFoundEntity,
    aiormq.exceptions.ChannelPreconditionFailed,
)
"""The broker said no (permissions, a missing exchange): sending again would not help."""

RESEND_WITHIN_S = 15.0
"""How long a publish whose confirm was lost keeps resending (the connection to a lost
node is restored to another within a few seconds)."""


class EventPublisher:
    """Publishes events with publisher confirms (the broker has them when this returns).

    A publish whose confirm never came (the connection, or its node, was lost first) is
    sent again once the robust connection is back, on a surviving node, for up to
    `resend_within_s`: aio-pika restores the channel but never replays a publish. The copy
    carries the same message id, so a consumer that did get the first one (`process_once`)
    changes nothing twice.
    """

    def __init__(
        self,
        connection: AbstractConnection,
        *,
        user_id: str | None = None,
        resend_within_s: float = RESEND_WITHIN_S,
    ) -> None:
        self._connection = connection
        self._user_id = user_id
        self._resend_within_s = resend_within_s
        self._channel: AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._reopening = asyncio.Lock()

    async def start(self) -> None:
        self._channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await declare_topology(self._channel)

    async def _reopen(self, seen: AbstractChannel) -> None:
        """A fresh channel after a nack: RabbitMQ 3.10 keeps nacking a quorum queue's
        publishes on a channel that was publishing when the queue's leader node died,
        while a new channel is served by the new leader (measured: the nacks on the old
        channel went on for 20 s, a new one was confirmed after 5 s)."""
        async with self._reopening:
            if self._channel is not seen:
                return  # another publish of this batch did it
            channel = await self._connection.channel(publisher_confirms=True)
            self._exchange = await declare_topology(channel)
            self._channel = channel
        with contextlib.suppress(Exception):
            await seen.close()

    async def publish_raw(
        self, routing_key: str, body: bytes, *, message_id: str, headers: dict[str, Any]
    ) -> None:
        if self._exchange is None or self._channel is None:
            raise RuntimeError("EventPublisher.start() was not awaited")
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            headers=headers,
            user_id=self._user_id,
        )
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._resend_within_s
        while True:
            channel, exchange = self._channel, self._exchange
            try:
                # unrouted events go to the alternate exchange
                await confirmed(exchange.publish(message, routing_key, mandatory=False))
                break
            except BUS_UNAVAILABLE as exc:
                remaining = give_up - loop.time()
                if remaining <= 0 or isinstance(exc, REFUSED):
                    raise
                log.warning("events.resending", routing_key=routing_key, error=repr(exc))
                metrics.EVENTS_RESENT.labels(routing_key).inc()
                if isinstance(exc, aiormq.exceptions.DeliveryError):
                    with contextlib.suppress(*BUS_UNAVAILABLE):
                        await self._reopen(channel)
                await _restored(self._channel, remaining)
        metrics.EVENTS_PUBLISHED.labels(routing_key).inc()

    async def publish(self, event: EventType[EvT], payload: EvT, *, message_id: str) -> None:
        """Publish an event that belongs to no database write (else use the outbox)."""
        await self.publish_raw(
            event.routing_key,
            payload.model_dump_json().encode(),
            message_id=message_id,
            headers=context_headers(),
        )


async def _restored(channel: AbstractChannel, within_s: float) -> None:
    """Until the (robust) channel is open again, at most `within_s`; a short pause in any
    case, so a channel that is not robust does not spin."""
    ready = getattr(channel, "ready", None)
    if ready is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready(), within_s)
    await asyncio.sleep(min(0.2, max(within_s, 0)))


@dataclass(frozen=True)
class ReceivedEvent(Generic[EvT]):
    """An event as a consumer sees it."""

    message_id: str
    routing_key: str
    payload: EvT
    principal: Principal | None
    traceparent: str | None
    publisher: str | None = None
    """The broker identity that published it (from the broker-validated `user_id`)."""


EventHandler = Callable[[ReceivedEvent[Any]], Awaitable[None]]
RefusalHandler = Callable[[str, str | None], Awaitable[None]]
"""Called with (routing key, publisher) for an event from a service not allowed to publish it."""


class EventConsumer:
    """A consumer group: one durable queue bound to some event types, many replicas.

    `durable=False` gives each process its own exclusive queue instead (every replica of
    the gateway must see every chat message, for example).
    """

    def __init__(
        self,
        connection: AbstractConnection,
        group: str,
        events: Sequence[EventType[Any]],
        handler: EventHandler,
        *,
        prefetch: int = 32,
        durable: bool = True,
        in_order: bool = False,
        identity_of: Callable[[str | bytes | None], str | None] | None = None,
        on_refused: RefusalHandler | None = None,
    ) -> None:
        """`identity_of(user_id)` names the publisher of each event; an event from anyone
        its type does not list as a publisher is refused (dead-lettered) and reported to
        `on_refused`, before the handler sees it."""
        self._connection = connection
        self.group = group
        self._types = {e.routing_key: e for e in events}
        self._models = {e.routing_key: e.model for e in events}
        self._identity_of = identity_of
        self._on_refused = on_refused
        self._handler = handler
        self._prefetch = prefetch
        self._durable = durable
        self._in_order = in_order
        self._channel: AbstractChannel | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self._tag: str | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self._prefetch)
        exchange = await declare_topology(channel)
        name = event_queue(self.group)
        if self._durable:
            dlx = await channel.get_exchange(DEAD_LETTER_EXCHANGE)
            dlq = await channel.declare_queue(
                dead_letter_queue(name), durable=True, arguments={"x-queue-type": "quorum"}
            )
            await dlq.bind(dlx, routing_key=dead_letter_queue(name))
            arguments: dict[str, Any] = {
                "x-queue-type": "quorum",
                "x-delivery-limit": DELIVERY_LIMIT,
                "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                "x-dead-letter-routing-key": dead_letter_queue(name),
            }
            if self._in_order:
                arguments["x-single-active-consumer"] = True
            try:
                queue = await channel.declare_queue(name, durable=True, arguments=arguments)
            except aio_pika.exceptions.ChannelPreconditionFailed:
                # Declared by an earlier version with other arguments (the broker closed
                # the channel): used as it is, and the log says how to renew it.
                log.warning(
                    "events.queue_arguments_differ",
                    queue=name,
                    hint="delete the queue once while its consumers are stopped (rabbitmqctl "
                    "delete_queue); the next start declares it as this version wants",
                )
                with contextlib.suppress(Exception):
                    await channel.close()  # closed by the broker: not to be restored
                channel = await self._connection.channel()
                await channel.set_qos(prefetch_count=self._prefetch)
                exchange = await declare_topology(channel)
                queue = await channel.get_queue(name, ensure=True)
        else:
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for routing_key in self._models:
            await queue.bind(exchange, routing_key=routing_key)
        self._channel, self._queue = channel, queue
        self._tag = await queue.consume(self._on_message)
        log.info("events.consuming", group=self.group, events=sorted(self._models))

    async def stop(self, grace_s: float = 10.0) -> None:
        if self._queue is not None and self._tag is not None:
            try:
                await self._queue.cancel(self._tag)
            except Exception as exc:
                log.warning("events.cancel_failed", error=str(exc))
            self._tag = None
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
        except TimeoutError:
            log.warning("events.stop_grace_exceeded", group=self.group)
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._in_flight += 1
        self._idle.clear()
        try:
            await self._consume(message)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def _consume(self, message: AbstractIncomingMessage) -> None:
        routing_key = message.routing_key or ""
        model = self._models.get(routing_key)
        headers = message.headers or {}
        try:
            if model is None or not message.message_id:
                raise ValueError(f"unexpected event {routing_key!r} without a known schema or id")
            payload = model.model_validate_json(message.body)
            raw_principal = headers.get(HEADER_PRINCIPAL)
            principal = (
                Principal.model_validate_json(raw_principal)
                if isinstance(raw_principal, str | bytes)
                else None
            )
        except (ValueError, ValidationError) as exc:
            log.error("events.malformed", group=self.group, routing_key=routing_key, error=str(exc))
            metrics.EVENTS_CONSUMED.labels(self.group, "dead_lettered").inc()
            await message.reject(requeue=False)
            return
        publisher = self._identity_of(message.user_id) if self._identity_of else None
        if self._identity_of is not None and not self._types[routing_key].may_publish(publisher):
            log.error(
                "events.publisher_refused",
                group=self.group,
                routing_key=routing_key,
                publisher=publisher,
                user_id=message.user_id,
            )
            metrics.EVENTS_CONSUMED.labels(self.group, "refused").inc()
            await message.reject(requeue=False)
            if self._on_refused is not None:
                await self._on_refused(routing_key, publisher)
            return
        traceparent = headers.get(HEADER_TRACEPARENT)
        event = ReceivedEvent(
            message_id=message.message_id,
            routing_key=routing_key,
            payload=payload,
            principal=principal,
            traceparent=traceparent if isinstance(traceparent, str) else None,
            publisher=publisher,
        )
        with structlog.contextvars.bound_contextvars(
            event=routing_key, message_id=message.message_id
        ):
            try:
                await self._handler(event)
            except Exception:
                log.exception("events.handler_failed", group=self.group)
                metrics.EVENTS_CONSUMED.labels(self.group, "failed").inc()
                await message.nack(requeue=True)  # quorum queue dead-letters after the limit
                return
        metrics.EVENTS_CONSUMED.labels(self.group, "ok").inc()
        await message.ack()


async def process_once(
    database: db.Database,
    consumer: str,
    message_id: str,
    effect: Callable[[db.Connection], Awaitable[None]],
) -> bool:
    """Idempotent consumer: `effect(conn)` once per message id; False if already done.

    The message id is recorded in the same transaction as the handler's effect, so a
    redelivered event changes nothing the second time. A deadlock or certification
    conflict runs the claim and the effect again as a whole.
    """
    done = False
    async for attempt in database.transactions():
        async with attempt as conn:
            inserted = await db.execute(
                conn,
                "INSERT IGNORE INTO mesh_processed_events (consumer, message_id) VALUES (%s, %s)",
                (consumer, message_id),
            )
            if inserted:
                await effect(conn)
            done = bool(inserted)
    return done


def decode_headers(raw: str) -> dict[str, Any]:
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}
