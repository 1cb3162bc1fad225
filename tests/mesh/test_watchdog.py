"""`mesh.watchdog` and the RPC server's use of it: a replica that has lost its consumer
(its queue deleted or gone with its node) consumes again, whatever aio-pika did."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable

import aio_pika
import pytest
from aio_pika.robust_channel import RobustChannel

from contracts.base import instance_queue, rpc_queue
from mesh import broker, watchdog
from mesh.errors import NoRoute, RpcTimeout, Unavailable
from mesh.settings import Settings
from tests.mesh.fixtures import ECHO, SERVICE, EchoRequest, client_runtime, running_service
from tests.support.polling import until

FAST = 0.01


def check(answers: list[bool | Exception]) -> Callable[[], Awaitable[bool]]:
    """A `consuming()` that gives `answers` in turn, then yes for ever."""

    async def consuming() -> bool:
        if not answers:
            return True
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return consuming


async def watch(
    answers: list[bool | Exception],
    *,
    connected: Callable[[], bool] = lambda: True,
    renewals_fail: int = 0,
) -> list[str]:
    """Run the watchdog until its answers are spent; what it did, in order."""
    done: list[str] = []
    failing = [renewals_fail]

    async def renew() -> None:
        if failing[0]:
            failing[0] -= 1
            done.append("renewal failed")
            raise RuntimeError("channel closed")
        done.append("renewed")

    task = asyncio.create_task(
        watchdog.keep_consuming(
            "q", connected=connected, consuming=check(answers), renew=renew, interval_s=FAST
        )
    )
    await until(lambda: not answers, 5, FAST)
    await asyncio.sleep(FAST * 5)  # a few more (yes) checks: nothing more happens
    await watchdog.stop(task)
    return done


async def test_one_miss_is_left_to_aio_pikas_own_recovery() -> None:
    assert await watch([False, True, False, True]) == []


async def test_two_misses_in_a_row_renew_once() -> None:
    assert await watch([False, False, True, True]) == ["renewed"]


async def test_a_check_that_cannot_be_made_counts_as_a_miss() -> None:
    assert await watch([RuntimeError("probe refused"), False]) == ["renewed"]


async def test_a_failed_renewal_is_tried_again_at_the_next_check() -> None:
    assert await watch([False, False, False, False], renewals_fail=1) == [
        "renewal failed",
        "renewed",
    ]


async def test_no_check_while_the_connection_is_down() -> None:
    """The robust connection's reconnection is at work then (it restores every channel)."""
    asked: list[bool] = []

    async def consuming() -> bool:
        asked.append(True)
        return False

    async def renew() -> None:
        raise AssertionError("renewed while disconnected")

    task = asyncio.create_task(
        watchdog.keep_consuming(
            "q", connected=lambda: False, consuming=consuming, renew=renew, interval_s=FAST
        )
    )
    await asyncio.sleep(FAST * 10)
    await watchdog.stop(task)
    assert asked == []


async def test_stopping_never_hangs_on_a_watchdog_stuck_in_the_broker() -> None:
    """A check or renewal that does not end when cancelled (a close the broker never
    answers) must not hold the service's stop."""
    release = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await release.wait()  # ignores the cancellation until released
            raise

    task = asyncio.create_task(stuck())
    await asyncio.sleep(0)
    started = asyncio.get_running_loop().time()
    await watchdog.stop(task, timeout_s=0.2)
    assert asyncio.get_running_loop().time() - started < 2
    release.set()
    await asyncio.wait({task}, timeout=5)
    assert task.done()


@pytest.fixture
def watched(settings: Settings) -> Settings:
    return settings.model_copy(update={"rpc_watch_s": 0.2})


@pytest.fixture
def no_aio_pika_recovery(monkeypatch: pytest.MonkeyPatch) -> None:
    """aio-pika's own restoration of a cancelled consumer, switched off: the case a CI
    run saw after a node loss (a request queue that nobody declared again)."""

    async def nothing(self: RobustChannel, channel: object) -> bool:
        return False

    monkeypatch.setattr(RobustChannel, "_restore_missing_consumers", nothing)


