"""What the Sentinel tests share (test_sentinel.py, test_sentinel_partition.py): a gateway
of their own on a Sentinel set, signed requests kept to be replayed, and a sync point
with the replicas."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from redis import Redis

from mesh.cluster.sentinel import SentinelSet
from mesh.httpsig import sign_request
from tests.gateway.support import Mesh, Staff
from tests.processes import Process


@contextmanager
def gateway_through(world: Mesh, found: SentinelSet) -> Iterator[Process]:
    """A gateway of its own that finds its Redis through `found`'s Sentinels (the rest of
    the mesh keeps the session's Redis), stopped afterwards."""
    proc = world.extra_gateway(
        MEDIHAVEN_REDIS_SENTINELS=found.sentinels_setting,
        MEDIHAVEN_REDIS_SENTINEL_MASTER=found.master_name,
        MEDIHAVEN_RATE_GENERAL_CAPACITY="100000",  # the load is not what is limited here
    )
    try:
        yield proc
    finally:
        proc.stop()


@dataclass
class Signed:
    """One signed request (its headers kept, to replay it)."""

    url: str
    headers: dict[str, str]
    status: int = 0
    answered_at: float = 0.0


def signed_me(gateway: Process, staff: Staff) -> Signed:
    url = f"{gateway.url}/api/v1/me"
    headers = sign_request(staff.client.private_key, staff.account_id, "GET", url, b"")
    return Signed(url, headers)


def send(http: httpx.Client, request: Signed) -> httpx.Response:
    response = http.get(request.url, headers=request.headers)
    request.status, request.answered_at = response.status_code, time.monotonic()
    return response


def replicated(address: tuple[str, int], replicas: int) -> bool:
    """A sync point: every write the master took before this call has reached `replicas`
    replicas (a write of our own, then WAIT on the same connection)."""
    with Redis(host=address[0], port=address[1], socket_timeout=5) as client:
        client.set("sync-point", str(time.time()))
        return int(client.execute_command("WAIT", replicas, 5000)) >= replicas
