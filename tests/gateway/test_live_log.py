"""The live log's event ids never go backwards, also across a lossy Redis failover.

Two real `redis-server`s, the second a replica of the first. The replica is promoted
(`REPLICAOF NO ONE`, what Sentinel does) while the old master still takes a few appends
that never reach it, as when a master cut off by the network goes on for a moment before
it is deposed. Those ids were handed out, and pushed to connections and followers, so
the promoted server's next id must be past them. Before, it counted on from the last id
it had received: it handed out the very same ids again, and every connection that had
had them skipped the new entries as already delivered.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.live import LiveLog
from tests.support.polling import until

REDIS_SERVER = shutil.which("redis-server")
pytestmark = [
    pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed"),
    pytest.mark.timeout(60),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server(folder: Path, *extra: str) -> Iterator[int]:
    """A throwaway `redis-server` on a free port (no persistence), always stopped."""
    assert REDIS_SERVER is not None
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)]
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), *options, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest_asyncio.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Redis, Redis]]:
    """A master and its replica, linked and in sync."""
    with redis_server(tmp_path / "master") as master_port:
        master = Redis(host="127.0.0.1", port=master_port)
        await until(_answers(master), timeout=15)
        replica_of = ("--replicaof", "127.0.0.1", str(master_port))
        with redis_server(tmp_path / "replica", *replica_of) as replica_port:
            replica = Redis(host="127.0.0.1", port=replica_port)
            try:
                await until(_answers(replica), timeout=15)
                await until(lambda: _linked(replica), timeout=15)
                yield master, replica
            finally:
                await master.aclose()
                await replica.aclose()


def _answers(client: Redis) -> Callable[[], Awaitable[bool]]:
    async def ping() -> bool:
        try:
            return bool(await client.ping())
        except (RedisError, OSError):  # still starting
            return False

    return ping


async def _linked(replica: Redis) -> bool:
    info = await replica.info("replication")
    return bool(info.get("master_link_status") == "up")


async def _append(log: LiveLog, n: int) -> list[int]:
    return [await log.append(uuid.uuid4().hex, ["acc"], [], {"type": "t"}) for _ in range(n)]


async def test_ids_handed_out_by_a_deposed_master_are_never_handed_out_again(
    pair: tuple[Redis, Redis],
) -> None:
    master, replica = pair
    prefix = "mhtest:livelog:"
    old = LiveLog(master, prefix)
    first = await _append(old, 3)
    assert first == list(range(first[0], first[0] + 3))  # one after another while it lasts
    assert await master.wait(1, 5000) == 1  # the replica holds them

    await replica.replicaof("NO", "ONE")  # promoted
    lost = await _append(old, 2)  # the deposed master's last appends, never replicated
    assert lost == [first[-1] + 1, first[-1] + 2]
    handed_out = max(lost)

    new = LiveLog(replica, prefix)
    assert await new.head() == first[-1]  # what it received: the two are lost to it
    after = await _append(new, 3)
    assert after[0] > handed_out, (after, handed_out)
    assert after == list(range(after[0], after[0] + 3))  # and one after another again
    # A follower (or a connection) that had the lost ids reads on from there and gets
    # every entry the new master logs.
    assert [e.event_id for e in await new.read(handed_out)] == after
    assert [e.event_id for e in await new.tail(handed_out)] == after
