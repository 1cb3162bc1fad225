"""The transactional outbox on a real MariaDB: an event exists if and only if its write
committed; the relay publishes each row with a stable message id, sends a batch again
after a crash between publish and mark (consumers de-duplicate by that id), and two
replicas' relays never publish the same row at the same time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from contracts.base import EventType, Model
from mesh import db, outbox
from mesh.migrations import apply_migrations
from mesh.settings import Settings


class Noted(Model):
    n: int


NOTED = EventType("testsvc.noted", Noted)


class Recorder:
    """Stands in for the broker publisher (the relay's own logic is under test here; the
    path through a real broker is tested in tests/mesh/test_events.py)."""

    def __init__(self, *, fail_after: int | None = None, gate: asyncio.Event | None = None):
        self.sent: list[tuple[str, str, bytes]] = []
        self.fail_after = fail_after
        self.gate = gate
        self.entered = asyncio.Event()
        """Set when its relay has claimed rows and starts publishing them."""

    async def publish_raw(
        self, routing_key: str, body: bytes, *, message_id: str, headers: dict[str, Any]
    ) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        self.sent.append((message_id, routing_key, body))
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise ConnectionError("broker gone after the publish, before the mark")


@pytest_asyncio.fixture
async def database(settings: Settings) -> AsyncIterator[db.Database]:
    name = f"{settings.db_prefix}outbox_{uuid.uuid4().hex[:8]}"
    await db.ensure_database(settings, name)
    await apply_migrations(settings, name)  # the runtime's own tables
    database = await db.Database.connect(settings, name)
    try:
        yield database
    finally:
        await database.close()


def relay(database: db.Database, publisher: Recorder, batch: int = 200) -> outbox.OutboxRelay:
    return outbox.OutboxRelay(database, publisher, batch=batch)  # type: ignore[arg-type]


async def add(database: db.Database, *numbers: int) -> None:
    async with database.transaction() as conn:
        for n in numbers:
            await outbox.add_event(conn, NOTED, Noted(n=n))


async def test_an_event_exists_only_if_its_write_committed(database: db.Database) -> None:
    await add(database, 1)
    with pytest.raises(RuntimeError):
        async with database.transaction() as conn:
            await outbox.add_event(conn, NOTED, Noted(n=2))
            raise RuntimeError("the write failed")
    publisher = Recorder()
    assert await relay(database, publisher).relay_once() == 1
    assert [Noted.model_validate_json(body).n for _, _, body in publisher.sent] == [1]
    message_id, routing_key, _ = publisher.sent[0]
    assert routing_key == "testsvc.noted"
    assert message_id.startswith(f"{database.name}:")
    assert await relay(database, publisher).relay_once() == 0  # marked sent


async def test_a_crash_between_publish_and_mark_sends_the_same_ids_again(
    database: db.Database,
) -> None:
    await add(database, 1, 2, 3)
    crashed = Recorder(fail_after=3)
    with pytest.raises(ConnectionError):
        await relay(database, crashed).relay_once()
    again = Recorder()
    assert await relay(database, again).relay_once() == 3
    assert sorted(m for m, _, _ in again.sent) == sorted(m for m, _, _ in crashed.sent)
    assert await relay(database, Recorder()).relay_once() == 0


async def test_two_relays_never_publish_the_same_row_at_once(
    settings: Settings, database: db.Database
) -> None:
    await add(database, *range(60))
    other_replica = await db.Database.connect(settings, database.name)
    gate = asyncio.Event()
    first, second = Recorder(gate=gate), Recorder(gate=gate)

    claims = asyncio.gather(
        relay(database, first, batch=30).relay_once(),
        relay(other_replica, second, batch=30).relay_once(),
    )
    try:
        # both relays claim while neither has published: SKIP LOCKED splits the rows
        await asyncio.wait_for(asyncio.gather(first.entered.wait(), second.entered.wait()), 20)
        gate.set()
        counts = await asyncio.wait_for(claims, 20)
    finally:
        gate.set()  # never leave a relay waiting (its connection would block the close)
        await asyncio.gather(claims, return_exceptions=True)
        await other_replica.close()
    assert sorted(counts) == [30, 30]
    ids = [m for m, _, _ in first.sent + second.sent]
    assert len(ids) == len(set(ids)) == 60
    assert await relay(database, Recorder()).relay_once() == 0
