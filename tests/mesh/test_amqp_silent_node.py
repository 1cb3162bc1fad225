"""`mesh.amqp` against a node that goes silent (a network partition: no close, no reset,
no answer): the connection is given up within the heartbeat's grace and moves to the
next node, a connect attempt that is never answered is bounded, a publish waiting for a
confirm sees a bus failure (not a `CancelledError`), and an RPC keeps its deadline.

The silent node is a proxy to the machine's broker that stops forwarding (its sockets
stay open, as behind a failed switch), or a server that accepts and never speaks.
"""

from __future__ import annotations

import asyncio
import time

import aio_pika
import pytest
from yarl import URL

from mesh import amqp
from mesh.errors import NoRoute, RpcTimeout, Unavailable
from mesh.settings import Settings
from tests.mesh.fixtures import ECHO, EchoRequest, client_runtime, running_service
from tests.support.polling import until
from tests.support.silent import SilentProxy, mute_server

pytestmark = pytest.mark.timeout(90)

GIVEN_UP_WITHIN_S = 3 * (amqp.HEARTBEAT_S + 1) + 5
"""aiormq's grace (three heartbeats plus one second each) and a margin for a busy host."""


def at(url: str, port: int) -> str:
    return str(URL(url).with_host("127.0.0.1").with_port(port))


def test_every_url_asks_for_a_short_heartbeat_unless_it_names_one() -> None:
    assert amqp.with_heartbeat("amqp://u:p@h:5672/v").query["heartbeat"] == str(amqp.HEARTBEAT_S)
    assert amqp.with_heartbeat("amqp://h/v?heartbeat=30").query["heartbeat"] == "30"
    assert amqp.with_heartbeat("amqp://h/v?name=x").query["name"] == "x"


async def test_a_silent_node_is_given_up_and_the_next_answering_one_taken(
    settings: Settings,
) -> None:
    """Frozen mid-publish: the publish fails as a bus failure once the heartbeat gives the
    connection up, and the reconnection skips a node that never answers (bounded) and
    lands on the broker itself."""
    direct = settings.amqp_urls_for("testclient")[0]
    broker = URL(direct)
    async with SilentProxy(broker.host or "127.0.0.1", broker.port or 5672) as proxy:
        async with mute_server() as mute:
            urls = [at(direct, proxy.port), at(direct, mute), direct]
            connection = await amqp.connect(urls, name="silent-node-test")
            try:
                assert isinstance(connection, amqp.ClusterConnection)
                assert connection.current_url.port == proxy.port
                channel = await connection.channel()
                queue = await channel.declare_queue(exclusive=True)
                proxy.freeze()
                started = time.monotonic()
                with pytest.raises(amqp.BUS_UNAVAILABLE):  # not a CancelledError
                    await amqp.confirmed(
                        channel.default_exchange.publish(aio_pika.Message(b"x"), queue.name)
                    )
                assert time.monotonic() - started < GIVEN_UP_WITHIN_S

                def on_the_broker() -> bool:
                    return (
                        connection.connected.is_set() and connection.current_url.port == broker.port
                    )

                # the mute node in between costs at most one connect bound
                limit = amqp.CONNECT_TIMEOUT_S + 2 * amqp.RECONNECT_INTERVAL_S + 5
                deadline = time.monotonic() + limit
                while not on_the_broker():
                    assert time.monotonic() < deadline, "still not on the broker"
                    await asyncio.sleep(0.1)
            finally:
                await connection.close()


async def test_a_node_that_accepts_and_never_answers_costs_one_connect_bound(
    settings: Settings,
) -> None:
    direct = settings.amqp_urls_for("testclient")[0]
    async with mute_server() as mute:
        started = time.monotonic()
        connection = await amqp.connect([at(direct, mute), direct], name="mute-node-test")
        try:
            assert isinstance(connection, amqp.ClusterConnection)
            assert connection.current_url.port == URL(direct).port
            assert time.monotonic() - started < amqp.CONNECT_TIMEOUT_S + 3
        finally:
            await connection.close()


async def test_a_call_keeps_its_deadline_when_its_publish_is_never_confirmed(
    settings: Settings,
) -> None:
    """The request's confirm never comes from a silent node: the caller still gets its
    timeout at the deadline, not when the connection is given up (18 s later)."""
    broker = URL(settings.amqp_urls_for("testclient")[0])
    async with SilentProxy(broker.host or "127.0.0.1", broker.port or 5672) as proxy:
        via_proxy = settings.model_copy(update={"amqp_nodes": f"127.0.0.1:{proxy.port}"})
        async with client_runtime(via_proxy) as client:
            proxy.freeze()
            started = time.monotonic()
            with pytest.raises(RpcTimeout):
                await client.rpc.call(ECHO, EchoRequest(text="hello"), timeout=1.0)
            assert time.monotonic() - started < 3


async def test_a_replica_renewing_on_a_silent_connection_still_moves_to_the_next_node(
    settings: Settings,
) -> None:
    """The watchdog finds the replica not consuming while its node is silent and renews:
    the renewal must not touch the old channel then. A close or cancel there that timed
    out left aiormq unable to give the connection up, and the replica never reconnected
    (the partition test hung); it must be on the next node and answering within the
    heartbeat's grace and a reconnection."""
    broker = URL(settings.amqp_urls_for("testclient")[0])
    async with SilentProxy(broker.host or "127.0.0.1", broker.port or 5672) as proxy:
        nodes = f"127.0.0.1:{proxy.port},{broker.host}:{broker.port}"
        watched = settings.model_copy(update={"amqp_nodes": nodes, "rpc_watch_s": 0.5})
        async with running_service(watched) as svc, client_runtime(settings) as client:
            connection = svc.connection
            assert isinstance(connection, amqp.ClusterConnection)
            assert connection.current_url.port == proxy.port
            proxy.freeze()
            limit = GIVEN_UP_WITHIN_S + amqp.CONNECT_TIMEOUT_S + 10
            deadline = time.monotonic() + limit
            while not (
                connection.connected.is_set() and connection.current_url.port == broker.port
            ):
                assert time.monotonic() < deadline, "the replica never left the silent node"
                await asyncio.sleep(0.1)

            async def answered() -> bool:
                try:
                    await client.rpc.call(ECHO, EchoRequest(text="moved"), timeout=1)
                except (RpcTimeout, NoRoute, Unavailable):
                    return False
                return True

            await until(answered, 30, 0.2)
