"""The shared RPC layer against a real RabbitMQ and MariaDB."""

from __future__ import annotations

import asyncio
import time
import uuid

import aio_pika
import pytest

from contracts.base import Principal, Role, RpcMethod, dead_letter_queue, rpc_queue
from contracts.common import PingReply, PingRequest, ping
from contracts.errors import ErrorCode
from mesh.errors import Conflict, Forbidden, InvalidRequest, NoRoute, RpcTimeout
from mesh.settings import Settings
from tests.conftest import isolated_settings
from tests.mesh.fixtures import (
    ECHO,
    FAIL,
    ONLY_PHYSICIANS,
    SERVICE,
    WRITE_NOTE,
    Counters,
    EchoReply,
    EchoRequest,
    NoteRequest,
    client_runtime,
    running_service,
)
from tests.support.polling import until


async def test_round_trip(settings: Settings) -> None:
    async with running_service(settings) as svc, client_runtime(settings) as client:
        reply = await client.rpc.call(ECHO, EchoRequest(text="hello"))
        assert reply.text == "hello"
        assert svc.server is not None and reply.instance == svc.server.instance
        pong = await client.rpc.call(ping(SERVICE), PingRequest())
        assert pong.service == SERVICE


async def test_deadline_expiry_drops_late_reply_and_never_starts_expired(
    settings: Settings,
) -> None:
    counters = Counters()
    async with (
        running_service(settings.model_copy(update={"rpc_prefetch": 1}), counters),
        client_runtime(settings) as client,
    ):
        started = time.monotonic()
        with pytest.raises(RpcTimeout):
            await client.rpc.call(ECHO, EchoRequest(text="slow", delay_s=0.6), timeout=0.2)
        assert time.monotonic() - started < 0.5
        # While the single slot is busy with "slow", this call waits in the queue and
        # expires there; the replica must never start it.
        with pytest.raises(RpcTimeout):
            await client.rpc.call(ECHO, EchoRequest(text="expired"), timeout=0.1)
        await until(lambda: "slow" in counters.finished)  # its late reply is dropped
        assert "expired" not in counters.started
        # The client is still healthy after a late reply arrived.
        assert (await client.rpc.call(ECHO, EchoRequest(text="after"))).text == "after"


async def test_no_consumer_fails_fast(settings: Settings) -> None:
    async with client_runtime(settings) as client:
        nowhere = RpcMethod("nosuchservice", "nosuchservice.x", EchoRequest, EchoReply)
        started = time.monotonic()
        with pytest.raises(NoRoute) as err:
            await client.rpc.call(nowhere, EchoRequest(text="x"), timeout=5)
        assert time.monotonic() - started < 1.0
        assert err.value.code is ErrorCode.no_route


async def test_service_gone_fails_fast(settings: Settings) -> None:
    """After the last replica stops, its queue is gone and calls fail at once."""
    async with client_runtime(settings) as client:
        async with running_service(settings):
            await client.rpc.call(ECHO, EchoRequest(text="up"))
        started = time.monotonic()
        with pytest.raises(NoRoute):
            await client.rpc.call(ECHO, EchoRequest(text="down"), timeout=5)
        assert time.monotonic() - started < 1.0


async def test_typed_errors_propagate(settings: Settings) -> None:
    async with running_service(settings), client_runtime(settings) as client:
        with pytest.raises(Conflict) as err:
            await client.rpc.call(FAIL, EchoRequest(text="09:00"))
        assert err.value.message == "slot taken"
        assert err.value.details == {"slot": "09:00"}
        with pytest.raises(Forbidden):
            await client.rpc.call(ONLY_PHYSICIANS, EchoRequest(text="x"))
        receptionist = Principal(account_id="r1", role=Role.receptionist)
        with pytest.raises(Forbidden):
            await client.rpc.call(ONLY_PHYSICIANS, EchoRequest(text="x"), principal=receptionist)
        physician = Principal(account_id="p1", role=Role.physician)
        ok = await client.rpc.call(ONLY_PHYSICIANS, EchoRequest(text="x"), principal=physician)
        assert ok.text == "x"


