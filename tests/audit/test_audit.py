"""The audit service: ingestion once per event, even across a consumer outage, the hash
chain against database tampering, checkpoints against a consistent rewrite, and queries."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from contracts import audit
from contracts.audit import AuditAction, AuditOutcome
from contracts.base import Principal, Role
from mesh import audit as mesh_audit
from mesh.errors import Forbidden
from mesh.runtime import Runtime
from mesh.settings import Settings
from services.audit import chain
from services.audit.app import CONSUMERS
from services.audit.handlers import checkpoint, router, verify_chain
from tests.conftest import isolated_settings
from tests.keyvault.support import unsealed_keyvault
from tests.mesh.fixtures import client_runtime

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "audit" / "migrations"
ADMIN = Principal(account_id="acc-admin", role=Role.administrator)


@pytest.fixture(scope="module")
def audit_settings() -> Iterator[Settings]:
    with isolated_settings("audit") as settings:
        yield settings


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def keyvault(audit_settings: Settings) -> AsyncIterator[Runtime]:
    async with unsealed_keyvault(audit_settings) as (runtime, _):
        yield runtime


async def start_audit(settings: Settings) -> Runtime:
    return await Runtime.start(
        "audit", settings, router=router, migrations=MIGRATIONS, consumers=CONSUMERS
    )


def event(
    i: int,
    *,
    patient: str | None = None,
    account: str = "acc-dr",
    action: AuditAction = AuditAction.read,
) -> audit.AuditEvent:
    return mesh_audit.make_event(
        "records",
        "patient.read" if action is AuditAction.read else "patient.update",
        action,
        AuditOutcome.success if i % 7 else AuditOutcome.refused,
        principal=Principal(account_id=account, role=Role.physician),
        patient_id=patient or f"pat-{i % 5}",
        detail=f"n{i}",
    )


async def stored_count(runtime: Runtime) -> int:
    assert runtime.db is not None
    row = await runtime.db.fetchone("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM audit_log")
    assert row is not None and row[0] == row[1], "an event was stored twice"
    return int(row[0])


async def wait_count(runtime: Runtime, n: int, timeout: float = 30) -> None:
    for _ in range(int(timeout / 0.1)):
        if await stored_count(runtime) >= n:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"only {await stored_count(runtime)} of {n} stored")


async def test_outage_then_all_500_stored_once(audit_settings: Settings, keyvault: Runtime) -> None:
    first = await start_audit(audit_settings)  # declares the durable queue
    await first.stop()
    async with client_runtime(audit_settings, "audit-publisher") as publisher:
        events = [event(i) for i in range(500)]
        for e in events:
            await mesh_audit.record(publisher, e)
        # and a redelivery of the same event (same id) on top
        await publisher.events.publish(
            audit.AUDIT_RECORDED, events[0], message_id=events[0].event_id
        )
    service = await start_audit(audit_settings)
    try:
        await wait_count(service, 500)
        await asyncio.sleep(0.5)
        assert await stored_count(service) == 500
        assert (await verify_chain(service)).ok
    finally:
        await service.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def service(audit_settings: Settings, keyvault: Runtime) -> AsyncIterator[Runtime]:
    runtime = await start_audit(audit_settings)
    try:
        if await stored_count(runtime) < 20:
            async with client_runtime(audit_settings, "audit-pub2") as publisher:
                for i in range(20):
                    await mesh_audit.record(publisher, event(i))
            await wait_count(runtime, 20)
        yield runtime
    finally:
        await runtime.stop()


async def snapshot(runtime: Runtime, seq: int) -> tuple[Any, ...]:
    assert runtime.db is not None
    row = await runtime.db.fetchone("SELECT * FROM audit_log WHERE seq = %s", (seq,))
    assert row is not None
    return row


async def restore(runtime: Runtime, row: tuple[Any, ...]) -> None:
    assert runtime.db is not None
    await runtime.db.execute("DELETE FROM audit_log WHERE seq = %s", (row[0],))
    placeholders = ", ".join(["%s"] * len(row))
    await runtime.db.execute(f"INSERT INTO audit_log VALUES ({placeholders})", row)


async def test_edit_insert_delete_are_each_named(service: Runtime) -> None:
    db = service.db
    assert db is not None
    assert (await verify_chain(service)).ok
    # edit: a physician's read becomes someone else's
    original = await snapshot(service, 7)
    await db.execute("UPDATE audit_log SET account_id = 'acc-other' WHERE seq = 7")
    result = await verify_chain(service)
    assert (result.ok, result.first_bad_seq) == (False, 7) and "edited" in (result.problem or "")
    await restore(service, original)
    assert (await verify_chain(service)).ok
    # delete an entry in the middle
    original = await snapshot(service, 5)
    await db.execute("DELETE FROM audit_log WHERE seq = 5")
    result = await verify_chain(service)
    assert (result.ok, result.first_bad_seq) == (False, 5) and "deleted" in (result.problem or "")
    await restore(service, original)
    # delete the latest entry (the head still remembers it)
    head_seq = int((await db.fetchone("SELECT seq FROM audit_head"))[0])  # type: ignore[index]
    original = await snapshot(service, head_seq)
    await db.execute("DELETE FROM audit_log WHERE seq = %s", (head_seq,))
    result = await verify_chain(service)
    assert (result.ok, result.first_bad_seq) == (False, head_seq)
    await restore(service, original)
    # insert a forged entry after the last one, hashed correctly (no key is needed for that)
    last = await snapshot(service, head_seq)
    forged = event(999, patient="pat-x")
    seq = head_seq + 1
    forged_hash = chain.entry_hash(last[17], seq, forged)
    await db.execute(
        "INSERT INTO audit_log (seq, event_id, type, action, outcome, recorded, source, "
        "prev_hash, hash, account_id, role, patient_id, detail) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            seq,
            forged.event_id,
            forged.type,
            forged.action.value,
            forged.outcome.value,
            forged.recorded.replace(tzinfo=None),
            forged.source,
            last[17],
            forged_hash,
            forged.agent.account_id,
            "physician",
            forged.patient_id,
            forged.detail,
        ),
    )
    result = await verify_chain(service)
    assert (result.ok, result.first_bad_seq) == (False, seq) and "inserted" in (
        result.problem or ""
    )
    await db.execute("DELETE FROM audit_log WHERE seq = %s", (seq,))
    # an entry inserted in the middle (renumbering the rest) breaks the chain there
    assert (await verify_chain(service)).ok


async def test_consistent_rewrite_is_caught_by_the_checkpoint_mac(service: Runtime) -> None:
    db = service.db
    assert db is not None
    await checkpoint(service)  # MAC the head (a no-op if nothing is new)
    cp_seq = int((await db.fetchone("SELECT MAX(seq) FROM audit_checkpoints"))[0])  # type: ignore[index]
    assert (await verify_chain(service)).ok
    rows = await db.fetchall("SELECT * FROM audit_log ORDER BY seq")
    backup = list(rows)
    # The attacker edits entry 3 and recomputes every later hash and the head: the chain
    # alone is consistent again, but the keyvault-MAC'd checkpoint is not.
    await db.execute("UPDATE audit_log SET detail = 'nothing to see' WHERE seq = 3")
    prev = chain.GENESIS
    from services.audit import store

    for row in await db.fetchall(f"SELECT {store.COLUMNS} FROM audit_log ORDER BY seq"):
        h = chain.entry_hash(prev, int(row[0]), store.stored(row).event)
        await db.execute(
            "UPDATE audit_log SET prev_hash = %s, hash = %s WHERE seq = %s", (prev, h, row[0])
        )
        prev = h
    await db.execute("UPDATE audit_head SET hash = %s", (prev,))
    result = await verify_chain(service)
    assert result.ok is False and result.first_bad_seq == cp_seq
    assert "checkpoint" in (result.problem or "")
    # forging the checkpoint itself fails too (its MAC needs the keyvault's key)
    await db.execute(
        "UPDATE audit_checkpoints SET hash = %s WHERE seq = %s",
        (prev, cp_seq),
    )
    result = await verify_chain(service)
    assert result.ok is False
    # restore
    await db.execute("DELETE FROM audit_log")
    for row in backup:
        placeholders = ", ".join(["%s"] * len(row))
        await db.execute(f"INSERT INTO audit_log VALUES ({placeholders})", row)
    await db.execute("UPDATE audit_head SET hash = %s", (backup[-1][17],))
    cps = await db.fetchall("SELECT seq FROM audit_checkpoints")
    for (s,) in cps:
        match = [r for r in backup if r[0] == s]
        await db.execute("UPDATE audit_checkpoints SET hash = %s WHERE seq = %s", (match[0][17], s))
    assert (await verify_chain(service)).ok


async def test_queries_sorting_paging_history_and_export(
    service: Runtime, audit_settings: Settings
) -> None:
    async with client_runtime(audit_settings, "audit-reader") as client:
        call = client.rpc.call
        page = await call(
            audit.QUERY, audit.AuditQuery(patient_id="pat-1", limit=3), principal=ADMIN
        )
        assert page.total >= 4 and len(page.entries) == 3 and page.next_offset == 3
        assert all(e.event.patient_id == "pat-1" for e in page.entries)
        seqs = [e.seq for e in page.entries]
        assert seqs == sorted(seqs)
        rest = await call(
            audit.QUERY, audit.AuditQuery(patient_id="pat-1", limit=500, offset=3), principal=ADMIN
        )
        assert len(page.entries) + len(rest.entries) == page.total
        refused = await call(
            audit.QUERY, audit.AuditQuery(outcome=AuditOutcome.refused), principal=ADMIN
        )
        assert refused.total >= 1 and all(
            e.event.outcome is AuditOutcome.refused for e in refused.entries
        )
        newest = await call(
            audit.QUERY,
            audit.AuditQuery(sort=audit.SortField.recorded, descending=True, limit=5),
            principal=ADMIN,
        )
        times = [e.event.recorded for e in newest.entries]
        assert times == sorted(times, reverse=True)
        window = await call(
            audit.QUERY,
            audit.AuditQuery(recorded_from=datetime.now(UTC) + timedelta(days=1)),
            principal=ADMIN,
        )
        assert window.total == 0
        by_account = await call(
            audit.QUERY,
            audit.AuditQuery(account_id="acc-dr", action=AuditAction.read),
            principal=ADMIN,
        )
        assert by_account.total >= 20
        history = await call(
            audit.PATIENT_HISTORY, audit.PatientHistoryRequest(patient_id="pat-2"), principal=ADMIN
        )
        assert history.entries and all(e.event.patient_id == "pat-2" for e in history.entries)
        exported = await call(
            audit.EXPORT, audit.AuditQuery(patient_id="pat-2", limit=2), principal=ADMIN
        )
        lines = exported.ndjson.strip().splitlines()
        assert len(lines) == exported.count == 2
        resource = json.loads(lines[0])
        assert resource["resourceType"] == "AuditEvent" and resource["action"] == "R"
        assert resource["entity"][0]["what"]["reference"] == "Patient/pat-2"
        assert resource["agent"][0]["who"]["identifier"]["value"] == "acc-dr"
        for principal in (None, Principal(account_id="d", role=Role.physician)):
            with pytest.raises(Forbidden):
                await call(audit.QUERY, audit.AuditQuery(), principal=principal)
            with pytest.raises(Forbidden):
                await call(audit.VERIFY, audit.VerifyRequest(), principal=principal)
        result = await call(audit.VERIFY, audit.VerifyRequest(), principal=ADMIN)
        assert result.ok and result.entries >= 20
        assert uuid.UUID(page.entries[0].event.event_id)
