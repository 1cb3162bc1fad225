"""Transactional outbox: events that belong to a database write.

`add_event` inserts the event in the caller's transaction, so it exists if and only if
the write committed. The relay claims unsent rows with `FOR UPDATE SKIP LOCKED` (so
replicas share the work without sending a row twice at once), publishes the batch with
confirms, then marks it sent. A crash after the publish and before the mark sends the
batch again: consumers de-duplicate by message id, which is `<database>:<row id>`.

On Galera the row locks of `SKIP LOCKED` hold on one node only. Replicas of a service
write through the same node (`mesh.db.Database`), so they share the work as on one
server; two relays that do meet on different nodes (during a move) may both publish a
row (the same message id, de-duplicated), and their marks conflict: one commits, the
other is rolled back and runs again, finding the rows sent.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar

from pydantic import BaseModel

from contracts.base import EventType
from mesh import db
from mesh.events import EventPublisher, context_headers
from mesh.logging import get_logger

log = get_logger("mesh.outbox")

EvT = TypeVar("EvT", bound=BaseModel)


async def add_event(conn: db.Connection, event: EventType[EvT], payload: EvT) -> int:
    """Record `payload` for publishing once the surrounding transaction commits."""
    async with conn.cursor() as cur:
        await cur.execute(
            "INSERT INTO mesh_outbox (routing_key, payload, headers) VALUES (%s, %s, %s)",
            (event.routing_key, payload.model_dump_json().encode(), json.dumps(context_headers())),
        )
        return int(cur.lastrowid)


class OutboxRelay:
    """Publishes committed outbox rows; one per service replica."""

    def __init__(
        self,
        database: db.Database,
        publisher: EventPublisher,
        *,
        poll_s: float = 0.5,
        batch: int = 200,
    ) -> None:
        self._db = database
        self._publisher = publisher
        self._poll_s = poll_s
        self._batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def notify(self) -> None:
        """Something was committed: publish now instead of at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while not self._stopping:
            try:
                sent = await self.relay_once()
            except Exception as exc:
                log.warning("outbox.relay_failed", error=str(exc))
                sent = 0
            if sent >= self._batch:
                continue  # more may be waiting
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll_s)
            except TimeoutError:
                pass

    async def relay_once(self) -> int:
        """Publish one batch of unsent rows; returns how many were sent."""
        async for attempt in self._db.transactions(read_committed=True):
            async with attempt as conn:
                rows = await db.fetchall(
                    conn,
                    "SELECT id, routing_key, payload, headers FROM mesh_outbox "
                    "WHERE sent_at IS NULL ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                    (self._batch,),
                )
                if not rows:
                    return 0
                await asyncio.gather(*(self._publish(row) for row in rows))
                ids = [row[0] for row in rows]
                placeholders = ",".join(["%s"] * len(ids))
                mark_sent = f"UPDATE mesh_outbox SET sent_at = NOW(6) WHERE id IN ({placeholders})"  # noqa: S608
                await db.execute(conn, mark_sent, ids)
        return len(rows)

    async def _publish(self, row: tuple[Any, ...]) -> None:
        row_id, routing_key, payload, headers = row
        await self._publisher.publish_raw(
            routing_key,
            bytes(payload),
            message_id=f"{self._db.name}:{row_id}",
            headers=json.loads(headers),
        )