async def test_invalid_payload_gets_validation_error_and_consumer_survives(
    settings: Settings,
) -> None:
    async with running_service(settings), client_runtime(settings) as client:
        for body in (b'{"text": 5}', b'{"text": "' + b"x" * 500 + b'"}', b"[]", b'{"extra": 1}'):
            with pytest.raises(InvalidRequest) as err:
                await client.rpc.call_raw(rpc_queue(SERVICE), ECHO.name, body)
            assert err.value.details, "the reply names the invalid fields"
        assert (await client.rpc.call(ECHO, EchoRequest(text="alive"))).text == "alive"


async def test_unparseable_body_is_dead_lettered(settings: Settings) -> None:
    async with running_service(settings), client_runtime(settings) as client:
        with pytest.raises(Exception) as err:
            await client.rpc.call_raw(rpc_queue(SERVICE), ECHO.name, b"\xff\xfe not json")
        assert getattr(err.value, "code", None) is ErrorCode.bad_request
        channel = await client.connection.channel()
        dlq = await channel.declare_queue(dead_letter_queue(rpc_queue(SERVICE)), passive=True)
        message = await _get_with_retry(dlq)
        assert message.body == b"\xff\xfe not json"
        await message.ack()
        await channel.close()
        assert (await client.rpc.call(ECHO, EchoRequest(text="alive"))).text == "alive"


async def test_an_old_classic_dead_letter_queue_is_kept_and_still_used() -> None:
    """A broker that has `rpc.<service>.dlq` as the classic queue of earlier versions
    refuses its redeclaration as a quorum queue (406): the service starts anyway and keeps
    using the old one (and says how to replace it)."""
    with isolated_settings("classicdlq") as settings:
        async with client_runtime(settings) as client:
            channel = await client.connection.channel()
            name = dead_letter_queue(rpc_queue(SERVICE))
            await channel.declare_queue(name, durable=True)  # classic, as before
            async with running_service(settings):
                with pytest.raises(Exception) as err:
                    await client.rpc.call_raw(rpc_queue(SERVICE), ECHO.name, b"\xff not json")
                assert getattr(err.value, "code", None) is ErrorCode.bad_request
                dlq = await channel.declare_queue(name, durable=True)  # still classic
                assert (await _get_with_retry(dlq)).body == b"\xff not json"
                assert (await client.rpc.call(ECHO, EchoRequest(text="alive"))).text == "alive"
            await channel.close()


async def _get_with_retry(
    queue: aio_pika.abc.AbstractQueue,
) -> aio_pika.abc.AbstractIncomingMessage:
    for _ in range(50):
        message = await queue.get(fail=False)
        if message is not None:
            return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing arrived in {queue.name}")


async def test_write_with_same_idempotency_key_runs_once(settings: Settings) -> None:
    counters = Counters()
    async with running_service(settings, counters) as svc, client_runtime(settings) as client:
        key = str(uuid.uuid4())
        first = await client.rpc.call(WRITE_NOTE, NoteRequest(note="a"), idempotency_key=key)
        again = await client.rpc.call(WRITE_NOTE, NoteRequest(note="a"), idempotency_key=key)
        assert again == first and counters.note_runs == 1
        # Concurrent duplicates (as a redelivery racing the original): still one write.
        key2 = str(uuid.uuid4())
        replies = await asyncio.gather(
            *(
                client.rpc.call(WRITE_NOTE, NoteRequest(note="b"), idempotency_key=key2)
                for _ in range(5)
            )
        )
        assert len({r.note_id for r in replies}) == 1
        assert counters.note_runs == 2
        assert svc.db is not None
        rows = await svc.db.fetchall(
            "SELECT note FROM notes WHERE id IN (%s, %s) ORDER BY id",
            (first.note_id, replies[0].note_id),
        )
        assert [r[0] for r in rows] == ["a", "b"]
        dupes = await svc.db.fetchall(
            "SELECT COUNT(*) FROM notes WHERE id > %s AND note IN ('a', 'b')", (first.note_id,)
        )
        assert dupes[0][0] == 1  # only "b", written once
        # A key reused for a different request is refused, not silently answered.
        with pytest.raises(Conflict):
            await client.rpc.call(WRITE_NOTE, NoteRequest(note="other"), idempotency_key=key)
        # A write without a key is refused.
        with pytest.raises(Exception) as err:
            await client.rpc.call(WRITE_NOTE, NoteRequest(note="c"))
        assert getattr(err.value, "code", None) is ErrorCode.bad_request


