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
from contracts.audit import AuditAction, AuditOutcome, AuditType
from contracts.auth import AccountRecord
from contracts.base import GATEWAY, Principal, Role, RpcMethod
from mesh import audit as mesh_audit
from mesh.errors import Forbidden, Unauthenticated
from mesh.runtime import Runtime
from mesh.settings import Settings
from services.audit import chain, store
from services.audit.app import CONSUMERS
from services.audit.handlers import checkpoint, router
from services.audit.verify import verify_chain, walk
from tests.conftest import isolated_settings
from tests.keyvault.support import unsealed_keyvault
from tests.mesh.fixtures import client_runtime
from tests.support.clinic import Clinic, StaffMember, stand_in_auth
from tests.support.polling import until

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "audit" / "migrations"


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
        AuditType.patient_read if action is AuditAction.read else AuditType.patient_update,
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
    # Published as records, the service these events name as their source (anyone else
    # would be quarantined: see tests/gateway/test_zero_trust.py).
    async with client_runtime(audit_settings, "audit-publisher", "records") as publisher:
        events = [event(i) for i in range(500)]
        for e in events:
            await mesh_audit.record(publisher, e)
        # and a redelivery of the same event (same id) on top, then one event more: once
        # that one is stored, the redelivery (queued before it) has been seen
        await publisher.events.publish(
            audit.AUDIT_RECORDED, events[0], message_id=events[0].event_id
        )
        await mesh_audit.record(publisher, event(500))
    service = await start_audit(audit_settings)
    try:
        await wait_count(service, 501)
        assert await stored_count(service) == 501  # the redelivery was not stored
        assert (await verify_chain(service)).ok
    finally:
        await service.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def service(audit_settings: Settings, keyvault: Runtime) -> AsyncIterator[Runtime]:
    runtime = await start_audit(audit_settings)
    try:
        if await stored_count(runtime) < 20:
            async with client_runtime(audit_settings, "audit-pub2", "records") as publisher:
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


async def test_appends_during_a_walk_are_no_tampering(service: Runtime) -> None:
    """Entries appended while a walk checks the head are not an entry "inserted beyond
    the head" (the walk reads head and next entry from one snapshot): a false alarm the
    audit benchmark's ingestion raised."""
    db = service.db
    assert db is not None
    stop = asyncio.Event()

    async def appender() -> int:
        appended = 0
        while not stop.is_set():
            async with db.transaction() as conn:
                seq, prev = await store.lock_head(conn)
                entries = []
                for i in range(3):
                    ev, seq = event(appended + i), seq + 1
                    digest = chain.entry_hash(prev, seq, ev, "records")
                    entries.append(store.Entry(seq, ev, prev, digest, "records"))
                    prev = digest
                await store.append_many(conn, entries)
            appended += 3
        return appended

    task = asyncio.create_task(appender())
    try:
        for _ in range(300):
            seq, digest = await store.head(db)
            walked = await walk(service, seq, digest, 10**9, {})
            assert walked.ok, walked
    finally:
        stop.set()
    assert await task > 0
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
        entry = store.stored(row)
        h = chain.entry_hash(prev, int(row[0]), entry.event, entry.publisher)
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
    service: Runtime, audit_settings: Settings, keyvault: Runtime
) -> None:
    # Queries come from the gateway, for an administrator's own signature of that very
    # request (verified by the audit service's runtime, with the account from auth).
    records: dict[str, AccountRecord] = {}
    auth_stand_in = await Runtime.start(
        "auth", audit_settings, router=stand_in_auth(records), use_database=False
    )
    try:
        async with client_runtime(audit_settings, "audit-reader", GATEWAY) as client:
            clinic = Clinic(audit_settings, keyvault, client, records, services=[service])
            admin = await clinic.add_staff("audit-admin", Role.administrator)
            doctor = await clinic.add_staff("audit-doctor", Role.physician)
            await _queries(clinic, admin, doctor)
            # a caller other than the gateway is refused, whatever it carries
            async with client_runtime(audit_settings, "audit-outsider") as outsider:
                proof, body = admin.signed(audit.VERIFY, audit.VerifyRequest())
                with pytest.raises(Forbidden):
                    await outsider.rpc.call(
                        audit.VERIFY,
                        audit.VerifyRequest(),
                        principal=admin.principal,
                        proof=proof,
                        signed_body=body,
                    )
    finally:
        await auth_stand_in.stop()


