"""Chat send-to-receive latency over the WebSocket with 50 connected clients, and audit
ingestion rate, each next to a raw aio-pika baseline measured in the same run.

Latency: from the sender's signed POST until the recipient's WebSocket notification, one
message at a time, across 25 sender/recipient pairs. Baseline: the raw aio-pika RPC echo
round trip (bench.rpc). Audit: N audit events published with confirms, timed until the
audit service has stored them all in its hash chain, against publishing N persistent,
confirmed messages to a plain queue.
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
import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.common import measure, write_results
from bench.mesh import bench_mesh
from bench.rpc import RawClient
from cli import keys
from cli.sdk import MedihavenClient, register
from contracts.audit import AuditAction, AuditOutcome
from mesh import audit
from mesh.db import Database
from mesh.httpsig import sign_request
from tests.mesh.fixtures import client_runtime

SERVICES = ["services.keyvault", "services.auth", "services.chat", "services.audit"]
CLIENTS = 50
MESSAGES = 200
AUDIT_EVENTS = 2000


def _percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples) * 1000, samples[int(len(samples) * 0.99) - 1] * 1000


async def _raw_echo_p50(settings: Any) -> tuple[float, float]:
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    channel = await connection.channel(publisher_confirms=False)
    queue = await channel.declare_queue("bench.chat-echo", auto_delete=True)

    async def echo(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await channel.default_exchange.publish(
            aio_pika.Message(message.body, correlation_id=message.correlation_id),
            message.reply_to or "",
            mandatory=False,
        )
        await message.ack()

    await queue.consume(echo)
    client = RawClient(connection, queue.name)
    await client.start()
    try:
        result = await measure("raw echo", lambda: client.call(b"{}"), concurrency=1, duration_s=2)
    finally:
        await connection.close()
    return result.p50_ms, result.p99_ms


def _staff(base_url: str, admin: MedihavenClient, n: int) -> list[MedihavenClient]:
    clients = []
    for i in range(n):
        token = admin.post("/api/v1/tokens", {"role": "physician"})["token"]
        key = keys.generate()
        account = register(
            base_url,
            key,
            token=token,
            username=f"bench-{i}-{uuid.uuid4().hex[:4]}",
            display_name=f"Bench {i}",
            public_key=keys.public_key_b64(key),
        )
        clients.append(MedihavenClient(base_url, str(account["account_id"]), key))
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
    admin_key = keys.generate()
    account = await asyncio.to_thread(
        register,
        base_url,
        admin_key,
        token=admin_token,
        username="bench-admin",
        display_name="Admin",
        public_key=keys.public_key_b64(admin_key),
    )
    admin = MedihavenClient(base_url, str(account["account_id"]), admin_key)
    staff = await asyncio.to_thread(_staff, base_url, admin, CLIENTS)
    sockets = [await _open(c) for c in staff]
    pairs = []
    for sender, receiver in zip(staff[0::2], staff[1::2], strict=True):
        cid = sender.post("/api/v1/chat/direct", {"other_account_id": receiver.key_id})
        pairs.append((sender, cid["conversation_id"], sockets[staff.index(receiver)]))
    samples = []
    async with httpx.AsyncClient(timeout=10) as http:
        for i in range(MESSAGES):
            sender, cid, inbox = pairs[i % len(pairs)]
            url = f"{base_url}/api/v1/chat/conversations/{cid}/messages"
            body = json.dumps({"text": f"message {i}"}).encode()
            headers = sign_request(sender.private_key, sender.key_id, "POST", url, body)
            headers["Content-Type"] = "application/json"
            started = time.perf_counter()
            response = await http.post(url, content=body, headers=headers)
            assert response.status_code == 201, response.text
            while json.loads(await asyncio.wait_for(inbox.recv(), 10))["type"] != "message_sent":
                pass
            samples.append(time.perf_counter() - started)
    for ws in sockets:
        await ws.close()
    return _percentiles(samples)


async def _count(database: Database) -> int:
    row = await database.fetchone("SELECT COUNT(*) FROM audit_log")
    return int(row[0]) if row else 0


async def _stored(database: Database, total: int) -> None:
    """Poll until the audit chain holds `total` entries (the service writes in its process)."""
    while await _count(database) < total:  # noqa: ASYNC110 - another process fills the table
        await asyncio.sleep(0.05)


async def _audit_rates(settings: Any) -> tuple[float, float]:
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    channel = await connection.channel(publisher_confirms=True)
    queue = await channel.declare_queue(f"bench.raw-publish-{uuid.uuid4().hex[:6]}", durable=True)
    body = (
        audit.make_event("bench", "bench.raw", AuditAction.read, AuditOutcome.success)
        .model_dump_json()
        .encode()
    )
    started = time.perf_counter()
    await asyncio.gather(
        *(
            channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), queue.name
            )
            for _ in range(AUDIT_EVENTS)
        )
    )
    raw_rate = AUDIT_EVENTS / (time.perf_counter() - started)
    await queue.delete(if_unused=False, if_empty=False)
    await connection.close()

    database = await Database.connect(settings, settings.database("audit"))
    try:
        before = await _count(database)
        async with client_runtime(settings, "bench-audit") as publisher:
            events = [
                audit.make_event(
                    "bench",
                    "bench.read",
                    AuditAction.read,
                    AuditOutcome.success,
                    patient_id=f"p{i % 50}",
                )
                for i in range(AUDIT_EVENTS)
            ]
            started = time.perf_counter()
            await asyncio.gather(*(audit.record(publisher, e) for e in events))
            await _stored(database, before + AUDIT_EVENTS)
            ingest_rate = AUDIT_EVENTS / (time.perf_counter() - started)
    finally:
        await database.close()
    return raw_rate, ingest_rate


async def run() -> Mapping[str, object]:
    async with bench_mesh(SERVICES) as bench:
        raw_p50, raw_p99 = await _raw_echo_p50(bench.settings)
        chat_p50, chat_p99 = await _chat_latency(bench.gateway.url, bench.admin_token)
        raw_rate, ingest_rate = await _audit_rates(bench.settings)
    result = {
        "chat_ws_latency_ms": {"p50": chat_p50, "p99": chat_p99, "clients": CLIENTS},
        "raw_echo_ms": {"p50": raw_p50, "p99": raw_p99},
        "chat_p50_over_raw_p50": chat_p50 / raw_p50,
        "audit_ingest_per_s": ingest_rate,
        "raw_publish_per_s": raw_rate,
        "audit_over_raw_publish": ingest_rate / raw_rate,
    }
    print(f"\nChat over the WebSocket ({CLIENTS} connected clients, {MESSAGES} messages)")
    print(
        f"  send-to-notify p50 {chat_p50:.2f} ms, p99 {chat_p99:.2f} ms; "
        f"raw aio-pika echo p50 {raw_p50:.3f} ms, p99 {raw_p99:.3f} ms "
        f"(chat p50 = {chat_p50 / raw_p50:.1f}x raw)"
    )
    print(
        f"Audit ingestion: {ingest_rate:.0f} events/s stored in the chain vs raw confirmed "
        f"publish {raw_rate:.0f} msg/s ({ingest_rate / raw_rate:.0%})"
    )
    print(f"  written: {write_results('chat_audit', result)}")
    return result


if __name__ == "__main__":
    asyncio.run(run())
