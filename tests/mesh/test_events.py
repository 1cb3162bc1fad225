"""Events, consumer groups and the transactional outbox against real RabbitMQ and MariaDB."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from pathlib import Path

from mesh import db, outbox
from mesh.db import Sql
from mesh.events import ReceivedEvent, process_once
from mesh.runtime import ConsumerSpec, Runtime
from mesh.settings import Settings
from tests.mesh.fixtures import (
    NOTE_WRITTEN,
    WRITE_NOTE,
    NoteRequest,
    NoteWritten,
    client_runtime,
    running_service,
)
from tests.support.polling import until

ROOT = Path(__file__).resolve().parents[2]


def recorder(seen: list[tuple[str, str]], group: str):  # type: ignore[no-untyped-def]
    def make(_: Runtime):  # type: ignore[no-untyped-def]
        async def handle(event: ReceivedEvent[NoteWritten]) -> None:
            seen.append((group, event.payload.note))

        return handle

    return make


def marker(tag: str) -> str:
    """The note of a last event written after the ones a test counts: events reach a
    consumer in the order they were published, so once it has the marker, it has had
    everything published before it, a second delivery included (no waiting for nothing)."""
    return f"end-{tag}"


async def write_marker(client: Runtime, tag: str) -> None:
    note = marker(tag)
    await client.rpc.call(WRITE_NOTE, NoteRequest(note=note), idempotency_key=note)


def without_markers(seen: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted((who, note) for who, note in seen if not note.startswith("end-"))


async def test_event_reaches_two_independent_consumer_groups(settings: Settings) -> None:
    seen: list[tuple[str, str]] = []
    tag = uuid.uuid4().hex[:6]
    groups = [f"alpha-{tag}", f"beta-{tag}"]
    consumers = [ConsumerSpec(g, [NOTE_WRITTEN], recorder(seen, g)) for g in groups]
    async with (
        running_service(settings, consumers=consumers),
        client_runtime(settings) as client,
    ):
        await client.rpc.call(WRITE_NOTE, NoteRequest(note=f"n-{tag}"), idempotency_key=tag)
        await write_marker(client, tag)
        await until(lambda: {g for g, n in seen if n == marker(tag)} == set(groups))
        assert without_markers(seen) == sorted((g, f"n-{tag}") for g in groups)


async def test_two_replicas_of_a_group_compete(settings: Settings) -> None:
    seen: list[tuple[str, str]] = []
    group = f"shared-{uuid.uuid4().hex[:6]}"

    def by_replica(runtime: Runtime):  # type: ignore[no-untyped-def]
        async def handle(event: ReceivedEvent[NoteWritten]) -> None:
            seen.append((runtime.instance, event.payload.note))

        return handle

    spec = [ConsumerSpec(group, [NOTE_WRITTEN], by_replica)]
    async with (
        running_service(settings, consumers=spec),
        running_service(settings, consumers=spec),
        client_runtime(settings) as client,
    ):
        for i in range(20):
            await client.rpc.call(
                WRITE_NOTE, NoteRequest(note=str(i)), idempotency_key=f"{group}{i}"
            )
        # Markers (see `marker`) until each replica has had one: then each has had all
        # that was delivered to it before, a second delivery of a note included.
        replicas: set[str] = set()
        for i in range(40):
            tag = f"{group}-{i}"
            await write_marker(client, tag)

            def got_it(note: str = marker(tag)) -> set[str]:
                return {who for who, n in seen if n == note}

            replicas |= await until(got_it)
            if len(replicas) == 2:
                break
        assert len(replicas) == 2, "one replica never got an event"
        assert sorted(n for _, n in without_markers(seen)) == sorted(str(i) for i in range(20))


async def test_a_group_in_order_is_taken_by_one_replica_at_a_time_in_publish_order(
    settings: Settings,
) -> None:
    """(ConsumerSpec.in_order, the gateway's live log) Two replicas of a group, 30 events:
    one replica handles them all, in the order they were published; when it stops, the
    other takes over, still in order."""
    seen: list[tuple[str, str]] = []
    group = f"ordered-{uuid.uuid4().hex[:6]}"

    def by_replica(runtime: Runtime):  # type: ignore[no-untyped-def]
        async def handle(event: ReceivedEvent[NoteWritten]) -> None:
            await asyncio.sleep(0)  # a handler that awaits, as the live log's does
            seen.append((runtime.instance, event.payload.note))

        return handle

    spec = [ConsumerSpec(group, [NOTE_WRITTEN], by_replica, prefetch=1, in_order=True)]
    async with client_runtime(settings) as client, running_service(settings, consumers=spec):
        async with running_service(settings, consumers=spec) as second:
            for i in range(30):
                await client.rpc.call(
                    WRITE_NOTE, NoteRequest(note=str(i)), idempotency_key=f"{group}{i}"
                )
            await until(lambda: len(seen) >= 30, timeout=20)
            assert [n for _, n in seen] == [str(i) for i in range(30)]
            assert len({who for who, _ in seen}) == 1, "two replicas took from the group"
            active = seen[0][0]
        # the one that stopped was either; after it, one replica goes on, in order
        for i in range(30, 40):
            await client.rpc.call(
                WRITE_NOTE, NoteRequest(note=str(i)), idempotency_key=f"{group}{i}"
            )
        await until(lambda: len(seen) >= 40, timeout=20)
        assert [n for _, n in seen] == [str(i) for i in range(40)]
        if active == second.instance:
            assert {who for who, _ in seen[30:]} != {active}


async def test_a_group_declared_before_in_order_existed_is_still_consumed(
    settings: Settings,
) -> None:
    """A broker that has the group's queue from an earlier version (no single active
    consumer) refuses the new arguments: the queue is used as it is, never left unread."""
    seen: list[tuple[str, str]] = []
    group = f"upgraded-{uuid.uuid4().hex[:6]}"
    old = [ConsumerSpec(group, [NOTE_WRITTEN], recorder(seen, "old"))]
    new = [ConsumerSpec(group, [NOTE_WRITTEN], recorder(seen, "new"), in_order=True)]
    async with client_runtime(settings) as client:
        async with running_service(settings, consumers=old):
            pass  # the durable queue stays, with the old arguments
        async with running_service(settings, consumers=new):
            await client.rpc.call(WRITE_NOTE, NoteRequest(note=group), idempotency_key=group)
            await until(lambda: ("new", group) in seen)


CRASHING_WRITER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from mesh.db import Database
    from mesh import db, outbox
    from mesh.settings import Settings
    from tests.mesh.fixtures import NOTE_WRITTEN, NoteWritten

    async def main() -> None:
        settings = Settings.model_validate_json(sys.argv[1])
        database = await Database.connect(settings, settings.database("testsvc"))
        async with database.transaction() as conn:
            await db.execute(conn, "INSERT INTO notes (note) VALUES (%s)", (sys.argv[2],))
            await outbox.add_event(conn, NOTE_WRITTEN, NoteWritten(note_id=0, note=sys.argv[2]))
        # Committed; the process dies before any relay could publish.
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


async def test_outbox_survives_a_crash_between_commit_and_publish(settings: Settings) -> None:
    seen: list[tuple[str, str]] = []
    tag = uuid.uuid4().hex[:6]
    note = f"crash-{tag}"
    async with running_service(settings):
        pass  # make sure the database and its tables exist
    proc = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, _settings_json(settings), note],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]

    counts: Counter[str] = Counter()

    def effect(runtime: Runtime):  # type: ignore[no-untyped-def]
        async def handle(event: ReceivedEvent[NoteWritten]) -> None:
            assert runtime.db is not None

            async def apply(conn: Sql) -> None:
                counts[event.payload.note] += 1
                seen.append(("effect", event.payload.note))

            await process_once(runtime.db, f"effect-{tag}", event.message_id, apply)

        return handle

    spec = [ConsumerSpec(f"effect-{tag}", [NOTE_WRITTEN], effect)]
    async with running_service(settings, consumers=spec) as svc:
        await until(lambda: counts[note] >= 1)
        # The relay crashed after publishing but before marking the row sent: it sends
        # the row again, and the idempotent consumer still applies it once.
        assert svc.db is not None
        await svc.db.execute("UPDATE mesh_outbox SET sent_at = NULL")
        assert svc.relay is not None
        svc.relay.notify()
        database = svc.db

        async def all_sent_again() -> bool:
            rows = await database.fetchall("SELECT COUNT(*) FROM mesh_outbox WHERE sent_at IS NULL")
            return bool(rows[0][0] == 0)

        await until(all_sent_again)
        # the duplicate was published: a marker after it (see `marker`) says it arrived
        async with database.transaction() as conn:
            await outbox.add_event(conn, NOTE_WRITTEN, NoteWritten(note_id=0, note=marker(tag)))
        svc.written()
        await until(lambda: ("effect", marker(tag)) in seen)
    assert counts[note] == 1


def _settings_json(settings: Settings) -> str:
    """Settings for a child process (model_dump_json would mask the secrets)."""
    data = settings.model_dump(mode="json")
    data["amqp_url"] = settings.amqp_url.get_secret_value()
    data["db_password"] = settings.db_password.get_secret_value()
    return json.dumps(data)


async def test_outbox_event_is_not_published_when_the_write_rolls_back(settings: Settings) -> None:
    seen: list[tuple[str, str]] = []
    tag = uuid.uuid4().hex[:6]
    spec = [ConsumerSpec(f"rb-{tag}", [NOTE_WRITTEN], recorder(seen, "rb"))]
    async with running_service(settings, consumers=spec) as svc:
        assert svc.db is not None
        try:
            async with svc.db.transaction() as conn:
                await outbox.add_event(conn, NOTE_WRITTEN, NoteWritten(note_id=1, note=tag))
                raise RuntimeError("write failed")
        except RuntimeError:
            pass
        async with svc.db.transaction() as conn:
            await db.execute(conn, "INSERT INTO notes (note) VALUES ('committed')")
            await outbox.add_event(conn, NOTE_WRITTEN, NoteWritten(note_id=2, note=f"ok-{tag}"))
        svc.written()
        async with svc.db.transaction() as conn:  # a marker (see `marker`) after them
            await outbox.add_event(conn, NOTE_WRITTEN, NoteWritten(note_id=3, note=marker(tag)))
        svc.written()
        await until(lambda: ("rb", marker(tag)) in seen)
        assert without_markers(seen) == [("rb", f"ok-{tag}")]