async def _queries(clinic: Clinic, admin: StaffMember, doctor: StaffMember) -> None:
    async def call(method: Any, request: Any) -> Any:
        return await clinic.call(method, request, admin)

    page = await call(audit.QUERY, audit.AuditQuery(patient_id="pat-1", limit=3))
    assert page.total >= 4 and len(page.entries) == 3 and page.next_offset == 3
    assert all(e.event.patient_id == "pat-1" for e in page.entries)
    seqs = [e.seq for e in page.entries]
    assert seqs == sorted(seqs)
    rest = await call(audit.QUERY, audit.AuditQuery(patient_id="pat-1", limit=500, offset=3))
    assert len(page.entries) + len(rest.entries) == page.total
    refused = await call(audit.QUERY, audit.AuditQuery(outcome=AuditOutcome.refused))
    assert refused.total >= 1 and all(
        e.event.outcome is AuditOutcome.refused for e in refused.entries
    )
    newest = await call(
        audit.QUERY,
        audit.AuditQuery(sort=audit.SortField.recorded, descending=True, limit=5),
    )
    times = [e.event.recorded for e in newest.entries]
    assert times == sorted(times, reverse=True)
    window = await call(
        audit.QUERY,
        audit.AuditQuery(recorded_from=datetime.now(UTC) + timedelta(days=1)),
    )
    assert window.total == 0
    by_account = await call(
        audit.QUERY,
        audit.AuditQuery(account_id="acc-dr", action=AuditAction.read),
    )
    assert by_account.total >= 20
    history = await call(audit.PATIENT_HISTORY, audit.PatientHistoryRequest(patient_id="pat-2"))
    assert history.entries and all(e.event.patient_id == "pat-2" for e in history.entries)
    exported = await call(audit.EXPORT, audit.AuditQuery(patient_id="pat-2", limit=2))
    lines = exported.ndjson.strip().splitlines()
    assert len(lines) == exported.count == 2
    resource = json.loads(lines[0])
    assert resource["resourceType"] == "AuditEvent" and resource["action"] == "R"
    assert resource["entity"][0]["what"]["reference"] == "Patient/pat-2"
    assert resource["agent"][0]["who"]["identifier"]["value"] == "acc-dr"
    # a physician's own signature: refused by role; no signature at all: refused
    refusable: list[tuple[RpcMethod[Any, Any], Any]] = [
        (audit.QUERY, audit.AuditQuery()),
        (audit.VERIFY, audit.VerifyRequest()),
    ]
    for method, request in refusable:
        with pytest.raises(Forbidden):
            await clinic.call(method, request, doctor)
        with pytest.raises(Unauthenticated):
            await clinic.client.rpc.call(method, request, principal=admin.principal)
    result = await call(audit.VERIFY, audit.VerifyRequest())
    assert result.ok and result.head_seq >= 20
    assert result.since_seq + result.entries == result.head_seq  # from the last mark on
    assert uuid.UUID(page.entries[0].event.event_id)


