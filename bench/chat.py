"""Chat send-to-receive latency over the WebSocket with 50 connected clients, next to the
raw aio-pika echo measured in the same run.

Latency: from the sender's signed POST (the lean client, `bench.http`) until the
recipient's WebSocket notification, one message at a time, across 25 sender/recipient
pairs. Baseline: the raw aio-pika RPC echo round trip, its server in its own process
(`bench.echo_server`). Every run is in a namespace of its own (`bench.mesh`); the raw
echo connects as the bench's own broker user. (Audit ingestion: `bench.audit`.)
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Mapping
from typing import Any

import aio_pika
from websockets.asyncio.client import ClientConnection, connect

from bench import echo_server
from bench.common import duration, measure, pick, write_results
from bench.http import LeanHttp
from bench.mesh import bench_mesh, new_client
from bench.rpc import RawClient
from cli.sdk import MedihavenClient
from mesh.httpsig import sign_request
from tests.processes import process_env

SERVICES = ["services.keyvault", "services.auth", "services.chat", "services.audit"]
CLIENTS = 50
MESSAGES = 200


def clients() -> int:
    """Connected clients (quick mode: 4)."""
    return pick(CLIENTS, 4)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples) * 1000, samples[int(len(samples) * 0.99) - 1] * 1000


async def _raw_echo_p50(settings: Any) -> tuple[float, float]:
    server = echo_server.start(process_env(settings))
    try:
        await echo_server.wait_started(server)
        connection = await aio_pika.connect(settings.amqp_url_for("testclient"))
        client = RawClient(connection)
        await client.start()
        try:
            result = await measure(
                "raw echo", lambda: client.call(b"{}"), concurrency=1, duration_s=duration(2.0)
            )
        finally:
            await connection.close()
    finally:
        server.terminate()
        server.wait(15)
    return result.p50_ms, result.p99_ms


def _staff(base_url: str, admin: MedihavenClient, n: int) -> list[MedihavenClient]:
    clients = []
    for i in range(n):
        token = admin.post("/api/v1/tokens", {"role": "physician"})["token"]
        name = f"bench-{i}-{uuid.uuid4().hex[:4]}"
        clients.append(new_client(base_url, token, name, f"Bench {i}"))
    return clients


async def _open(client: MedihavenClient) -> ClientConnection:
    url = client.base_url.replace("http://", "ws://") + "/api/v1/ws"
    ws = await connect(
        url, additional_headers=sign_request(client.private_key, client.key_id, "GET", url, b"")
    )
    while json.loads(await ws.recv())["type"] != "ready":
        pass
    return ws


async def _chat_latency(base_url: str, admin_token: str) -> tuple[float, float]:
    admin = await asyncio.to_thread(new_client, base_url, admin_token, "bench-admin", "Admin")
    staff = await asyncio.to_thread(_staff, base_url, admin, clients())
    sockets = [await _open(c) for c in staff]
    pairs = []
    for sender, receiver in zip(staff[0::2], staff[1::2], strict=True):
        cid = sender.post("/api/v1/chat/direct", {"other_account_id": receiver.key_id})
        pairs.append((sender, cid["conversation_id"], sockets[staff.index(receiver)]))
    samples = []
    async with LeanHttp(base_url, timeout_s=10) as http:
        for i in range(pick(MESSAGES, 10)):
            sender, cid, inbox = pairs[i % len(pairs)]
            path = f"/api/v1/chat/conversations/{cid}/messages"
            body = json.dumps({"text": f"message {i}"}).encode()
            headers = sign_request(sender.private_key, sender.key_id, "POST", base_url + path, body)
            headers["Content-Type"] = "application/json"
            started = time.perf_counter()
            response = await http.request("POST", path, headers, body)
            assert response.status == 201, response.text
            while json.loads(await asyncio.wait_for(inbox.recv(), 10))["type"] != "message_sent":
                pass
            samples.append(time.perf_counter() - started)
    for ws in sockets:
        await ws.close()
    return _percentiles(samples)


async def run() -> Mapping[str, object]:
    async with bench_mesh(SERVICES, "chat") as bench:
        raw_p50, raw_p99 = await _raw_echo_p50(bench.settings)
        chat_p50, chat_p99 = await _chat_latency(bench.gateway.url, bench.admin_token)
    result = {
        "chat_ws_latency_ms": {"p50": chat_p50, "p99": chat_p99, "clients": clients()},
        "raw_echo_ms": {"p50": raw_p50, "p99": raw_p99},
        "chat_p50_over_raw_p50": chat_p50 / raw_p50,
    }
    print(
        f"\nChat over the WebSocket ({clients()} connected clients, {pick(MESSAGES, 10)} messages)"
    )
    print(
        f"  send-to-notify p50 {chat_p50:.2f} ms, p99 {chat_p99:.2f} ms; "
        f"raw aio-pika echo p50 {raw_p50:.3f} ms, p99 {raw_p99:.3f} ms "
        f"(chat p50 = {chat_p50 / raw_p50:.1f}x raw)"
    )
    print(f"  written: {write_results('chat_audit', result)}")
    return result


if __name__ == "__main__":
    import uvloop

    uvloop.run(run())
