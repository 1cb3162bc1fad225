"""Audit at hospital scale (issue 17): ingestion rate, verification and queries as the
chain grows to 10k, 100k and 1M entries.

Ingestion (after the chain sizes below, on top of the largest chain): the audit
service is stopped, a burst of BURST `patient.read` events is published to its queue (as
records, which may record them; confirmed, persistent), the service is started again,
and the drain is timed from its first committed batch to the last event in the chain
(the head's seq, polled in its database): events/s, with the audit process's and the
shared servers' CPU per event. Repeated INGEST_REPEATS times.

Chain sizes: entries are written straight into the audit database, many per
transaction under the locked head, with the service's own hash chain (`services.audit
.chain`, `store.append_many`: the very format the service writes and verifies), one in
a hundred naming 20 patients (a calendar read: the v3 encoding and `audit_patients`),
and a keyvault-MAC'd checkpoint every CHECKPOINT_EVERY entries (what the service's
own checkpoints are: `chain.head_mac_row`, MAC'd as the audit identity). At each size,
through the gateway as an administrator:

- `GET /api/v1/audit/verify` right after the fill (cold: it walks from the last
  verified mark, at most the service's TAIL_LIMIT entries) and, after the full walk,
  again (warm: from a mark at the head), each against the RPC deadline;
- `POST /api/v1/audit/verify/full` and its progress (`GET /api/v1/audit/verify/full`)
  until done: seconds, entries/s, the progress curve;
- `GET /api/v1/audit/events` (first page, newest first, one patient's) and the
  patient history route: p50, p99, CPU per request.

Plots: `audit_ingest.png` (the drain), `audit_scaling.png` (verify and query against
entries), `audit_walk.png` (the full walks' progress).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import (
    Measurement,
    duration,
    measure,
    pick,
    plot,
    print_table,
    spread,
    write_results,
)
from bench.cpu import CpuMeter, shared_servers
from bench.http import LeanHttp
from bench.mesh import LOGS, Actor, BenchMesh, Signed, bench_mesh, new_actor
from contracts import audit as ac
from contracts import keyvault as kv
from contracts.audit import AUDIT_RECORDED, AuditAction, AuditAgent, AuditEvent, AuditOutcome
from contracts.base import Role
from mesh.db import Database
from mesh.settings import Settings
from services.audit import chain, store
from tests.mesh.fixtures import client_runtime
from tests.processes import Process

SERVICES = ["services.keyvault", "services.auth", "services.audit"]
SIZES = (10_000, 100_000, 1_000_000)
BURST = 30_000
INGEST_REPEATS = 3
FILL_CHUNK = 5000
CHECKPOINT_EVERY = 50_000


@dataclass(frozen=True)
class Plan:
    """How big: the chain sizes, the ingestion burst and its repeats, the fill's MAC'd
    checkpoints (quick mode: `QUICK`)."""

    sizes: tuple[int, ...] = SIZES
    burst: int = BURST
    repeats: int = INGEST_REPEATS
    checkpoint_every: int = CHECKPOINT_EVERY


SIZES_ENV = "MEDIHAVEN_BENCH_AUDIT_SIZES"
QUICK = Plan(sizes=(300, 1200), burst=400, repeats=1, checkpoint_every=500)
PATIENTS = 5000
ACCOUNTS = 40
WALK_TIMEOUT_S = 900.0
RPC_DEADLINE_S = 5.0
TARGET_INGEST = 10_000.0


def _event(n: int, recorded: datetime) -> tuple[AuditEvent, str]:
    """Entry n of the filled chain and its publisher (built unvalidated: it is fast, and
    the fields are the service's own types)."""
    account = f"bench-account-{n % ACCOUNTS}"
    agent = AuditAgent.model_construct(account_id=account, role=Role.physician, address=None)
    common: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "action": AuditAction.read,
        "outcome": AuditOutcome.success,
        "recorded": recorded,
        "agent": agent,
        "entity_type": None,
        "purpose_of_use": None,
        "detail": None,
        "trace_id": uuid.uuid4().hex,
    }
    if n % 100 == 99:
        patients = sorted(f"p{(n + k * 97) % PATIENTS}" for k in range(20))
        event = AuditEvent.model_construct(
            type="calendar.read",
            source="scheduling",
            patient_id=None,
            patients=patients,
            entity_id=None,
            **common,
        )
        return event, "scheduling"
    patient = f"p{n % PATIENTS}"
    event = AuditEvent.model_construct(
        type="patient.read",
        source="records",
        patient_id=patient,
        patients=[],
        entity_id=patient,
        **common,
    )
    return event, "records"


