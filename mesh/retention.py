"""Pruning what the runtime keeps only for a while: sent outbox rows, idempotency records
and processed-event marks, in every service's database.

Each is needed for a bounded time only: an outbox row until it is published, an
idempotency record for as long as a client may retry its write (and a proof is replayable
at all: the signature window is far shorter), a processed-event mark for as long as a
message can be redelivered. Deleted in small batches, so no lock is held for long.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from mesh.db import Database
from mesh.logging import get_logger
from mesh.settings import Settings

log = get_logger("mesh.retention")
BATCH = 5000


@dataclass(frozen=True)
class Pruned:
    outbox: int
    idempotency: int
    processed: int


async def _delete(database: Database, sql: str, seconds: float) -> int:
    total = 0
    while True:
        deleted = await database.execute(sql, (seconds, BATCH))
        total += deleted
        if deleted < BATCH:
            return total


async def prune(database: Database, settings: Settings) -> Pruned:
    """Delete, in batches, every row past its retention."""
    return Pruned(
        outbox=await _delete(
            database,
            "DELETE FROM mesh_outbox WHERE sent_at IS NOT NULL "
            "AND sent_at < NOW(6) - INTERVAL %s SECOND ORDER BY sent_at LIMIT %s",
            settings.outbox_retention_s,
        ),
        idempotency=await _delete(
            database,
            "DELETE FROM mesh_idempotency WHERE created_at < NOW(6) - INTERVAL %s SECOND "
            "ORDER BY created_at LIMIT %s",
            settings.idempotency_retention_s,
        ),
        processed=await _delete(
            database,
            "DELETE FROM mesh_processed_events WHERE processed_at < NOW(6) - INTERVAL %s "
            "SECOND ORDER BY processed_at LIMIT %s",
            settings.processed_retention_s,
        ),
    )


async def run(database: Database, settings: Settings) -> None:
    """Prune every `retention_interval_s`, for as long as the runtime runs."""
    while True:
        try:
            pruned = await prune(database, settings)
            if pruned.outbox or pruned.idempotency or pruned.processed:
                log.info(
                    "retention.pruned",
                    outbox=pruned.outbox,
                    idempotency=pruned.idempotency,
                    processed=pruned.processed,
                )
        except Exception as exc:  # the next round tries again
            log.warning("retention.failed", error=str(exc))
        await asyncio.sleep(settings.retention_interval_s)
