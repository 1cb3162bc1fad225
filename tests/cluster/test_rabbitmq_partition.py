"""A RabbitMQ network partition: one node of a three-node cluster on a network island
(`mesh.cluster.netns`), cut off from the other two, then joined again.

The cluster runs `pause_minority`, as `deploy/` does. A cut is a black hole seen from the
host (connects time out, open connections stall until a heartbeat notices), so this is
not a kill: the island's node keeps running, alone, notices after `net_ticktime` that it
is the minority and pauses (stops its listeners, closes its clients); its peers go on
with a majority of two. After the heal it resumes and catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import aio_pika
import httpx
import pytest
from pydantic import SecretStr

from mesh import amqp, broker
from mesh.cluster import netns, rabbitmq
from mesh.settings import Settings
from tests.cluster.rabbitmq_support import (
    NEEDS_RABBITMQ,
    audited_creations,
    count_writes,
    patient_body,
    patient_ids_in_database,
)
from tests.conftest import ALL_IDENTITIES, SECRETS, session_settings
from tests.gateway.support import EVERY_SERVICE, Mesh, Staff, initialise_and_unseal
from tests.processes import started
from tests.support.polling import until, until_sync

pytestmark = [pytest.mark.slow, NEEDS_RABBITMQ]

ISLAND, SUBNET = "mhrmq", 12
FAILED: tuple[type[BaseException], ...] = (TimeoutError, *amqp.BUS_UNAVAILABLE)
PAUSED_WITHIN_S = 45.0
"""`net_ticktime` (10 s) until the island's node sees its peers gone, then the pause."""
RETRYABLE = frozenset({502, 503, 504})
"""A clean, retryable refusal while the bus fails over (the client sends it again)."""
WRITES = 36
WORKERS = 3
ATTEMPTS = 60
RECOVERY_S = 60.0
"""How long every process may take to be reachable again on the majority."""
ISLAND_FIRST = ("services.records", "services.audit", "gateway")
"""The processes whose first node is the island's: the whole write path."""


@dataclass
class Partitioned:
    nodes: rabbitmq.Cluster
    net: netns.Island

    @property
    def island_node(self) -> rabbitmq.Node:
        return self.nodes.island_node

    @property
    def majority(self) -> tuple[rabbitmq.Node, ...]:
        return self.nodes.nodes[:-1]


@pytest.fixture(scope="module")
def partitioned() -> Iterator[Partitioned]:
    """Three nodes, the last on the island; everything (nodes, epmds, namespace, and with
    the nodes the vhosts and users on them) removed afterwards, cut or not."""
    why = netns.available()
    if why:
        pytest.skip(why)  # under CI a skip fails (conftest)
    # Under /tmp, not pytest's 0700 folders: the nodes run as the rabbitmq user.
    base = Path(tempfile.mkdtemp(prefix="mhtest-rmqpart-", dir="/tmp"))
    try:
        with netns.island(ISLAND, SUBNET) as net:
            try:
                yield Partitioned(rabbitmq.up(base, island=net), net)
            finally:
                rabbitmq.down(base)
    finally:
        rabbitmq.down(base)
        shutil.rmtree(base, ignore_errors=True)


def is_running(node: rabbitmq.Node) -> bool:
    """Whether the node's RabbitMQ application runs (False while paused)."""
    try:
        out = rabbitmq.ctl(node, "eval", "rabbit:is_running().", timeout_s=20, check=False)
    except subprocess.TimeoutExpired:
        return False
    return out.strip() == "true"


def members(node: rabbitmq.Node) -> str:
    """The cluster's running nodes as `node` sees them."""
    try:
        return rabbitmq.ctl(node, "eval", "rabbit_nodes:all_running().", timeout_s=20, check=False)
    except subprocess.TimeoutExpired:
        return ""