async def test_a_burst_is_appended_in_batches_once_each(
    audit_settings: Settings, keyvault: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,000 events published while the service is down, then delivered at once: far
    fewer transactions than events, each stored once, the chain intact."""
    from services.audit import ingest

    first = await start_audit(audit_settings)
    before = await stored_count(first)
    await first.stop()
    async with client_runtime(audit_settings, "audit-burst", "records") as publisher:
        await asyncio.gather(*(mesh_audit.record(publisher, event(i)) for i in range(2000)))
    appends: list[int] = []
    real = ingest.append

    async def counting(runtime: Runtime, batch: list[Any]) -> list[bool]:
        appends.append(len(batch))
        return await real(runtime, batch)

    monkeypatch.setattr(ingest, "append", counting)
    service = await start_audit(audit_settings)
    try:

        async def all_stored() -> bool:
            return await stored_count(service) >= before + 2000

        await until(all_stored, timeout=60)
        assert await stored_count(service) == before + 2000
        assert max(appends) > 1 and len(appends) < 2000 / 10, appends
        assert (await verify_chain(service)).ok
    finally:
        await service.stop()


async def test_one_event_names_every_patient_of_a_list(service: Runtime) -> None:
    many = mesh_audit.make_event(
        "records",
        AuditType.patient_search,
        AuditAction.read,
        AuditOutcome.success,
        principal=Principal(account_id="acc-desk", role=Role.receptionist),
        patients=["pat-list-a", "pat-list-b", "pat-list-c"],
    )
    async with client_runtime(service.settings, "audit-list", "records") as publisher:
        await mesh_audit.record(publisher, many)
    assert service.db is not None

    async def stored() -> bool:
        assert service.db is not None
        return (
            await service.db.fetchone(
                "SELECT 1 FROM audit_log WHERE event_id = %s", (many.event_id,)
            )
            is not None
        )

    await until(stored, timeout=10)
    from services.audit import store

    for patient in many.patients:
        entries, total = await store.search(service.db, audit.AuditQuery(patient_id=patient))
        assert total == 1 and entries[0].event.patients == many.patients
        assert entries[0].event.concerns(patient)
    # unfiltered, the total is the chain's head: every entry, counted without a scan
    _, everything = await store.search(service.db, audit.AuditQuery(limit=1))
    counted = await service.db.fetchone("SELECT COUNT(*) FROM audit_log")
    assert counted is not None and everything == counted[0] > 0
    # In the chain (label v3): editing the list of patients breaks it.
    assert (await verify_chain(service)).ok
    seq_row = await service.db.fetchone(
        "SELECT seq FROM audit_log WHERE event_id = %s", (many.event_id,)
    )
    assert seq_row is not None
    await service.db.execute(
        "DELETE FROM audit_patients WHERE seq = %s AND patient_id = 'pat-list-b'", (seq_row[0],)
    )
    broken = await verify_chain(service)
    assert (broken.ok, broken.first_bad_seq) == (False, seq_row[0])
    await service.db.execute(
        "INSERT INTO audit_patients (patient_id, seq) VALUES ('pat-list-b', %s)", (seq_row[0],)
    )
    assert (await verify_chain(service)).ok


async def test_verification_starts_at_the_last_mark_and_the_full_walk_finds_old_edits(
    service: Runtime,
) -> None:
    from services.audit import store, verify

    assert service.db is not None
    full = await verify_chain(service)  # ends with a mark at the head
    assert full.ok
    quick = await verify.verify_since_mark(service)
    assert quick.ok and quick.since_seq == full.head_seq and quick.entries <= 5
    # An old entry edited (before the mark): the quick check does not walk it ...
    original = await snapshot(service, 3)
    await service.db.execute("UPDATE audit_log SET detail = 'rewritten' WHERE seq = 3")
    try:
        assert (await verify.verify_since_mark(service)).ok
        # ... the full walk does, in the background, with progress.
        async with service.db.transaction() as conn:
            started = await verify.start_full(conn, "acc-admin")
        assert started.state is audit.FullVerificationState.running

        # (The service process runs `verify.background`; here its steps are taken by hand.)
        steps = 0
        while await verify.advance_walks(service):
            steps += 1
        assert steps >= 1
        latest = await verify.latest_walk(service)
        assert latest is not None and latest.state is audit.FullVerificationState.failed
        assert latest.first_bad_seq == 3 and "edited" in (latest.problem or "")
    finally:
        await restore(service, original)
    # A forged mark (no keyvault MAC) is refused, not trusted.
    head_seq, head_hash = await store.head(service.db)
    await service.db.execute(
        "INSERT INTO audit_verified (seq, hash, mac) VALUES (%s, %s, 'forged')",
        (head_seq + 10_000, head_hash),
    )
    forged = await verify.verify_since_mark(service)
    assert not forged.ok and "forged" in (forged.problem or "")
    await service.db.execute("DELETE FROM audit_verified WHERE mac = 'forged'")
