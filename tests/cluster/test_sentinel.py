"""The gateway on a Redis Sentinel set (mesh/cluster/sentinel.py): its master killed with
`kill -9` under a small signed load, signed requests are refused cleanly (503) while no
master answers, never let through unchecked, and served again once Sentinel has promoted
a replica, without restarting anything; replay protection holds across the failover.

The services behind the gateway keep the session's own Redis (the keyvault's ledger);
only this gateway's nonces and token buckets live on the Sentinel set."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from redis import Redis

from gateway.ratelimit import nonce_key
from mesh.cluster import sentinel
from mesh.cluster.sentinel import SentinelSet
from mesh.errors import Unavailable
from mesh.redis import RedisLedger, create_redis
from mesh.settings import Settings
from tests.cluster.sentinel_support import Signed, gateway_through, replicated, send, signed_me
from tests.gateway.support import Mesh, Staff, mesh
from tests.processes import Process
from tests.support.polling import until, until_sync

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

FAILOVER_S = 30.0
"""Bound on Sentinel noticing the dead master and promoting a replica (about 2 s here)."""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with mesh("sentinel", tmp_path_factory.mktemp("sentinellogs")) as m:
        yield m


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    """A fresh set (1 master, 2 replicas, 3 Sentinels) per test, always stopped."""
    found = sentinel.up(tmp_path / "sentinel-set")
    try:
        yield found
    finally:
        sentinel.down(found.base_dir)


@pytest.fixture
def gateway(world: Mesh, sentinels: SentinelSet) -> Iterator[Process]:
    """A gateway of its own that finds its Redis through these Sentinels."""
    with gateway_through(world, sentinels) as proc:
        yield proc


def outcome(response: httpx.Response) -> str:
    """answered / refused (a clean 503 in words a clinic worker reads) / replayed (a clean
    401) / anything else, named."""
    if response.status_code == 200:
        return "answered"
    error = response.json().get("error", {})
    if response.status_code == 503 and error.get("code") == "unavailable":
        assert "try again in a few seconds" in error["message"], error
        assert response.headers["Retry-After"] == "5"
        return "refused"
    if response.status_code == 401 and error.get("details", {}).get("reason") == "replayed":
        return "replayed"
    return f"{response.status_code} {error}"


@dataclass
class Load:
    """Signed requests, one after another, each with a fresh signature, until stopped."""

    gateway: Process
    staff: Staff
    sent: list[Signed] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    slowest_refusal_s: float = 0.0

    def run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set():
                request = signed_me(self.gateway, self.staff)
                started = time.monotonic()
                result = outcome(send(http, request))
                self.outcomes[result] += 1
                if result == "refused":
                    self.slowest_refusal_s = max(self.slowest_refusal_s, time.monotonic() - started)
                self.sent.append(request)


def test_killing_the_redis_master_under_signed_load_refuses_cleanly_and_recovers(
    world: Mesh, sentinels: SentinelSet, gateway: Process
) -> None:
    staff = world.staff("physician")
    load = Load(gateway, staff)
    thread = threading.Thread(target=load.run, daemon=True)
    thread.start()
    http = httpx.Client(timeout=10)
    replays: Counter[str] = Counter()
    try:
        assert until_sync(lambda: load.outcomes["answered"] >= 20, 30), load.outcomes
        master = sentinel.agreed_master(sentinels)
        assert master == sentinels.master
        synced_at = time.monotonic()
        assert replicated(master, 2), "the replicas did not catch up with the master"
        # Answered before the sync point: their nonces are on every replica.
        protected = [r for r in list(load.sent) if r.status == 200 and r.answered_at < synced_at]
        sentinel.kill(sentinels, master)
        killed_at = time.monotonic()

        # During the failover: replays are refused (503: no master; or 401 once one is
        # back), never answered.
        def promoted() -> bool:
            for request in protected[-5:]:
                replays[outcome(send(http, request))] += 1
            new = sentinel.agreed_master(sentinels)
            return new is not None and new != master

        assert until_sync(promoted, FAILOVER_S, interval=0.05), "no replica was promoted"
        failed_over_s = time.monotonic() - killed_at
        # The gateway serves again without a restart: the load's requests are answered.
        answered = load.outcomes["answered"]
        assert until_sync(lambda: load.outcomes["answered"] >= answered + 20, FAILOVER_S)
        recovered_s = time.monotonic() - killed_at
    finally:
        load.stop.set()
        thread.join(15)
    # After the failover: every request answered before the sync point is still refused
    # as a replay (its nonce survived on the promoted replica).
    after = Counter(outcome(send(http, request)) for request in protected)
    first_refusal = min((r.answered_at for r in load.sent if r.status == 503), default=killed_at)
    first_answer_s = (
        min(r.answered_at for r in load.sent if r.status == 200 and r.answered_at > first_refusal)
        - killed_at
    )
    # Answered between the sync point and the kill: what asynchronous replication can
    # lose (docs/clustering.md). Measured, not replayed: a replay accepted here would be
    # exactly that documented loss, and the keyvault's ledger is what then stops it.
    at_risk = sum(
        1 for r in load.sent if r.status == 200 and synced_at <= r.answered_at <= killed_at
    )
    print(
        f"\nsentinel failover: load {dict(load.outcomes)}; replays during {dict(replays)}, "
        f"after {dict(after)}; promoted in {failed_over_s:.1f} s, first answer "
        f"{first_answer_s:.1f} s and 20 answers {recovered_s:.1f} s after the kill; "
        "answered after the sync point, before the "
        f"kill: {at_risk}; slowest refusal {load.slowest_refusal_s:.2f} s"
    )
    assert set(load.outcomes) <= {"answered", "refused"}, load.outcomes
    assert load.outcomes["refused"] >= 1, "the failover was never seen by the load"
    assert load.slowest_refusal_s < 5, "a refusal must be quick, not a hang"
    unchecked = replays["answered"] + after["answered"]
    assert unchecked == 0, (replays, after)
    assert set(replays) <= {"refused", "replayed"} and replays["refused"] >= 1, replays
    assert after == Counter(replayed=len(protected)), after
    # Nothing was restarted: the same gateway process served before and after.
    assert gateway.popen.poll() is None


def test_replay_protection_holds_for_nonces_written_after_a_failover(
    world: Mesh, sentinels: SentinelSet, gateway: Process
) -> None:
    staff = world.staff("receptionist")
    http = httpx.Client(timeout=10)
    assert outcome(send(http, signed_me(gateway, staff))) == "answered"
    old = sentinels.master
    sentinel.kill(sentinels, old)
    assert until_sync(
        lambda: sentinel.agreed_master(sentinels) not in (None, old), FAILOVER_S, interval=0.05
    ), "no replica was promoted"
    new = sentinel.agreed_master(sentinels)
    assert new is not None
    # The first signed request the new master answers (earlier ones may still meet 503).
    first: list[Signed] = []

    def served() -> bool:
        request = signed_me(gateway, staff)
        if outcome(send(http, request)) == "answered":
            first.append(request)
        return bool(first)

    assert until_sync(served, FAILOVER_S, interval=0.05), "not served after the failover"
    fresh = [first[0]]
    for _ in range(5):
        request = signed_me(gateway, staff)
        assert outcome(send(http, request)) == "answered"
        fresh.append(request)
    # Each is remembered on the promoted master, and refused when sent again.
    prefix = world.settings.redis_prefix
    with Redis(host=new[0], port=new[1], socket_timeout=5) as client:
        for request in fresh:
            nonce = request.headers["Signature-Input"].split('nonce="', 1)[1].split('"', 1)[0]
            assert client.exists(nonce_key(prefix, staff.account_id, nonce)) == 1
    assert [outcome(send(http, request)) for request in fresh] == ["replayed"] * len(fresh)
    # …and also by the remaining replica, should it be promoted next.
    assert replicated(new, 1)


async def test_keyvault_ledger_claims_held_by_a_replica_survive_the_masters_loss(
    sentinels: SentinelSet,
) -> None:
    """The keyvault's single-use store on a Sentinel set with `keyvault_ledger_acks=1`:
    a claim counts once a replica holds it, so the promoted replica still refuses a
    second use; with no replica left to acknowledge, claims are refused (closed)."""
    settings = Settings(
        redis_sentinels=sentinels.sentinels_setting,
        redis_sentinel_master=sentinels.master_name,
        keyvault_ledger_acks=1,
    )
    client = create_redis(settings)
    ledger = RedisLedger(client, "mhtest:sentinel-ledger:", ttl_s=60, acks=1)
    attempts = iter(range(1000))

    async def claimed_first() -> list[str] | None:
        """20 fresh claims, all held by a replica (a machine too loaded for the replicas
        to acknowledge within the ledger's 0.5 s refuses them: then 20 others)."""
        attempt = next(attempts)
        keys = [f"acc:nonce-{attempt}-{i}:keyvault.decrypt" for i in range(20)]
        answers = await asyncio.gather(*(ledger.claim(k) for k in keys), return_exceptions=True)
        if all(isinstance(a, Unavailable) for a in answers):
            return None
        assert answers == [True] * len(keys)
        return keys

    try:
        keys = await until(claimed_first, 30, interval=0.1)
        old = sentinels.master
        sentinel.kill(sentinels, old)

        async def claimed_again() -> list[bool] | None:
            try:
                return list(await asyncio.gather(*(ledger.claim(k) for k in keys)))
            except Unavailable:
                return None  # no master yet

        assert await until(claimed_again, FAILOVER_S, interval=0.05) == [False] * len(keys)
        new = sentinel.agreed_master(sentinels)
        assert new not in (None, old)
        (last,) = [r for r in sentinels.replicas if r != new]
        sentinel.kill(sentinels, last)
        with pytest.raises(Unavailable):
            await ledger.claim("acc:after-the-last-replica:keyvault.decrypt")
    finally:
        await client.aclose()


def test_the_command_line_starts_a_set_and_stops_exactly_it(tmp_path: Path) -> None:
    """`python -m mesh.cluster.sentinel up|down --dir D`, from processes of their own: the
    set outlives `up`, and `down` (which did not start it) stops every one of its six."""
    folder = tmp_path / "cli-set"
    run = [sys.executable, "-m", "mesh.cluster.sentinel"]
    try:
        up = subprocess.run([*run, "up", "--dir", str(folder)], capture_output=True, timeout=90)
        assert up.returncode == 0, up.stderr
        found = sentinel.load(folder)
        assert found is not None
        assert f"MEDIHAVEN_REDIS_SENTINELS={found.sentinels_setting}" in up.stdout.decode()
        assert 6379 not in {port for _, port in (found.master, *found.replicas, *found.sentinels)}
        assert sentinel.agreed_master(found) == found.master
        status = subprocess.run([*run, "status", "--dir", str(folder)], capture_output=True)
        assert status.stdout.decode().strip() == f"master: {found.master[0]}:{found.master[1]}"
    finally:
        down = subprocess.run([*run, "down", "--dir", str(folder)], capture_output=True)
    assert down.returncode == 0, down.stderr
    assert sentinel.load(folder) is None
    assert until_sync(lambda: not any(alive(pid) for pid in found.pids.values()), 15)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