def connected_users(node: rabbitmq.Node, *, local: bool = False) -> str:
    """The broker users connected to the cluster as `node` sees it (`local`: to `node`
    itself). Not
    `rabbitmqctl list_connections`: the other nodes stream a listing straight to the CLI's
    own Erlang node, which those across the namespace cannot reach (it hangs); `eval`
    gathers on the node itself."""
    query = "[U || [{user, U}] <- rabbit_networking:connection_info_all([user])]."
    if local:
        query = (
            "[U || P <- rabbit_networking:connections_local(),"
            " [{user, U}] <- [rabbit_reader:info(P, [user])]]."
        )
    try:
        return rabbitmq.ctl(node, "eval", query, timeout_s=30, check=False)
    except subprocess.TimeoutExpired:
        return ""


PROBE = """
import socket, sys
s = socket.socket(); s.settimeout(3)
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print("open")
except OSError as exc:
    print(type(exc).__name__)
"""


def connect_from_inside(net: netns.Island, node: rabbitmq.Node) -> str:
    """A TCP connect to the node's AMQP port from inside its own namespace (the host's
    side would only see a black hole): `open` or the error's name."""
    done = subprocess.run(
        net.command([sys.executable, "-c", PROBE, node.host, str(node.port)]),
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return done.stdout.strip()


def island_member_state(node: rabbitmq.Node, queue: str) -> dict[str, str]:
    """The quorum queue's members as the island node reports them: name -> raft state."""
    done = subprocess.run(
        node.cli("rabbitmq-queues", "quorum_status", queue, "--formatter", "json"),
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **node.cli_env()},
        check=False,
    )
    if done.returncode != 0:
        return {}
    rows = json.loads(done.stdout)
    return {str(r["Node Name"]): str(r["Raft State"]) for r in rows}