async def fill(
    settings: Settings, database: Database, count: int, checkpoint_every: int = CHECKPOINT_EVERY
) -> float:
    """Append `count` entries straight into the chain; returns entries/s."""
    started = time.perf_counter()
    async with client_runtime(settings, "bench-audit-mac", ac.SERVICE) as macs:
        written = 0
        recorded = datetime.now(UTC) - timedelta(days=30)
        while written < count:
            n = min(FILL_CHUNK, count - written)
            async with database.transaction() as conn:
                seq, prev = await store.lock_head(conn)
                entries = []
                for _ in range(n):
                    seq += 1
                    recorded += timedelta(milliseconds=2)
                    event, publisher = _event(seq, recorded)
                    digest = chain.entry_hash(prev, seq, event, publisher)
                    entries.append(store.Entry(seq, event, prev, digest, publisher))
                    prev = digest
                await store.append_many(conn, entries)
            written += n
            if seq // checkpoint_every != (seq - n) // checkpoint_every or written >= count:
                reply = await macs.rpc.call(
                    kv.MAC, kv.MacRequest(rows=[chain.head_mac_row(seq, prev)])
                )
                await store.add_checkpoint(database, seq, prev, reply.tags[0])
    return count / (time.perf_counter() - started)


async def _head(database: Database) -> int:
    row = await database.fetchone("SELECT seq FROM audit_head WHERE id = 1")
    return int(row[0]) if row else 0


async def ingest_once(
    bench: BenchMesh, database: Database, audit_proc: Process, burst: int = BURST
) -> tuple[dict[str, Any], Process]:
    """Stop the audit service, publish a burst, start it again, time the drain."""
    settings = bench.settings
    audit_proc.stop()
    before = await _head(database)
    async with client_runtime(settings, "bench-audit-burst", "records") as publisher:
        events = [
            AuditEvent(
                event_id=str(uuid.uuid4()),
                type="patient.read",
                action=AuditAction.read,
                outcome=AuditOutcome.success,
                recorded=datetime.now(UTC),
                agent=AuditAgent(account_id=f"bench-account-{i % ACCOUNTS}", role=Role.physician),
                source="records",
                patient_id=f"p{i % PATIENTS}",
                entity_type="patient",
                entity_id=f"p{i % PATIENTS}",
            )
            for i in range(burst)
        ]
        started = time.perf_counter()
        for i in range(0, burst, 1000):
            await asyncio.gather(
                *(
                    publisher.events.publish(AUDIT_RECORDED, e, message_id=e.event_id)
                    for e in events[i : i + 1000]
                )
            )
        publish_rate = burst / (time.perf_counter() - started)
    pids: dict[str, int] = {}
    meter = CpuMeter(settings, pids)
    await meter.measure_idle()  # the shared servers with the audit service stopped
    proc = Process("services.audit", settings, LOGS)
    pids["audit"] = proc.popen.pid
    launched = time.perf_counter()
    progress: list[tuple[float, int]] = []
    first_at = first_seq = None
    deadline = launched + 300
    while True:
        seq = await _head(database)
        now = time.perf_counter()
        if seq > before and first_at is None:
            first_at, first_seq = now, seq
            await meter.start()
        if first_at is not None:
            progress.append((now - first_at, seq - before))
        if seq >= before + burst:
            break
        if now > deadline:
            raise TimeoutError(f"the audit service drained {seq - before} of {burst} in 300 s")
        await asyncio.sleep(0.02)
    assert first_at is not None and first_seq is not None
    sample = await meter.stop()
    done = time.perf_counter()
    drained = before + burst - first_seq
    rate = drained / max(done - first_at, 1e-6)
    await asyncio.to_thread(proc.wait_ready)
    return {
        "events": burst,
        "publish_per_s": publish_rate,
        "drain_per_s": rate,
        "from_start_s": done - launched,
        "drain_s": done - first_at,
        "first_batch": first_seq - before,
        "cpu_ms_per_1000_events": sample.per_call_ms(max(drained, 1) / 1000),
        "progress": progress,
    }, proc