async def echo_again(client: object) -> str:
    """Call until the service answers (refusals while it has no queue are expected)."""
    answers: list[str] = []

    async def answered() -> bool:
        try:
            reply = await client.rpc.call(ECHO, EchoRequest(text="back"), timeout=1)  # type: ignore[attr-defined]
        except (NoRoute, RpcTimeout, Unavailable):
            return False
        answers.append(reply.text)
        return True

    await until(answered, 20, 0.1)
    return answers[0]


async def consumers_of(channel: aio_pika.abc.AbstractChannel, name: str) -> int:
    queue = await channel.declare_queue(name, passive=True)
    assert queue.declaration_result.consumer_count is not None
    return int(queue.declaration_result.consumer_count)


@pytest.mark.usefixtures("no_aio_pika_recovery")
async def test_a_replica_whose_request_queue_was_deleted_consumes_again(watched: Settings) -> None:
    async with running_service(watched) as svc, client_runtime(watched) as client:
        assert svc.server is not None
        admin = await client.connection.channel()
        await admin.queue_delete(rpc_queue(SERVICE))
        with pytest.raises(NoRoute):  # gone: the broker returns the call at once
            await client.rpc.call(ECHO, EchoRequest(text="gone"), timeout=1)
        assert await echo_again(client) == "back"
        assert await consumers_of(admin, rpc_queue(SERVICE)) == 1  # one, not two
        # its own queue (broadcasts, calls addressed to it; exclusive to its connection)
        # is consumed once too
        own = await svc.connection.channel()
        assert await consumers_of(own, instance_queue(SERVICE, svc.server.instance)) == 1
        await own.close()
        await admin.close()


async def test_with_aio_pikas_recovery_the_watchdog_adds_no_second_consumer(
    watched: Settings,
) -> None:
    async with running_service(watched) as svc, client_runtime(watched) as client:
        assert svc.server is not None
        admin = await client.connection.channel()
        await admin.queue_delete(rpc_queue(SERVICE))
        assert await echo_again(client) == "back"
        await asyncio.sleep(0.2 * 4)  # two watch intervals: time to misjudge, if it would
        assert await consumers_of(admin, rpc_queue(SERVICE)) == 1
        assert await client.rpc.call(ECHO, EchoRequest(text="still")) is not None
        await admin.close()


async def test_a_healthy_replica_is_never_renewed(watched: Settings) -> None:
    async with running_service(watched) as svc, client_runtime(watched) as client:
        assert svc.server is not None
        channel = svc.server._channel
        await asyncio.sleep(0.2 * 4)
        assert svc.server._channel is channel
        assert (await client.rpc.call(ECHO, EchoRequest(text="x"))).text == "x"


def orphan(settings: Settings, name: str) -> None:
    """Delete a queue's record from the broker and leave its process running, with its
    consumers: what a node's loss can leave behind (the broker's own clean-up deletes
    records by name). An orphan is unroutable, and when its last consumer leaves it
    deletes whatever record then holds its name."""
    vhost = broker.vhost_of(settings).replace('"', "")
    expression = (
        f'rabbit_amqqueue:internal_delete(rabbit_misc:r(<<"{vhost}">>, queue, <<"{name}">>), '
        '<<"medihaven-tests">>).'
    )
    subprocess.run(
        ["rabbitmqctl", "-q", "eval", expression], check=True, capture_output=True, timeout=60
    )


async def test_a_replica_consuming_an_orphaned_queue_recovers_for_good(
    watched: Settings,
) -> None:
    """The renewal must leave the orphan before declaring the queue again: declared
    first, each new queue lost its record when the old channel closed, and the replica
    renewed for good with its queue unroutable (a CI run, chat, after a node kill)."""
    async with running_service(watched) as svc, client_runtime(watched) as client:
        assert svc.server is not None
        orphan(watched, rpc_queue(SERVICE))
        with pytest.raises(NoRoute):  # no record: nothing routes to it
            await client.rpc.call(ECHO, EchoRequest(text="gone"), timeout=1)
        assert await echo_again(client) == "back"
        admin = await client.connection.channel()
        assert await consumers_of(admin, rpc_queue(SERVICE)) == 1
        renewed = svc.server._channel
        # Several watch intervals with the queue there each time and no further renewal.
        for _ in range(6):
            await asyncio.sleep(0.2)
            assert await consumers_of(admin, rpc_queue(SERVICE)) == 1
        assert svc.server._channel is renewed
        assert (await client.rpc.call(ECHO, EchoRequest(text="kept"))).text == "kept"
        await admin.close()
