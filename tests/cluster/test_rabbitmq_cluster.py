"""The whole mesh on a three-node RabbitMQ cluster of its own, one node killed under load.

The cluster (`mesh.cluster.rabbitmq`) runs beside the machine's own broker, which these
tests never touch; the mesh's vhost and broker users live on the cluster and go with it.
Every service connects to the first node that answers (the same one, at first: the worst
case), so `kill -9` of that node takes every connection, the shared RPC request queues
and the quorum queues' leaders with it.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from mesh import amqp, broker
from mesh.cluster import rabbitmq
from mesh.events import EventPublisher, declare_topology
from tests.cluster.rabbitmq_support import (
    CLEAN_FAILURES,
    NEEDS_RABBITMQ,
    audited_creations,
    count_writes,
    patient_body,
    patient_ids_in_database,
)
from tests.conftest import ALL_IDENTITIES, SECRETS, session_settings
from tests.gateway.support import EVERY_SERVICE, Mesh, Staff, mesh_on
from tests.processes import free_port
from tests.support.polling import until, until_sync

pytestmark = [pytest.mark.slow, NEEDS_RABBITMQ]

WRITES = 48
WORKERS = 4
ATTEMPTS = 40
READ_PAUSE_S = 0.1
RECOVERY_S = 30.0
"""How long every service may take to be reachable again on the nodes left."""


@dataclass
class Cluster:
    nodes: rabbitmq.Cluster
    world: Mesh


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three nodes, the mesh's vhost and users on them, the services and the gateway."""
    logs = tmp_path_factory.mktemp("rmqcluster")
    # Under /tmp, not pytest's 0700 folders: the nodes run as the rabbitmq user.
    base = Path(tempfile.mkdtemp(prefix="mhtest-rmq-", dir="/tmp"))
    try:
        nodes = rabbitmq.up(base)
        vhost = f"medihaven-test-cluster-{uuid.uuid4().hex[:6]}"
        settings = session_settings(vhost, tag="rmqcluster_").model_copy(
            update={
                "amqp_url": SecretStr(nodes.urls[0] + vhost),
                "amqp_nodes": nodes.addresses,
            }
        )
        broker.provision(settings, SECRETS, ALL_IDENTITIES, node=nodes.names[0])
        services = EVERY_SERVICE
        # A roomy readiness bound: the machine may be busy (it is still a bound).
        with mesh_on(settings, logs, services, ready_timeout_s=90) as w:
            yield Cluster(nodes, w)
    finally:
        # The vhost and users live only on the cluster's nodes: removing them removes all.
        rabbitmq.down(base)
        shutil.rmtree(base, ignore_errors=True)


