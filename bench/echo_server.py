"""Server side of the RPC benchmark, in its own process (as a real service would be),
on uvloop as the services are (uvicorn picks it).

It answers two queues: a raw aio-pika echo (the baseline) and the same echo through the
shared runtime (`mesh.rpc`). Every benchmark that compares with the raw echo starts
this process; none runs the echo inside its client.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import aio_pika
import uvloop

from bench.echo_contract import RAW_QUEUE, make_router
from mesh.logging import configure_logging
from mesh.runtime import Runtime
from mesh.settings import get_settings


async def raw_echo_server(connection: aio_pika.abc.AbstractConnection) -> None:
    channel = await connection.channel(publisher_confirms=False)
    await channel.set_qos(prefetch_count=32)
    queue = await channel.declare_queue(RAW_QUEUE, auto_delete=True)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await channel.default_exchange.publish(
            aio_pika.Message(message.body, correlation_id=message.correlation_id),
            routing_key=message.reply_to or "",
            mandatory=False,
        )
        await message.ack()

    await queue.consume(on_message)


def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start this server as its own process (`env`: `tests.processes.process_env`);
    `wait_started` before using it."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.echo_server"],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        stdout=subprocess.PIPE,
    )


async def wait_started(server: subprocess.Popen[bytes]) -> None:
    assert server.stdout is not None
    if (await asyncio.to_thread(server.stdout.readline)).strip() != b"ready":
        raise RuntimeError("benchmark echo server did not start")


async def main() -> None:
    settings = get_settings()
    configure_logging("bench-echo", settings.model_copy(update={"log_level": "WARNING"}))
    runtime = await Runtime.start("benchecho", settings, router=make_router(), use_database=False)
    await raw_echo_server(runtime.connection)
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runtime.stop()


if __name__ == "__main__":
    uvloop.run(main())
    sys.exit(0)
