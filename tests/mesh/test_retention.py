"""Retention: sent outbox rows, idempotency records and processed-event marks are pruned
once past their time, in batches; unsent outbox rows and recent records stay."""

from __future__ import annotations

import pytest

from mesh import retention
from mesh.settings import Settings
from tests.mesh.fixtures import running_service


async def test_old_rows_go_and_everything_still_needed_stays(settings: Settings) -> None:
    async with running_service(settings) as service:
        database = service.db
        assert database is not None
        old = "NOW(6) - INTERVAL 3 DAY"
        await database.execute(
            "INSERT INTO mesh_outbox (routing_key, payload, headers, created_at, sent_at) VALUES "
            f"('t.sent-old', '', '{{}}', {old}, {old}), "
            "('t.sent-new', '', '{}', NOW(6), NOW(6)), "
            f"('t.unsent-old', '', '{{}}', {old}, NULL)"
        )
        await database.execute(
            "INSERT INTO mesh_idempotency (idem_key, method, request_hash, created_at) VALUES "
            f"('retention-old', 'm', REPEAT('a', 32), {old}), "
            "('retention-new', 'm', REPEAT('a', 32), NOW(6))"
        )
        await database.execute(
            "INSERT INTO mesh_processed_events (consumer, message_id, processed_at) VALUES "
            f"('retention', 'old', {old}), ('retention', 'new', NOW(6))"
        )
        short = settings.model_copy(
            update={
                "outbox_retention_s": 86_400,
                "idempotency_retention_s": 86_400,
                "processed_retention_s": 86_400,
            }
        )
        pruned = await retention.prune(database, short)
        assert (pruned.outbox, pruned.idempotency, pruned.processed) >= (1, 1, 1)
        kept = await database.fetchall(
            "SELECT routing_key FROM mesh_outbox WHERE routing_key LIKE 't.%%' ORDER BY id"
        )
        assert [r[0] for r in kept] == ["t.sent-new", "t.unsent-old"]
        keys = await database.fetchall(
            "SELECT idem_key FROM mesh_idempotency WHERE idem_key LIKE 'retention-%%'"
        )
        assert [r[0] for r in keys] == ["retention-new"]
        marks = await database.fetchall(
            "SELECT message_id FROM mesh_processed_events WHERE consumer = 'retention'"
        )
        assert [r[0] for r in marks] == ["new"]
        again = await retention.prune(database, short)
        assert (again.outbox, again.idempotency, again.processed) == (0, 0, 0)


async def test_deletes_go_in_batches(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "BATCH", 3)
    async with running_service(settings) as service:
        database = service.db
        assert database is not None
        rows = ", ".join(
            "('t.batch', '', '{}', NOW(6) - INTERVAL 3 DAY, NOW(6) - INTERVAL 3 DAY)"
            for _ in range(10)
        )
        await database.execute(
            "INSERT INTO mesh_outbox (routing_key, payload, headers, created_at, sent_at) "
            f"VALUES {rows}"
        )
        short = settings.model_copy(update={"outbox_retention_s": 86_400})
        assert (await retention.prune(database, short)).outbox >= 10
        left = await database.fetchone(
            "SELECT COUNT(*) FROM mesh_outbox WHERE routing_key = 't.batch'"
        )
        assert left is not None and left[0] == 0