def test_the_cluster_runs_beside_the_machines_broker(cluster: Cluster) -> None:
    status = rabbitmq.ctl(cluster.nodes.names[0], "cluster_status", "--formatter", "json")
    for name in cluster.nodes.names:
        assert name in status
    machines = subprocess.run(
        ["rabbitmqctl", "-q", "cluster_status", "--formatter", "json"],  # its default node
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for name in cluster.nodes.names:  # the machine's own broker stays alone
        assert name not in machines
    queues = rabbitmq.ctl(
        cluster.nodes.names[0],
        "list_queues",
        "-p",
        broker.vhost_of(cluster.world.settings),
        "name",
        "type",
        "durable",
        "--no-table-headers",
    )
    rows = [line.split("\t") for line in queues.strip().splitlines()]
    durable = {name: kind for name, kind, is_durable in rows if is_durable == "true"}
    assert durable, queues
    assert {n for n, kind in durable.items() if kind != "quorum"} == set(), queues
    assert any(n.startswith("rpc.") and n.endswith(".dlq") for n in durable), queues


async def test_a_client_skips_a_dead_node_and_moves_on_when_its_node_dies(
    cluster: Cluster,
) -> None:
    """`mesh.amqp`: the first node that answers, then the next one after a loss, with
    the channel's queue and consumer restored there."""
    settings = cluster.world.settings
    dead = f"127.0.0.1:{free_port()}"
    nodes = cluster.nodes.nodes
    # Node 2 first (so killing it does not disturb the mesh, whose connections are on 1).
    listed = settings.model_copy(
        update={"amqp_nodes": ",".join([dead, nodes[1].address, nodes[2].address])}
    )
    connection = await amqp.connect(listed.amqp_urls_for("testclient"), name="cluster-test")
    try:
        assert isinstance(connection, amqp.ClusterConnection)
        assert connection.current_url.port == nodes[1].port  # the dead address was skipped
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            got.put_nowait(message.body)
            await message.ack()

        await queue.consume(on_message)
        await asyncio.to_thread(rabbitmq.await_quorum_safe, nodes[1])
        rabbitmq.kill(nodes[1])
        try:
            await until(
                lambda: (
                    connection.connected.is_set() and connection.current_url.port == nodes[2].port
                ),
                30,
            )

            async def delivered() -> bool:
                # Sent until the restored queue and consumer are there on the new node
                # (before that, an unroutable message is dropped: a race, not a loss).
                if not channel.is_closed:
                    await channel.default_exchange.publish(
                        aio_pika.Message(b"after"), queue.name, mandatory=False
                    )
                try:
                    return await asyncio.wait_for(got.get(), 0.5) == b"after"
                except TimeoutError:
                    return False

            await until(delivered, 30, 0.1)
        finally:
            await asyncio.to_thread(rabbitmq.start, nodes[1])
    finally:
        await connection.close()


async def test_events_whose_confirm_died_with_their_node_are_sent_again(cluster: Cluster) -> None:
    """`EventPublisher`: publishes in flight when the publisher's node dies are sent again
    on the next node, none lost (a copy may arrive twice: the consumers de-duplicate)."""
    settings = cluster.world.settings
    nodes = cluster.nodes.nodes
    listed = settings.model_copy(
        update={"amqp_nodes": ",".join([nodes[1].address, nodes[2].address])}
    )
    connection = await amqp.connect(listed.amqp_urls_for("testclient"), name="resend-test")
    name, key, count = f"events.testclient-resend-{uuid.uuid4().hex[:6]}", "test.resend", 300

    def resent() -> float:
        sample = REGISTRY.get_sample_value("medihaven_events_resent_total", {"routing_key": key})
        return sample or 0.0

    try:
        setup = await connection.channel()
        exchange = await declare_topology(setup)
        queue = await setup.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind(exchange, routing_key=key)
        # its members running on every node before one goes (not only the older queues')
        await asyncio.to_thread(rabbitmq.await_quorum_safe, nodes[1])
        publisher = EventPublisher(connection, user_id=settings.broker_user("testclient"))
        await publisher.start()
        before = resent()

        async def publish(i: int) -> None:
            await asyncio.sleep(i * 0.008)  # spread over about 2.4 s
            await publisher.publish_raw(key, b"{}", message_id=f"m-{i}", headers={})

        await asyncio.to_thread(rabbitmq.await_quorum_safe, nodes[1])
        sending = asyncio.gather(*(publish(i) for i in range(count)))
        await asyncio.sleep(0.6)
        await asyncio.to_thread(rabbitmq.kill, nodes[1])
        try:
            await asyncio.wait_for(sending, 60)  # none raised: each one confirmed in the end
            assert resent() > before, "the node died while nothing was in flight"
            assert isinstance(connection, amqp.ClusterConnection)
            assert connection.current_url.port == nodes[2].port
            seen: Counter[str] = Counter()
            reading = await (await connection.channel()).get_queue(name)

            async def drained() -> bool:
                while (message := await reading.get(fail=False, no_ack=True)) is not None:
                    seen[message.message_id or ""] += 1
                return len(seen) >= count

            await until(drained, 30, 0.1)
            assert set(seen) == {f"m-{i}" for i in range(count)}
            print(
                f"\nevents resent after the node died: {resent() - before:.0f}, "
                f"delivered twice: {sum(n - 1 for n in seen.values())}"
            )
            await reading.delete(if_unused=False, if_empty=False)
        finally:
            await asyncio.to_thread(rabbitmq.start, nodes[1])
    finally:
        await connection.close()


@dataclass
class Load:
    """A small clinic load: receptionists registering patients, reads of what exists."""

    desk: Staff
    reader_desk: Staff
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[int] = field(default_factory=Counter)
    created: dict[str, str] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def record(self, response: httpx.Response, also: frozenset[int] = frozenset()) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1
            code = response.status_code
            if code >= 300 and code not in CLEAN_FAILURES and code not in also:
                self.unexpected.append(f"{response.status_code} {response.text[:300]}")

    def create(self, i: int) -> None:
        key = f"rmq-{self.tag}-{i:04d}"
        for _ in range(ATTEMPTS):
            try:
                response = self.desk.client.request(
                    "POST", "/api/v1/patients", patient_body(i, self.tag), idempotency_key=key
                )
            except httpx.TimeoutException:
                with self.lock:
                    self.unexpected.append(f"{key}: the gateway did not answer in time")
                continue
            self.record(response)
            if response.status_code == 201:
                with self.lock:
                    self.created[key] = response.json()["patient_id"]
                return
            if response.status_code not in CLEAN_FAILURES:
                return
            time.sleep(0.2)  # a client's retry pause (the same idempotency key)

    def writer(self, start: int) -> None:
        for i in range(start, WRITES, WORKERS):
            self.create(i)

    def reader(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                some = next(iter(self.created.values()), None)
            path = f"/api/v1/patients/{some}" if some else "/api/v1/me"
            try:
                response = self.reader_desk.client.request("GET", path)
            except httpx.TimeoutException:
                with self.lock:
                    self.unexpected.append(f"GET {path}: the gateway did not answer in time")
                continue
            # A 429 is the patient-data rate limit at work (30 at once, then 1 per
            # second), not the cluster failing: counted apart, and the reader waits.
            self.record(response, also=frozenset({429}))
            pause = READ_PAUSE_S
            if response.status_code == 429:
                pause = min(float(response.headers.get("retry-after", "1")), 2.0)
            self.stop.wait(pause)


def recovery_report(world: Mesh, nodes: rabbitmq.Cluster, health: httpx.Response) -> str:
    """What a failed recovery looked like. First what the unhealthy services logged about
    the bus (CI shows a failure's head and tail only, and these lines tell the story),
    then the mesh's answer and the broker's queues, consumers and connections on a
    surviving node, then every other process's last warnings."""
    vhost = broker.vhost_of(world.settings)
    survivor = nodes.names[1]
    try:
        services = health.json().get("services", {})
    except ValueError:
        services = {}
    down = {name for name, state in services.items() if not state.get("ok")}
    about_the_bus = ("rpc.", "watchdog", "amqp", "aio_pika", "aiormq", "reconnect", "channel")
    parts: list[str] = []
    for proc in world.procs.values():
        if not any(proc.module.endswith(f".{name}") for name in down):
            continue
        lines = [line for line in proc.log().splitlines() if any(w in line for w in about_the_bus)]
        parts.append(f"{proc.module}, down (its bus log):\n" + "\n".join(lines[-40:]))
    parts.append(f"mesh health: {health.status_code} {health.text}")
    for what in (
        ("list_queues", "-p", vhost, "name", "pid", "consumers", "messages"),
        ("list_consumers", "-p", vhost, "queue_name", "channel_pid", "consumer_tag"),
        ("list_connections", "user", "peer_port", "state", "channels"),
    ):
        parts.append(f"{what[0]}:\n{rabbitmq.ctl(survivor, *what, check=False)}")
    for proc in [*world.procs.values(), world.gateway]:
        lines = [
            line
            for line in proc.log().splitlines()
            if "warning" in line.lower() or "error" in line.lower() or "rpc.serving" in line
        ]
        parts.append(f"{proc.module} (last warnings):\n" + "\n".join(lines[-25:]))
    return "\n\n".join(parts)


def test_killing_a_node_under_load_loses_and_duplicates_nothing(cluster: Cluster) -> None:
    world, nodes = cluster.world, cluster.nodes
    victim = nodes.nodes[0]  # every process is connected to it
    admin, desk = world.admin(), world.staff("receptionist")
    before = set(patient_ids_in_database(world))
    load = Load(desk, world.staff("receptionist"))
    # Only once every quorum queue has its three members (a node restarted by an earlier
    # test may still be catching up): one loss, not two.
    rabbitmq.await_quorum_safe(victim)
    threads = [threading.Thread(target=load.writer, args=(s,)) for s in range(WORKERS)]
    threads.append(threading.Thread(target=load.reader))
    for thread in threads:
        thread.start()
    try:
        assert until_sync(lambda: len(load.created) >= WRITES // 4, 60), load.statuses
        killed_at = time.monotonic()
        rabbitmq.kill(victim)
        for thread in threads[:WORKERS]:
            thread.join(150)
        written_in = time.monotonic() - killed_at
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(30)
    answered = sum(n for code, n in load.statuses.items() if code < 300)
    rate_limited = load.statuses[429]
    failed_cleanly = sum(n for code, n in load.statuses.items() if code in CLEAN_FAILURES)
    written = count_writes(world, admin, before, load.created)
    print(
        f"\nrabbitmq node killed under load: {answered} answered, {failed_cleanly} failed "
        f"cleanly (503/504), {rate_limited} reads rate-limited (429), "
        f"{len(load.unexpected)} other; {written.summary(WRITES)}; "
        f"all writes done {written_in:.1f} s after the kill; "
        f"statuses {dict(load.statuses)}"
    )
    assert not load.unexpected, load.unexpected[:5]
    written.assert_whole(WRITES, load.created, load.statuses)
    assert admin.client.get("/api/v1/audit/verify")["ok"]
    # every service recovered on the two nodes left, without a restart. A service the
    # load never called (chat) notices the loss only by its own connection and may still
    # be between two reconnection attempts when the writes are done: given a bound.
    for proc in [*world.procs.values(), world.gateway]:
        assert proc.popen.poll() is None, f"{proc.module} exited"
    health: list[httpx.Response] = []

    def mesh_healthy() -> bool:
        health.append(httpx.get(f"{world.url}/api/v1/health/mesh", timeout=10))
        return health[-1].status_code == 200

    assert until_sync(mesh_healthy, RECOVERY_S, 0.5), recovery_report(world, nodes, health[-1])
    print(f"mesh healthy again {time.monotonic() - killed_at:.1f} s after the kill")
    assert desk.client.request("GET", "/api/v1/me").status_code == 200
    connected = rabbitmq.ctl(nodes.names[1], "list_connections", "user", "--no-table-headers")
    for identity in ("gateway", "auth", "records", "keyvault", "audit", "chat", "scheduling"):
        assert world.settings.broker_user(identity) in connected, connected

    # and the node comes back and rejoins
    rabbitmq.start(victim)
    running = rabbitmq.ctl(nodes.names[1], "cluster_status", "--formatter", "json")
    assert running.count("@localhost") >= len(nodes.nodes)
    rabbitmq.ctl(nodes.names[1], "await_online_nodes", str(len(nodes.nodes)), "-t", "60")
    created = desk.client.post("/api/v1/patients", patient_body(WRITES, load.tag))
    assert until_sync(lambda: created["patient_id"] in audited_creations(admin), 30, 0.5)
    assert admin.client.get("/api/v1/audit/verify")["ok"]


def test_a_clusters_ports_are_distinct_even_when_the_kernel_repeats_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two nodes once got one dist port (the kernel handed it out twice) and the second
    node could not start: `mesh.cluster.rabbitmq` takes a repeated port only once."""
    handed_out = iter([41001, 41002, 41002, 41001, 41003, 41004, 41005, 41006, 41007])
    monkeypatch.setattr(rabbitmq, "_free_port", lambda: next(handed_out))
    assert rabbitmq._free_ports(7) == [41001, 41002, 41003, 41004, 41005, 41006, 41007]