@pytest.mark.timeout(300)
async def test_the_cut_off_node_pauses_and_the_majority_goes_on(
    partitioned: Partitioned,
) -> None:
    """pause_minority: the island's node stops accepting publishes (none confirmed after
    the cut, its listener closed once paused) while a confirming publisher on the
    majority goes on; healed, the node resumes as a member holding the queue's messages."""
    net, island_node = partitioned.net, partitioned.island_node
    first = partitioned.majority[0]
    user, password = f"mhtest-part-{secrets.token_hex(3)}", secrets.token_hex(12)
    rabbitmq.ctl(first, "add_user", user, password)
    rabbitmq.ctl(first, "set_permissions", "-p", "/", user, ".*", ".*", ".*")

    def url(node: rabbitmq.Node) -> str:
        return f"amqp://{user}:{password}@{node.address}/?heartbeat=5"

    queue = f"partition-{uuid.uuid4().hex[:6]}"
    majority = await aio_pika.connect(url(first), timeout=5)
    island = await aio_pika.connect(url(island_node), timeout=5)
    try:
        majority_channel = await majority.channel()
        await majority_channel.declare_queue(
            queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        island_channel = await island.channel()

        async def publish(channel: aio_pika.abc.AbstractChannel, body: str, wait_s: float) -> bool:
            """Whether the broker confirmed it within `wait_s`."""
            persistent = aio_pika.DeliveryMode.PERSISTENT
            message = aio_pika.Message(body.encode(), delivery_mode=persistent)
            try:
                await asyncio.wait_for(channel.default_exchange.publish(message, queue), wait_s)
            except FAILED:
                return False
            return True

        before = [f"before-{i}" for i in range(10)]
        for body in before:  # through the island's node while it is a member
            assert await publish(island_channel, body, 10)
        await asyncio.to_thread(rabbitmq.await_quorum_safe, island_node)

        majority_confirmed: list[str] = []
        majority_failed: list[str] = []
        stop = asyncio.Event()

        async def keep_publishing() -> None:
            i = 0
            while not stop.is_set():
                body = f"majority-{i}"
                if await publish(majority_channel, body, 10):
                    majority_confirmed.append(body)
                else:
                    majority_failed.append(body)
                i += 1
                await asyncio.sleep(0.05)

        publisher = asyncio.create_task(keep_publishing())
        try:
            await until(lambda: len(majority_confirmed) >= 5, 10)
            net.cut()
            cut_at = time.monotonic()
            island_confirmed: list[str] = []
            island_unconfirmed: list[str] = []
            paused_after: float | None = None
            i = 0
            while time.monotonic() - cut_at < PAUSED_WITHIN_S:
                body = f"island-{i}"
                i += 1
                if not island_channel.is_closed and await publish(island_channel, body, 2):
                    island_confirmed.append(body)
                else:
                    island_unconfirmed.append(body)
                if not await asyncio.to_thread(is_running, island_node):
                    paused_after = time.monotonic() - cut_at
                    break
            assert paused_after is not None, "the island's node did not pause"
            assert not island_confirmed, "the minority confirmed a publish"
            assert island_unconfirmed
            # paused: its AMQP listener is closed (seen from inside, where it is not cut)
            refused = await asyncio.to_thread(connect_from_inside, net, island_node)
            assert refused == "ConnectionRefusedError", refused
            confirmed_while_paused = len(majority_confirmed)
            await until(lambda: len(majority_confirmed) >= confirmed_while_paused + 10, 20)
            assert island_node.name not in await asyncio.to_thread(members, first)

            net.heal()
            healed_at = time.monotonic()
            assert await until(lambda: asyncio.to_thread(is_running, island_node), 60, 0.5)
            await until(
                lambda: asyncio.to_thread(lambda: island_node.name in members(first)), 60, 0.5
            )
            resumed_after = time.monotonic() - healed_at
            confirmed_at_heal = len(majority_confirmed)
            await until(lambda: len(majority_confirmed) >= confirmed_at_heal + 10, 20)
        finally:
            stop.set()
            await asyncio.wait_for(publisher, 30)
        assert not majority_failed, f"the majority refused {len(majority_failed)} publishes"

        # the island's member is back in the queue, and the island's node serves it all
        await until(
            lambda: asyncio.to_thread(
                lambda: (
                    island_member_state(island_node, queue).get(island_node.name)
                    in ("follower", "leader")
                )
            ),
            60,
            0.5,
        )
        again = await aio_pika.connect(url(island_node), timeout=5)
        try:
            channel = await again.channel()
            reading = await channel.declare_queue(queue, passive=True)
            seen: Counter[str] = Counter()
            while (message := await reading.get(fail=False, no_ack=True, timeout=10)) is not None:
                seen[message.body.decode()] += 1
        finally:
            await again.close()
        missing = set(before) | set(majority_confirmed)
        missing -= set(seen)
        late = [b for b in island_unconfirmed if b in seen]
        print(
            f"\nrabbitmq partition (pause_minority): island paused {paused_after:.1f} s after "
            f"the cut, resumed {resumed_after:.1f} s after the heal; majority publishes "
            f"confirmed {len(majority_confirmed)}, refused {len(majority_failed)}; island "
            f"publishes after the cut confirmed {len(island_confirmed)}, not confirmed "
            f"{len(island_unconfirmed)} (of which in the queue after all: {len(late)}); "
            f"confirmed messages missing {len(missing)}, delivered twice "
            f"{sum(n - 1 for n in seen.values())}"
        )
        assert not missing, f"{len(missing)} confirmed messages are not in the queue"
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(island.close(), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(majority.close(), 5)
        if net.is_cut:
            net.heal()


@contextlib.contextmanager
def split_mesh(
    settings: Settings, island_first: Settings, log_dir: Path, services: Sequence[str]
) -> Iterator[Mesh]:
    """The mesh with the `ISLAND_FIRST` processes connected to the island's node first,
    the others to the majority's."""
    host_services = [s for s in services if s not in ISLAND_FIRST]
    island_services = [s for s in services if s in ISLAND_FIRST]
    env = {"MEDIHAVEN_AMQP_NODES": island_first.amqp_nodes}
    with (
        started(host_services, settings, log_dir, {}, 90) as procs,
        started(island_services, settings, log_dir, env, 90) as more,
    ):
        procs.update(more)
        shares = initialise_and_unseal(settings)
        gateway_env = {"MEDIHAVEN_RATE_ANONYMOUS_CAPACITY": "10000"}
        if "gateway" in ISLAND_FIRST:
            gateway_env.update(env)
        with started(["gateway"], settings, log_dir, gateway_env, 90) as gateway:
            yield Mesh(settings, procs, gateway["gateway"], shares, log_dir)


@pytest.fixture(scope="module")
def world(partitioned: Partitioned, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The whole mesh on the partitioned cluster (its vhost and users go with the nodes)."""
    nodes = partitioned.nodes
    logs = tmp_path_factory.mktemp("rmqpartition")
    vhost = f"medihaven-test-partition-{uuid.uuid4().hex[:6]}"
    settings = session_settings(vhost, tag="rmqpart_").model_copy(
        update={"amqp_url": SecretStr(nodes.urls[0] + vhost), "amqp_nodes": nodes.addresses}
    )
    island_order = [partitioned.island_node, *partitioned.majority]
    island_first = settings.model_copy(
        update={"amqp_nodes": ",".join(n.address for n in island_order)}
    )
    first = nodes.nodes[0]
    # `rabbitmqctl` for these nodes needs their long names and epmd (mesh.broker's own env)
    with mock.patch.dict(os.environ, first.cli_env()):
        broker.provision(settings, SECRETS, ALL_IDENTITIES, node=first.name)
    with split_mesh(settings, island_first, logs, EVERY_SERVICE) as w:
        yield w


@dataclass
class Load:
    """Receptionists registering patients through the gateway, signed, each write with an
    idempotency key and sent again (the same key, a fresh signature) after a 502/503/504."""

    desk: Staff
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[int] = field(default_factory=Counter)
    created: dict[str, str] = field(default_factory=dict)
    unchecked: list[str] = field(default_factory=list)
    slow: list[str] = field(default_factory=list)

    def create(self, i: int) -> None:
        key = f"rmqpart-{self.tag}-{i:04d}"
        for _ in range(ATTEMPTS):
            started_at = time.monotonic()
            try:
                response = self.desk.client.request(
                    "POST", "/api/v1/patients", patient_body(i, self.tag), idempotency_key=key
                )
            except httpx.TimeoutException:
                with self.lock:
                    self.unchecked.append(f"{key}: the gateway did not answer in time")
                continue
            took = time.monotonic() - started_at
            code = response.status_code
            with self.lock:
                self.statuses[code] += 1
                if took > 10:
                    self.slow.append(f"{key}: {code} after {took:.1f} s")
                if code != 201 and code not in RETRYABLE:
                    self.unchecked.append(f"{key}: {code} {response.text[:300]}")
            if code == 201:
                with self.lock:
                    self.created[key] = response.json()["patient_id"]
                return
            if code not in RETRYABLE:
                return
            time.sleep(0.2)  # a client's retry pause (the same idempotency key)

    def writer(self, start: int) -> None:
        for i in range(start, WRITES, WORKERS):
            self.create(i)


def recovery_report(world: Mesh, survivor: rabbitmq.Node, health: httpx.Response | None) -> str:
    """What a failed recovery looked like: the mesh's answer, the broker's connections on
    the majority, and each process's last warnings."""
    parts = [f"mesh health: {health.status_code} {health.text}" if health else "no answer"]
    parts.append(f"connected users:\n{connected_users(survivor)}")
    for proc in [*world.procs.values(), world.gateway]:
        lines = [
            line
            for line in proc.log().splitlines()
            if "warning" in line.lower() or "error" in line.lower()
        ]
        parts.append(f"{proc.module} (last warnings):\n" + "\n".join(lines[-25:]))
    return "\n\n".join(parts)


@pytest.mark.timeout(600)
def test_cutting_a_node_off_under_load_loses_and_duplicates_nothing(
    partitioned: Partitioned, world: Mesh
) -> None:
    net, island_node, survivor = partitioned.net, partitioned.island_node, partitioned.majority[0]
    admin, desk = world.admin(), world.staff("receptionist")
    # the island-first processes really are on the island's node
    on_island = connected_users(island_node, local=True)
    for identity in ("gateway", "records", "audit"):
        assert world.settings.broker_user(identity) in on_island, on_island
    before = set(patient_ids_in_database(world))
    load = Load(desk)
    rabbitmq.await_quorum_safe(island_node)  # every quorum queue keeps its majority
    threads = [threading.Thread(target=load.writer, args=(s,)) for s in range(WORKERS)]
    for thread in threads:
        thread.start()
    try:
        assert until_sync(lambda: len(load.created) >= WRITES // 4, 60), load.statuses
        net.cut()
        cut_at = time.monotonic()
        for thread in threads:
            thread.join(240)
        written_in = time.monotonic() - cut_at
    finally:
        for thread in threads:
            thread.join(60)
    try:
        answered = sum(n for code, n in load.statuses.items() if code == 201)
        failed_cleanly = sum(n for code, n in load.statuses.items() if code in RETRYABLE)
        written = count_writes(world, admin, before, load.created, RETRYABLE)
        print(
            f"\nrabbitmq node cut off under load: {answered} answered, {failed_cleanly} failed "
            f"cleanly (502/503/504), {len(load.unchecked)} unchecked; {written.summary(WRITES)}"
            f"; all writes done {written_in:.1f} s after the "
            f"cut; statuses {dict(load.statuses)}; slower than 10 s: {load.slow[:5]}"
        )
        assert not load.unchecked, load.unchecked[:5]
        written.assert_whole(WRITES, load.created, load.statuses)
        verified = admin.client.request("GET", "/api/v1/audit/verify")
        assert verified.status_code == 200 and verified.json()["ok"], verified.text

        # every process, never restarted, is on the majority again
        for proc in [*world.procs.values(), world.gateway]:
            assert proc.popen.poll() is None, f"{proc.module} exited"
        health: list[httpx.Response] = []

        def mesh_healthy() -> bool:
            try:
                health.append(httpx.get(f"{world.url}/api/v1/health/mesh", timeout=10))
            except httpx.HTTPError:
                return False
            return health[-1].status_code == 200

        assert until_sync(mesh_healthy, RECOVERY_S, 0.5), recovery_report(
            world, survivor, health[-1] if health else None
        )
        print(f"mesh healthy again {time.monotonic() - cut_at:.1f} s after the cut")
        connected = connected_users(survivor)
        for identity in ("gateway", "auth", "records", "keyvault", "audit", "chat", "scheduling"):
            assert world.settings.broker_user(identity) in connected, connected
    finally:
        if net.is_cut:
            net.heal()

    # healed: the node resumes and rejoins; a write and its audit entry go through
    assert until_sync(lambda: is_running(island_node), 60, 0.5), "the island did not resume"
    assert until_sync(lambda: island_node.name in members(survivor), 60, 0.5)
    created = desk.client.request(
        "POST", "/api/v1/patients", patient_body(WRITES, load.tag), idempotency_key=uuid.uuid4().hex
    )
    assert created.status_code == 201, created.text
    patient_id = created.json()["patient_id"]
    assert until_sync(lambda: patient_id in audited_creations(admin, RETRYABLE), 30, 0.5)
    verified = admin.client.request("GET", "/api/v1/audit/verify")
    assert verified.status_code == 200 and verified.json()["ok"], verified.text
