"""A tiny test-only service ("testsvc") exercising the shared runtime."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from contracts.audit import AUDIT_RECORDED, AuditEvent
from contracts.base import EventType, Model, Role, RpcMethod
from mesh import db, outbox
from mesh.context import CallContext
from mesh.errors import Conflict
from mesh.events import ReceivedEvent
from mesh.rpc import RpcRouter
from mesh.runtime import ConsumerSpec, Runtime
from mesh.settings import Settings

SERVICE = "testsvc"
MIGRATIONS = Path(__file__).with_name("migrations")


class EchoRequest(Model):
    text: str = Field(max_length=100)
    delay_s: float = 0.0


class EchoReply(Model):
    text: str
    instance: str


class NoteRequest(Model):
    note: str


class NoteReply(Model):
    note_id: int
    runs: int


class NoteWritten(Model):
    note_id: int
    note: str


ECHO = RpcMethod(SERVICE, "testsvc.echo", EchoRequest, EchoReply)
FAIL = RpcMethod(SERVICE, "testsvc.fail", EchoRequest, EchoReply)
ONLY_PHYSICIANS = RpcMethod(
    SERVICE, "testsvc.clinical", EchoRequest, EchoReply, roles=frozenset({Role.physician})
)
WRITE_NOTE = RpcMethod(SERVICE, "testsvc.write_note", NoteRequest, NoteReply, write=True)
NOTE_WRITTEN = EventType("testsvc.note.written", NoteWritten)


@dataclass
class Counters:
    started: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    note_runs: int = 0


def make_router(counters: Counters) -> RpcRouter:
    router = RpcRouter(SERVICE)

    @router.handler(ECHO)
    async def echo(req: EchoRequest, ctx: CallContext) -> EchoReply:
        counters.started.append(req.text)
        if req.delay_s:
            await asyncio.sleep(req.delay_s)
        counters.finished.append(req.text)
        assert ctx.runtime is not None and ctx.runtime.server is not None
        return EchoReply(text=req.text, instance=ctx.runtime.server.instance)

    @router.handler(FAIL)
    async def fail(req: EchoRequest, ctx: CallContext) -> EchoReply:
        raise Conflict("slot taken", details={"slot": req.text})

    @router.handler(ONLY_PHYSICIANS)
    async def clinical(req: EchoRequest, ctx: CallContext) -> EchoReply:
        return EchoReply(text=req.text, instance="")

    @router.handler(WRITE_NOTE)
    async def write_note(req: NoteRequest, ctx: CallContext) -> NoteReply:
        counters.note_runs += 1
        await asyncio.sleep(0.05)  # widen the window for concurrent duplicates
        await db.execute(ctx.tx, "INSERT INTO notes (note) VALUES (%s)", (req.note,))
        row = await db.fetchone(ctx.tx, "SELECT LAST_INSERT_ID()")
        assert row is not None
        await outbox.add_event(ctx.tx, NOTE_WRITTEN, NoteWritten(note_id=row[0], note=req.note))
        return NoteReply(note_id=row[0], runs=counters.note_runs)

    return router


@asynccontextmanager
async def running_service(
    settings: Settings, counters: Counters | None = None, **kwargs: object
) -> AsyncIterator[Runtime]:
    runtime = await Runtime.start(
        SERVICE,
        settings,
        router=make_router(counters or Counters()),
        migrations=MIGRATIONS,
        **kwargs,  # type: ignore[arg-type]
    )
    try:
        yield runtime
    finally:
        await runtime.stop()


@asynccontextmanager
async def client_runtime(
    settings: Settings, name: str = "testclient", identity: str = "testclient"
) -> AsyncIterator[Runtime]:
    """A process with no service of its own, connected as `identity` (e.g. the operator)."""
    runtime = await Runtime.start(name, settings, use_database=False, identity=identity)
    try:
        yield runtime
    finally:
        await runtime.stop()


@asynccontextmanager
async def audit_trail(settings: Settings) -> AsyncIterator[list[AuditEvent]]:
    """The audit events published while it is open, as the audit service would receive
    them (an observer's own queue, publishers checked against the contracts)."""
    seen: list[AuditEvent] = []

    async def handle(event: ReceivedEvent[AuditEvent]) -> None:
        seen.append(event.payload)

    async with client_runtime(settings, "audit-observer", identity="observer") as observer:
        group = f"observer-audit-{uuid.uuid4().hex[:8]}"
        await observer.join(ConsumerSpec(group, [AUDIT_RECORDED], lambda _: handle, False))
        yield seen


@asynccontextmanager
async def audit_publisher(
    settings: Settings, *, use_database: bool = False
) -> AsyncIterator[Runtime]:
    """A process publishing as `records` (an audit publisher), with a database if asked."""
    runtime = await Runtime.start(
        "auditpub", settings, use_database=use_database, identity="records"
    )
    try:
        yield runtime
    finally:
        await runtime.stop()


__all__ = ["ConsumerSpec"]