def _verify_row(name: str, seconds: float, status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "case": name,
        "seconds": seconds,
        "status": status,
        "within_deadline": status == 200 and seconds < RPC_DEADLINE_S,
        "entries_walked": body.get("entries"),
        "ok": body.get("ok"),
        "since_seq": body.get("since_seq"),
        "head_seq": body.get("head_seq"),
        "problem": body.get("problem") or body.get("error"),
    }


async def _verify(api: Signed, admin: Actor, name: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        response = await api.http.request(
            "GET", "/api/v1/audit/verify", _signed(api, admin, "GET", "/api/v1/audit/verify")
        )
    except TimeoutError:
        return _verify_row(name, time.perf_counter() - started, 0, {"error": "client timeout"})
    seconds = time.perf_counter() - started
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text[:200]}
    return _verify_row(name, seconds, response.status, body)


def _signed(api: Signed, actor: Actor, method: str, target: str) -> dict[str, str]:
    from mesh.httpsig import sign_request

    return sign_request(actor.key, actor.account_id, method, api.base + target, b"")


async def full_walk(api: Signed, admin: Actor) -> dict[str, Any]:
    started = time.perf_counter()
    begun: dict[str, Any] | None = None
    failed_polls: list[str] = []
    for _ in range(5):  # the start may time out while the service is busy: ask again
        try:
            begun = await api.call(admin, "POST", "/api/v1/audit/verify/full", {})
            break
        except (RuntimeError, TimeoutError, ConnectionError) as exc:
            failed_polls.append(f"start: {exc}"[:200])
    if begun is None:
        raise RuntimeError(f"the full walk did not start: {failed_polls}")
    progress: list[tuple[float, int]] = [(0.0, int(begun.get("checked", 0)))]
    state = begun
    while state["state"] == "running":
        if time.perf_counter() - started > WALK_TIMEOUT_S:
            break
        await asyncio.sleep(0.5)
        try:
            state = await api.call(admin, "GET", "/api/v1/audit/verify/full")
        except (RuntimeError, TimeoutError, ConnectionError) as exc:
            # The progress route did not answer in time (the walk is in the same process):
            # counted and shown, the walk goes on.
            failed_polls.append(f"{time.perf_counter() - started:.1f} s: {exc}"[:200])
            continue
        progress.append((time.perf_counter() - started, int(state["checked"])))
    seconds = time.perf_counter() - started
    return {
        "failed_polls": failed_polls,
        "state": state["state"],
        "total": state["total"],
        "checked": state["checked"],
        "seconds": seconds,
        "entries_per_s": state["checked"] / seconds if seconds else 0.0,
        "problem": state.get("problem"),
        "progress": progress,
    }


async def queries(
    api: Signed, admin: Actor, meter: CpuMeter, size: int, duration_s: float
) -> list[Measurement]:
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("audit query: first page", "/api/v1/audit/events", {}),
        (
            "audit query: newest first",
            "/api/v1/audit/events",
            {"sort": "recorded", "descending": True},
        ),
        ("audit query: one patient", "/api/v1/audit/events", {"patient_id": "p42"}),
        ("patient access history", "/api/v1/audit/patients/p42", {}),
    ]
    rows = []
    for name, path, params in cases:

        async def one(path: str = path, params: dict[str, Any] = params) -> None:
            await api.send(admin, "GET", path, **params)

        rows.append(
            await measure(f"{name} @{size}", one, concurrency=1, duration_s=duration_s, meter=meter)
        )
    return rows


