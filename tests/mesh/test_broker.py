"""Broker identities and permissions, tried with plain aio-pika on the real broker.

Each identity's stolen password opens only that identity's doors: RabbitMQ itself refuses
a `user_id` that is not the connection's user, consuming another service's requests,
publishing an event type the identity may not publish, and listening to events it has no
use for (topic permissions made from contracts/ by mesh/broker.py).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractRobustConnection
from aiormq.exceptions import ChannelAccessRefused, ChannelPreconditionFailed

from contracts.base import EVENTS_EXCHANGE, EventType
from contracts.common import CONSUMES, IDENTITIES, collect
from mesh import broker
from mesh.events import declare_topology
from mesh.settings import Settings
from tests.mesh.fixtures import client_runtime

_, EVENTS = collect()


@pytest_asyncio.fixture(loop_scope="session")
async def connections(
    settings: Settings,
) -> AsyncIterator[dict[str, AbstractRobustConnection]]:
    opened: dict[str, AbstractRobustConnection] = {
        i: await aio_pika.connect_robust(settings.amqp_url_for(i)) for i in IDENTITIES
    }
    # The shared exchanges exist once any part of the mesh has started.
    async with client_runtime(settings):
        pass
    try:
        yield opened
    finally:
        for connection in opened.values():
            await connection.close()


async def test_a_user_id_of_another_service_is_refused_by_the_broker(
    settings: Settings, connections: dict[str, AbstractRobustConnection]
) -> None:
    channel = await connections["records"].channel(publisher_confirms=True)
    with pytest.raises(ChannelPreconditionFailed, match="user_id"):
        await channel.default_exchange.publish(
            aio_pika.Message(b"{}", user_id=settings.broker_user("keyvault")), "rpc.keyvault"
        )


@pytest.mark.parametrize("identity", [i for i in IDENTITIES if i != "keyvault"])
async def test_nobody_but_the_keyvault_consumes_the_keyvault_requests(
    identity: str, connections: dict[str, AbstractRobustConnection]
) -> None:
    """Consuming a service's queue would mean reading its requests and answering as it."""
    channel = await connections[identity].channel()
    queue = await channel.get_queue("rpc.keyvault", ensure=False)

    async def steal(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        raise AssertionError("a request of the keyvault was delivered to another identity")

    with pytest.raises(ChannelAccessRefused):
        await queue.consume(steal)
        await channel.get_queue("rpc.keyvault", ensure=False)  # the refusal closes the channel


def _published(identity: str) -> list[EventType[Any]]:
    return [e for e in EVENTS if e.publishers is not None and identity in e.publishers]


@pytest.mark.parametrize("identity", IDENTITIES)
async def test_an_identity_publishes_only_its_own_event_types(
    identity: str, connections: dict[str, AbstractRobustConnection]
) -> None:
    mine = {e.routing_key for e in _published(identity)}
    for event in EVENTS:
        channel = await connections[identity].channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
        message = aio_pika.Message(b"{}")
        if event.routing_key in mine:
            await exchange.publish(message, event.routing_key)
        else:
            with pytest.raises(ChannelAccessRefused):
                await exchange.publish(message, event.routing_key)


@pytest.mark.parametrize("identity", IDENTITIES)
async def test_an_identity_listens_only_to_the_events_it_consumes(
    identity: str, connections: dict[str, AbstractRobustConnection]
) -> None:
    consumed = {e.routing_key for e in CONSUMES.get(identity, ())}
    for event in EVENTS:
        channel = await connections[identity].channel()
        exchange = await declare_topology(channel)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        if event.routing_key in consumed:
            await queue.bind(exchange, routing_key=event.routing_key)
        else:
            with pytest.raises(ChannelAccessRefused):
                await queue.bind(exchange, routing_key=event.routing_key)


def test_permissions_name_only_own_queues_and_shared_exchanges() -> None:
    records = broker.permissions("records")
    for allowed in ("rpc.records", "rpc.records.dlq", "rpc.records@r1", "rpc.recordsaccess"):
        assert re.fullmatch(records.read, allowed), allowed
    for refused in ("rpc.keyvault", "rpc.auth@x", "events.audit"):
        assert not re.fullmatch(records.read, refused), refused
        assert not re.fullmatch(records.configure, refused), refused
    # everyone declares the queue of unrouted events, nobody but an operator reads it
    assert not re.fullmatch(records.read, "medihaven.unrouted.events")
    gateway = broker.permissions("gateway")
    assert not re.fullmatch(gateway.topic_write, "auth.account.changed")
    assert re.fullmatch(gateway.topic_write, "audit.recorded")
