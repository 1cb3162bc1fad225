"""Ingesting audit events into the hash chain, many per transaction (group commit).

Every delivery hands its event to the process's `ChainWriter` and waits until the batch
holding it is committed; only then is the message acknowledged, so nothing is lost on a
crash. A batch is appended under one lock of the chain head (which serialises appends
across replicas), with one multi-row insert and one head update: the cost of the lock
and the commit is shared by every event that arrived meanwhile. A redelivered event
finds its id in the chain and is skipped. If a batch fails, its events are appended one
by one, so one bad event fails alone.

An event its publisher may not record is kept apart (`audit_quarantine`), and an
integrity alert, published by the audit service itself, takes its place in the chain.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from contracts import audit
from contracts.audit import AuditAction, AuditAgent, AuditEvent, AuditOutcome, AuditType
from mesh.events import EventHandler, ReceivedEvent
from mesh.logging import get_logger
from mesh.runtime import Runtime
from services.audit import chain, store

log = get_logger("audit.ingest")
BATCH = 1000
"""Events appended in one transaction at most."""
PREFETCH = 2000
"""Deliveries handled at once (each waits for its batch's commit)."""


def refusal(event: AuditEvent, publisher: str | None) -> str | None:
    """Why an event may not enter the chain as published, or None: its claimed source must
    be the service the broker says published it, and one that may record its type."""
    if event.source != publisher:
        return f"claims source {event.source!r} but was published by {publisher or 'nobody known'}"
    if not audit.may_record(event.type, publisher):
        return f"{publisher} may not record {event.type!r} events"
    return None


def audit_alert(event: AuditEvent, problem: str) -> AuditEvent:
    """The chain's entry for a quarantined event: what arrived, and why it is kept apart."""
    return AuditEvent(
        event_id=f"alert:{event.event_id}"[:64],
        type=AuditType.audit_integrity_alert,
        action=AuditAction.execute,
        outcome=AuditOutcome.failure,
        recorded=datetime.now(UTC),
        agent=AuditAgent(),
        source=audit.SERVICE,
        entity_type="audit_quarantine",
        entity_id=event.event_id,
        detail=f"an audit event of type {event.type[:100]!r} was kept out of the chain: {problem}"[
            :1000
        ],
    )


@dataclass
class _Pending:
    event: AuditEvent
    publisher: str | None
    done: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


async def append(runtime: Runtime, batch: list[_Pending]) -> list[bool]:
    """Append a batch in one transaction; per event, whether it was new."""
    assert runtime.db is not None
    async for attempt in runtime.db.transactions():
        async with attempt as conn:
            kept: list[tuple[int, AuditEvent, str | None]] = []
            for index, item in enumerate(batch):
                event, publisher = item.event, item.publisher
                problem = refusal(event, publisher)
                if problem is not None:
                    if not await store.quarantine(conn, event, publisher, problem):
                        continue  # quarantined before: a redelivery
                    log.error("audit.event_quarantined", event_id=event.event_id, problem=problem)
                    event, publisher = audit_alert(event, problem), audit.SERVICE
                kept.append((index, event, publisher))
            seq, prev = await store.lock_head(conn)
            present = await store.existing(conn, [e.event_id for _, e, _ in kept])
            new = [False] * len(batch)
            entries: list[store.Entry] = []
            for index, event, publisher in kept:
                if event.event_id in present:
                    continue
                present.add(event.event_id)  # the same event twice in one batch
                seq += 1
                digest = chain.entry_hash(prev, seq, event, publisher)
                entries.append(store.Entry(seq, event, prev, digest, publisher))
                prev = digest
                new[index] = True
            await store.append_many(conn, entries)
    return new


async def ingest(runtime: Runtime, event: AuditEvent, publisher: str | None = None) -> bool:
    """Append one event now (no batching); True if it was new."""
    item = _Pending(event, publisher)
    return (await append(runtime, [item]))[0]


class ChainWriter:
    """One per process: collects the events being delivered and appends them in batches."""

    def __init__(self, runtime: Runtime, batch: int = BATCH) -> None:
        self._runtime = runtime
        self._batch = batch
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()

    async def submit(self, event: AuditEvent, publisher: str | None) -> bool:
        """Wait until `event` is in the chain (or was already); True if it was new."""
        item = _Pending(event, publisher)
        self._pending.append(item)
        self._wake.set()
        return await item.done

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[: self._batch], self._pending[self._batch :]
                try:
                    await self._write(batch)
                except Exception:
                    # Never die: every later delivery would wait for a writer that is gone
                    # (and its message stay unacknowledged) until the process restarts.
                    log.exception("audit.writer_failed", events=len(batch))
                    for item in batch:
                        _settle(item, error=RuntimeError("the chain writer failed"))

    async def _write(self, batch: list[_Pending]) -> None:
        try:
            results = await append(self._runtime, batch)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], error=exc)
                return
            log.warning("audit.batch_failed", events=len(batch), error=str(exc))
            for item in batch:  # one by one: a bad event fails alone
                await self._write([item])
            return
        for item, new in zip(batch, results, strict=True):
            _settle(item, new=new)


def _settle(item: _Pending, *, new: bool = False, error: BaseException | None = None) -> None:
    """Tell a delivery its outcome, unless it stopped waiting: a delivery whose channel
    closed (its broker node lost) is cancelled, and so is the future it awaited; that
    message comes again on the new channel and finds its event in the chain."""
    if item.done.done():
        return
    if error is not None:
        item.done.set_exception(error)
    else:
        item.done.set_result(new)


def consumer(runtime: Runtime) -> EventHandler:
    """The `audit.recorded` handler: every delivery waits for its batch's commit."""
    writer = ChainWriter(runtime)
    runtime.spawn(writer.run(), "audit-chain-writer")

    async def handle(received: ReceivedEvent[AuditEvent]) -> None:
        await writer.submit(received.payload, received.publisher)

    return handle