async def run(duration_s: float | None = None, plan: Plan | None = None) -> Mapping[str, object]:
    """The whole benchmark (quick mode: `QUICK`, short windows)."""
    plan = plan or pick(Plan(), QUICK)
    chosen = os.environ.get(SIZES_ENV)
    if chosen:  # e.g. "10000,100000": the 1M point takes long on a loaded machine
        plan = replace(plan, sizes=tuple(int(n) for n in chosen.split(",")))
    window = duration(duration_s)
    async with bench_mesh(SERVICES, "audit") as bench:
        settings = bench.settings
        database = await Database.connect(settings, settings.database(ac.SERVICE))
        audit_proc = bench.processes["services.audit"]
        try:
            # The chain sizes first (ingestion bursts would add to them), then ingestion
            # on top of the largest chain.
            async with LeanHttp(bench.gateway.url, timeout_s=60) as http:
                api = Signed(http)
                admin = await asyncio.to_thread(
                    new_actor, bench.gateway.url, bench.admin_token, "audit-admin"
                )
                pids = {
                    n.removeprefix("services."): p.popen.pid
                    for n, p in bench.processes.items()
                    if n != "services.audit"
                }
                scaling = await _scaling(
                    api, admin, settings, database, audit_proc, pids, plan, window
                )
            ingest: list[dict[str, Any]] = []
            for _ in range(plan.repeats):
                row, audit_proc = await ingest_once(bench, database, audit_proc, plan.burst)
                ingest.append(row)
        finally:
            if audit_proc is not bench.processes["services.audit"]:
                audit_proc.stop()
            await database.close()
    return _report(ingest, scaling, plan)


async def _scaling(
    api: Signed,
    admin: Actor,
    settings: Settings,
    database: Database,
    audit_proc: Process,
    pids: dict[str, int],
    plan: Plan,
    duration_s: float,
) -> dict[int, dict[str, Any]]:
    meter = CpuMeter(settings, {**pids, "audit": audit_proc.popen.pid})
    out: dict[int, dict[str, Any]] = {}
    for size in plan.sizes:
        have = await _head(database)
        rate = await fill(settings, database, max(0, size - have), plan.checkpoint_every)
        head = await _head(database)
        print(f"\naudit chain filled to {head} entries ({rate:.0f} entries/s)")
        cold = await _verify(api, admin, f"verify right after the fill @{size}")
        walk = await full_walk(api, admin)
        print(
            f"  full walk: {walk['state']} {walk['checked']}/{walk['total']} in "
            f"{walk['seconds']:.1f} s ({walk['entries_per_s']:.0f} entries/s; "
            f"{len(walk['failed_polls'])} progress polls unanswered)"
        )
        warm = [
            await _verify(api, admin, f"verify from the mark @{size}") for _ in range(pick(5, 2))
        ]
        rows = await queries(api, admin, meter, size, duration_s)
        print_table(f"Audit queries at {head} entries", rows)
        print(
            f"  verify cold: {cold['seconds']:.2f} s (HTTP {cold['status']}, walked "
            f"{cold['entries_walked']}); from the mark: p50 "
            f"{statistics.median(w['seconds'] for w in warm) * 1000:.0f} ms"
        )
        out[size] = {
            "entries": head,
            "fill_per_s": rate,
            "verify_cold": cold,
            "verify_warm": warm,
            "full_walk": walk,
            "queries": rows,
        }
        write_results("audit_partial", {str(s): v for s, v in out.items()})
    return out


