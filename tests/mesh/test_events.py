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
        await until(lambda: len(seen) >= 2)
        await asyncio.sleep(0.3)  # nothing more arrives
        assert sorted(seen) == sorted((g, f"n-{tag}") for g in groups)


async def test_two_replicas_of_a_group_compete(settings: Settings) -> None:
    seen: list[tuple[str, str]] = []
    group = f"shared-{uuid.uuid4().hex[:6]}"
    spec = [ConsumerSpec(group, [NOTE_WRITTEN], recorder(seen, group))]
    async with (
        running_service(settings, consumers=spec),
        running_service(settings, consumers=spec),
        client_runtime(settings) as client,
    ):
        for i in range(20):
            await client.rpc.call(
                WRITE_NOTE, NoteRequest(note=str(i)), idempotency_key=f"{group}{i}"
            )
        await until(lambda: len(seen) >= 20)
        await asyncio.sleep(0.3)
        assert sorted(n for _, n in seen) == sorted(str(i) for i in range(20))


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

            async def apply(conn: object) -> None:
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
        await asyncio.sleep(1.0)  # let the duplicate arrive
        rows = await svc.db.fetchall("SELECT COUNT(*) FROM mesh_outbox WHERE sent_at IS NULL")
        assert rows[0][0] == 0
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
        await until(lambda: len(seen) >= 1)
        await asyncio.sleep(0.3)
        assert seen == [("rb", f"ok-{tag}")]