async def test_redelivered_request_message_runs_once(settings: Settings) -> None:
    """The same request message published twice (as after a broker redelivery)."""
    counters = Counters()
    async with running_service(settings, counters), client_runtime(settings) as client:
        key = str(uuid.uuid4())
        body = NoteRequest(note="redelivered").model_dump_json().encode()
        replies = await asyncio.gather(
            client.rpc.call_raw(rpc_queue(SERVICE), WRITE_NOTE.name, body, idempotency_key=key),
            client.rpc.call_raw(rpc_queue(SERVICE), WRITE_NOTE.name, body, idempotency_key=key),
        )
        assert replies[0] == replies[1]
        assert counters.note_runs == 1


async def test_two_replicas_share_the_load(settings: Settings) -> None:
    async with (
        running_service(settings) as one,
        running_service(settings) as two,
        client_runtime(settings) as client,
    ):
        replies = await asyncio.gather(
            *(client.rpc.call(ECHO, EchoRequest(text=str(i), delay_s=0.01)) for i in range(200))
        )
        by_instance: dict[str, int] = {}
        for reply in replies:
            by_instance[reply.instance] = by_instance.get(reply.instance, 0) + 1
        assert one.server is not None and two.server is not None
        assert set(by_instance) == {one.server.instance, two.server.instance}
        assert min(by_instance.values()) >= 40, by_instance


async def test_graceful_shutdown_loses_no_in_flight_request(settings: Settings) -> None:
    counters = Counters()
    async with client_runtime(settings) as client:
        async with running_service(settings, counters) as svc:
            calls = [
                asyncio.create_task(
                    client.rpc.call(ECHO, EchoRequest(text=str(i), delay_s=0.5), timeout=5)
                )
                for i in range(20)
            ]
            while len(counters.started) < 20:
                await asyncio.sleep(0.01)
            # Stop while all 20 are being handled: they must all be answered.
            await svc.server.stop(grace_s=5)  # type: ignore[union-attr]
            svc.server = None
        replies = await asyncio.gather(*calls)
        assert sorted(r.text for r in replies) == sorted(str(i) for i in range(20))


async def test_ping_is_answered_by_every_runtime(settings: Settings) -> None:
    async with running_service(settings), client_runtime(settings) as client:
        reply = await client.rpc.call(ping(SERVICE), PingRequest())
        assert isinstance(reply, PingReply) and reply.instance.startswith(SERVICE)


async def test_gather_reaches_every_replica_and_instance_addresses_one(settings: Settings) -> None:
    async with (
        running_service(settings) as one,
        running_service(settings) as two,
        client_runtime(settings) as client,
    ):
        assert one.server is not None and two.server is not None
        replies = await client.rpc.gather(ping(SERVICE), PingRequest(), window_s=0.5)
        instances = {r.instance for r in replies if isinstance(r, PingReply)}
        assert instances == {one.server.instance, two.server.instance}
        for target in (one.server.instance, two.server.instance):
            for _ in range(5):
                reply = await client.rpc.call(ECHO, EchoRequest(text="x"), instance=target)
                assert reply.instance == target
        with pytest.raises(NoRoute):
            await client.rpc.call(ECHO, EchoRequest(text="x"), instance="gone-instance")
    async with client_runtime(settings) as client:
        assert await client.rpc.gather(ping("nosuchservice"), PingRequest(), window_s=0.2) == []