def _report(
    ingest: list[dict[str, Any]], scaling: dict[int, dict[str, Any]], plan: Plan
) -> Mapping[str, object]:
    sizes, burst = plan.sizes, plan.burst
    rates = [r["drain_per_s"] for r in ingest]
    median_rate = statistics.median(rates)
    print(
        f"\nAudit ingestion (burst of {burst} while stopped, then the drain): "
        f"{' / '.join(f'{r:.0f}' for r in rates)} events/s, median {median_rate:.0f} "
        f"(target >= {TARGET_INGEST:.0f}; spread {spread(rates):.0%})"
    )
    cpu = statistics.median(r["cpu_ms_per_1000_events"]["total"] for r in ingest)
    print(f"  CPU per 1,000 events (audit + MariaDB ours + RabbitMQ/Redis net): {cpu:.0f} ms")
    biggest = scaling[sizes[-1]]
    warm = statistics.median(w["seconds"] for w in biggest["verify_warm"])
    targets = {
        "ingest_per_s": {"median": median_rate, "runs": rates, "met": median_rate >= TARGET_INGEST},
        "verify_largest": {
            "entries": biggest["entries"],
            "cold_s": biggest["verify_cold"]["seconds"],
            "cold_within_deadline": biggest["verify_cold"]["within_deadline"],
            "warm_p50_s": warm,
            "met": all(w["within_deadline"] for w in biggest["verify_warm"])
            and biggest["verify_cold"]["within_deadline"],
        },
    }
    print(
        f"  verify at {biggest['entries']} entries: cold "
        f"{biggest['verify_cold']['seconds']:.2f} s, "
        f"from the mark {warm * 1000:.0f} ms (deadline {RPC_DEADLINE_S:g} s): "
        f"{'met' if targets['verify_largest']['met'] else 'NOT MET'}"
    )
    xs = [float(scaling[s]["entries"]) for s in sizes]
    series: dict[str, tuple[list[float], list[float]]] = {
        "verify (cold, after the fill) ms": (
            xs,
            [scaling[s]["verify_cold"]["seconds"] * 1000 for s in sizes],
        ),
        "verify (from the mark) p50 ms": (
            xs,
            [
                statistics.median(w["seconds"] for w in scaling[s]["verify_warm"]) * 1000
                for s in sizes
            ],
        ),
        "full walk s (x1000 ms)": (xs, [scaling[s]["full_walk"]["seconds"] * 1000 for s in sizes]),
    }
    names = [r.name.rsplit(" @", 1)[0] for r in scaling[sizes[0]]["queries"]]
    for i, name in enumerate(names):
        series[f"{name} p50 ms"] = (xs, [scaling[s]["queries"][i].p50_ms for s in sizes])
    pngs = [
        plot(
            "audit_scaling",
            "Audit verification and queries vs entries in the chain",
            "entries in the chain",
            series,
            ylabel="ms",
            logy=True,
        ),
        plot(
            "audit_walk",
            "Full chain walk (POST /audit/verify/full): progress",
            "seconds",
            {
                f"{scaling[s]['entries']} entries": (
                    [t for t, _ in scaling[s]["full_walk"]["progress"]],
                    [c for _, c in scaling[s]["full_walk"]["progress"]],
                )
                for s in sizes
            },
            ylabel="entries checked",
            logx=False,
        ),
        plot(
            "audit_ingest",
            f"Audit ingestion: a burst of {burst} drained into the chain",
            "seconds since the first commit",
            {
                f"run {i + 1}: {r['drain_per_s']:.0f}/s": (
                    [t for t, _ in r["progress"]],
                    [c for _, c in r["progress"]],
                )
                for i, r in enumerate(ingest)
            },
            ylabel="events in the chain",
            logx=False,
        ),
    ]
    result = {
        "ingest": ingest,
        "scaling": {str(s): v for s, v in scaling.items()},
        "targets": targets,
        "shared_servers": shared_servers(),
    }
    print(f"  written: {write_results('audit', result)} and {', '.join(map(str, pngs))}")
    return result


if __name__ == "__main__":
    import uvloop

    uvloop.run(run())
