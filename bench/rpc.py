"""RPC round trip through the shared runtime vs. a raw aio-pika echo, same run.

Target (issue: mesh foundation): runtime throughput >= 80 % of raw, p50 <= 1.25x raw.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from pathlib import Path

import aio_pika

from bench import echo_server
from bench.common import (
    against_baseline,
    duration,
    print_table,
    write_results,
)
from bench.echo_contract import ECHO, RAW_QUEUE, Echo
from bench.namespace import namespace
from mesh.rpc import RpcClient
from mesh.settings import Settings
from tests.processes import process_env

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = "x" * 100


class RawClient:
    """The baseline: the least an aio-pika RPC client can do (direct reply-to, futures)."""

    def __init__(self, connection: aio_pika.abc.AbstractConnection, queue: str = RAW_QUEUE) -> None:
        self.connection = connection
        self.queue = queue
        self.pending: dict[str, asyncio.Future[bytes]] = {}
        self.ids = itertools.count()

    async def start(self) -> None:
        self.channel = await self.connection.channel(publisher_confirms=False)
        queue = await self.channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
        await queue.consume(self.on_reply, no_ack=True)

    async def on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        fut = self.pending.pop(message.correlation_id or "", None)
        if fut is not None:
            fut.set_result(message.body)

    async def call(self, body: bytes) -> bytes:
        cid = str(next(self.ids))
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending[cid] = fut
        await self.channel.default_exchange.publish(
            aio_pika.Message(body, correlation_id=cid, reply_to="amq.rabbitmq.reply-to"),
            routing_key=self.queue,
            mandatory=False,
        )
        return await asyncio.wait_for(fut, 5)


async def run(duration_s: float | None = None) -> Mapping[str, object]:
    duration_s = duration(duration_s if duration_s is not None else 3.0)
    with namespace("rpc") as settings:
        return await _run(settings, duration_s)


async def _run(settings: Settings, duration_s: float) -> Mapping[str, object]:
    server = echo_server.start(process_env(settings))
    try:
        await echo_server.wait_started(server)
        # Both clients share one connection as the benchmark's own broker user; the
        # runtime's client sets (and the broker checks) its user_id, as every service does.
        connection = await aio_pika.connect_robust(settings.amqp_url_for("testclient"))
        raw = RawClient(connection)
        await raw.start()
        mesh_client = RpcClient(
            connection,
            5.0,
            user_id=settings.broker_user("testclient"),
            user_of=settings.broker_user,
        )
        await mesh_client.start()
        body = Echo(text=PAYLOAD).model_dump_json().encode()
        request = Echo(text=PAYLOAD)
        rows, ratios = await against_baseline(
            ("raw aio-pika echo", lambda: raw.call(body)),
            ("mesh.rpc echo", lambda: mesh_client.call(ECHO, request)),
            duration_s,
        )
        print_table("RPC round trip (100-byte payload)", rows)
        for key, r in ratios.items():
            print(
                f"  {key}: throughput {r['throughput_ratio']:.0%} of raw (target >= 80%), "
                f"p50 {r['p50_ratio']:.2f}x raw (target <= 1.25x)"
            )
        await mesh_client.close()
        await connection.close()
        result = {"rows": rows, "ratios": ratios}
        print(f"  written: {write_results('rpc', result)}")
        return result
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    import uvloop

    uvloop.run(run())
