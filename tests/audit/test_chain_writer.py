"""The audit chain writer outlives a delivery that stopped waiting (no database needed)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts.audit import AuditAction, AuditAgent, AuditEvent, AuditOutcome
from services.audit import ingest


def event() -> AuditEvent:
    return AuditEvent(
        event_id=str(uuid.uuid4()),
        type="patient.read",
        action=AuditAction.read,
        outcome=AuditOutcome.success,
        recorded=datetime.now(UTC),
        agent=AuditAgent(),
        source="records",
    )


async def test_a_delivery_cancelled_mid_batch_does_not_stop_the_writer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A delivery whose channel closed (its broker node lost) is cancelled while its batch
    is being written; the writer must go on for every later delivery."""
    writing = asyncio.Event()
    release = asyncio.Event()

    async def slow_append(runtime: Any, batch: list[Any]) -> list[bool]:
        writing.set()
        await release.wait()
        return [True] * len(batch)

    monkeypatch.setattr(ingest, "append", slow_append)
    writer = ingest.ChainWriter(runtime=None)  # type: ignore[arg-type]
    running = asyncio.create_task(writer.run())
    try:
        lost = asyncio.create_task(writer.submit(event(), "records"))
        await asyncio.wait_for(writing.wait(), 5)
        lost.cancel()  # its channel is gone
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await lost
        assert await asyncio.wait_for(writer.submit(event(), "records"), 5) is True
        assert not running.done()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
