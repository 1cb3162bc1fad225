"""The patient summary through the gateway against a plain monolith serving the same
summary, in the same run, and how it scales with the history on file (issue 17).

Medihaven: a physician's signed `GET /api/v1/patients/{P}/summary` (demographics, the 10
most recent encounters, active prescriptions, allergies): the gateway's checks, the
records RPC, the care check and the chart's queries, one DECRYPT batch at the keyvault,
the prescriptions' signature checks, a confirmed audit event, every service a process
(gateway, auth, records, keyvault, audit) in a namespace of its own (`bench.mesh`).
The same summary asked of records straight over the bus shows the gateway's share.

Baseline: `bench.monolith`, plain FastAPI + aiomysql, unsigned and unencrypted, seeded
with the very documents Medihaven returned (same JSON size, same number of encounters on
file, the same five queries).

Both are driven by the lean client (`bench.http`, uvloop), whose own CPU per request is
reported; CPU per request is counted across every process, RabbitMQ and MariaDB
included (`bench.cpu`). Each case runs REPEATS times, Medihaven and the monolith in
turn, and the medians are reported with the spread (how noisy the machine was).

Curves: 10, 100, 500 and 2,000 encounters on file (p50, p99, CPU per request), with
`bench/results/summary_scaling.png`. Hang check: concurrency 64 and 256, every call
must answer.

Targets (issue 17): p50 flat within 20 % from 10 to 2,000 encounters; p50 <= 4x the
monolith's at c=1; throughput >= 25 % of the monolith's at c=16; CPU per summary
<= 8 ms across all processes; no hang at any concurrency.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import monolith
from bench.common import (
    Measurement,
    duration,
    measure,
    median_of,
    pick,
    plot,
    print_cpu,
    print_table,
    spread,
    write_results,
)
from bench.cpu import CpuMeter
from bench.http import LeanHttp
from bench.mesh import LOGS, Actor, BenchMesh, Signed, Staffing, bench_mesh
from contracts import records as rec
from contracts.base import GATEWAY, Principal, Role
from mesh.httpsig import proof_from_headers, sign_request
from tests.mesh.fixtures import client_runtime
from tests.processes import Process

SERVICES = ["services.keyvault", "services.auth", "services.records", "services.audit"]
SHOWN, PRESCRIPTIONS = 10, 5
ON_FILE = (10, 100, 500, 2000)
QUICK_ON_FILE = (10, 14)
CONCURRENCY = (1, 16)
HANG_CONCURRENCY = (64, 256)
QUICK_HANG_CONCURRENCY = (8,)
REPEATS = 3
SEED_CONCURRENCY = 4
MEDIHAVEN = "summary via gateway (signed)"
DIRECT = "summary, records RPC direct"
PLAIN = "plain monolith summary"
TARGET_FLAT = 0.20
TARGET_P50_RATIO = 4.0
TARGET_THROUGHPUT_RATIO = 0.25
TARGET_CPU_MS = 8.0
CLIENT_SHARE_MAX = 0.15


def encounter(i: int) -> dict[str, Any]:
    """Encounter i of the history, i hours before now (0: the most recent)."""
    return {
        "occurred_at": (datetime.now(UTC) - timedelta(hours=i + 1)).isoformat(),
        "chief_complaint": "Follow-up of type 2 diabetes and hypertension",
        "history_of_present_illness": "Feels well. Occasional morning headaches. " * 4,
        "examination": "BP slightly raised; feet: pulses present, no ulcers. " * 3,
        "assessment": "Diabetes controlled; hypertension borderline.",
        "plan": "Continue treatment; repeat HbA1c in three months. " * 2,
        "diagnoses": [{"code": "E11.9"}, {"code": "I10"}],
        "vital_signs": {
            "blood_pressure": {"systolic": 142, "diastolic": 88},
            "heart_rate": {"value": 76},
            "temperature": {"value": 36.7, "unit": "Cel"},
            "weight": {"value": 84.2, "unit": "kg"},
        },
        "allergies": [{"substance": "Penicillin", "severity": "severe"}],
    }


DEMOGRAPHICS = {
    "given_name": "Benchmark",
    "family_name": "Patient",
    "date_of_birth": "1970-01-01",
    "sex": "female",
    "phone": "+44 20 7946 0000",
    "email": "bench@example.org",
    "address": {
        "line1": "1 Bench Street",
        "postal_code": "AB1 2CD",
        "city": "Testford",
        "country": "GB",
    },
    "emergency_contact": {
        "name": "Next Of Kin",
        "relationship": "sibling",
        "phone": "+44 20 7946 0001",
    },
    "insurance": {"company": "Bench Mutual", "member_id": "BM-1", "valid_until": "2035-01-01"},
}


def medication(i: int) -> dict[str, Any]:
    return {
        "drug_name": f"Metformin {i}",
        "strength": "500 mg",
        "dosage_form": "tablet",
        "dose": "1 tablet",
        "route": "oral",
        "frequency": "twice daily",
        "duration_days": 90,
        "quantity": 180,
        "refills": 1,
        "instructions": "Take with meals.",
        "free_text": True,  # no catalog is loaded in this benchmark
    }


async def seed_patient(api: Signed, admin_token: str) -> tuple[Actor, str]:
    """A physician and one patient with SHOWN encounters and PRESCRIPTIONS prescriptions."""
    staff = Staffing(api, admin_token, "bench")
    desk = await staff.add("receptionist", "desk")
    doctor = await staff.add("physician", "dr")
    patient = await api.call(desk, "POST", "/api/v1/patients", {"demographics": DEMOGRAPHICS})
    patient_id = str(patient["patient_id"])
    # No scheduling service runs here: the physician's first encounter is recorded under
    # break-glass (afterwards their own encounters are the care relationship).
    await api.call(
        doctor, "POST", f"/api/v1/patients/{patient_id}/break-glass", {"reason": "benchmark"}
    )
    ids = []
    for i in range(SHOWN):
        written = await api.call(
            doctor, "POST", f"/api/v1/patients/{patient_id}/encounters", {"content": encounter(i)}
        )
        ids.append(written["encounter_id"])
    for i in range(PRESCRIPTIONS):
        await api.prescribe(doctor, patient_id, ids[i], medication(i))
    return doctor, patient_id


async def add_encounters(
    api: Signed, doctor: Actor, patient_id: str, first: int, count: int
) -> None:
    """Older encounters (indices first..first+count-1), SEED_CONCURRENCY at a time."""
    queue = list(range(first, first + count))

    async def writer() -> None:
        while queue:
            i = queue.pop(0)
            await api.call(
                doctor,
                "POST",
                f"/api/v1/patients/{patient_id}/encounters",
                {"content": encounter(i)},
            )

    await asyncio.gather(*(writer() for _ in range(SEED_CONCURRENCY)))


def mesh_pids(bench: BenchMesh) -> dict[str, int]:
    return {
        name.removeprefix("services."): proc.popen.pid for name, proc in bench.processes.items()
    }


async def run(duration_s: float | None = None, repeats: int | None = None) -> Mapping[str, object]:
    """The whole benchmark (quick mode: 10 and 14 encounters, one repeat, short windows)."""
    window = duration(duration_s)
    repeats = repeats or pick(REPEATS, 1)
    async with bench_mesh(SERVICES, "summary") as bench:
        settings = bench.settings
        async with (
            LeanHttp(bench.gateway.url) as http,
            client_runtime(settings, "bench-summary", GATEWAY) as bus,
        ):
            api = Signed(http)
            doctor, patient_id = await seed_patient(api, bench.admin_token)
            path = f"/api/v1/patients/{patient_id}/summary"
            shown = await api.call(doctor, "GET", path)
            assert len(shown["encounters"]) == SHOWN, shown
            assert len(shown["active_prescriptions"]) == PRESCRIPTIONS, shown
            await monolith.seed(settings, doctor.account_id, shown)
            plain_proc = Process("bench.monolith", settings, LOGS)
            try:
                await asyncio.to_thread(plain_proc.wait_ready)
                async with LeanHttp(plain_proc.url) as plain_http:
                    return await _measure(
                        bench,
                        api,
                        bus,
                        plain_http,
                        plain_proc,
                        doctor,
                        patient_id,
                        shown,
                        window,
                        repeats,
                    )
            finally:
                plain_proc.stop()


async def _measure(
    bench: BenchMesh,
    api: Signed,
    bus: Any,
    plain_http: LeanHttp,
    plain_proc: Process,
    doctor: Actor,
    patient_id: str,
    shown: dict[str, Any],
    duration_s: float,
    repeats: int,
) -> Mapping[str, object]:
    settings = bench.settings
    path = f"/api/v1/patients/{patient_id}/summary"
    plain_path = f"/plain/patients/{patient_id}/summary"
    plain_headers = {"x-account-id": doctor.account_id}
    principal = Principal(account_id=doctor.account_id, role=Role.physician)
    request = rec.PatientSummaryRequest(patient_id=patient_id)
    uri = api.base + path
    ours_size = len((await api.send(doctor, "GET", path)).body)
    plain_size = len((await plain_http.get(plain_path, plain_headers)).body)
    sizes = {"medihaven_bytes": ours_size, "plain_bytes": plain_size}
    print(f"\nsummary JSON: Medihaven {ours_size} bytes, plain monolith {plain_size} bytes")

    async def ours() -> None:
        await api.send(doctor, "GET", path)

    async def plain() -> None:
        response = await plain_http.get(plain_path, plain_headers)
        if response.status != 200:
            raise RuntimeError(f"plain summary: {response.status} {response.text[:200]}")

    async def direct() -> None:
        headers = sign_request(doctor.key, doctor.account_id, "GET", uri, b"")
        proof = proof_from_headers("GET", uri, headers).model_dump_json()
        await bus.rpc.call(rec.PATIENT_SUMMARY, request, principal=principal, proof=proof)

    mesh_meter = CpuMeter(settings, mesh_pids(bench))
    plain_meter = CpuMeter(settings, {"monolith": plain_proc.popen.pid})
    cases: list[tuple[str, Callable[[], Awaitable[None]], CpuMeter]] = [
        (MEDIHAVEN, ours, mesh_meter),
        (PLAIN, plain, plain_meter),
    ]

    async def rounds(
        on_file: int, concurrencies: tuple[int, ...], with_direct: bool
    ) -> list[Measurement]:
        rows: list[Measurement] = []
        chosen = cases + ([(DIRECT, direct, mesh_meter)] if with_direct else [])
        for concurrency in concurrencies:
            runs: dict[str, list[Measurement]] = {name: [] for name, _, _ in chosen}
            for _ in range(repeats):
                for name, call, meter in chosen:  # in turn: noise hits every case alike
                    runs[name].append(
                        await measure(
                            name,
                            call,
                            concurrency=concurrency,
                            duration_s=duration_s,
                            meter=meter,
                        )
                    )
            for name, _, _ in chosen:
                row = median_of(f"{name} @{on_file}", runs[name])
                rows.append(row)
                noise[f"{name} @{on_file} c{concurrency}"] = {
                    "p50_spread": spread([r.p50_ms for r in runs[name]]),
                    "throughput_spread": spread([r.throughput for r in runs[name]]),
                    "cpu_spread": spread([r.cpu_ms.get("total", 0.0) for r in runs[name]]),
                    "p50_runs": [r.p50_ms for r in runs[name]],
                    "throughput_runs": [r.throughput for r in runs[name]],
                    "cpu_total_runs": [r.cpu_ms.get("total", 0.0) for r in runs[name]],
                }
        return rows

    noise: dict[str, dict[str, Any]] = {}
    by_scale: dict[int, list[Measurement]] = {}
    on_file = SHOWN
    scales = pick(ON_FILE, QUICK_ON_FILE)
    for target in scales:
        if target > on_file:
            await add_encounters(api, doctor, patient_id, on_file, target - on_file)
            await monolith.set_encounters(settings, shown, target)
            on_file = target
        first = target == scales[0]
        by_scale[target] = await rounds(target, CONCURRENCY if first else (1,), first)
        print_table(
            f"Patient summary, {target} encounters on file (medians of {repeats})", by_scale[target]
        )
    hang: list[Measurement] = []
    for concurrency in pick(HANG_CONCURRENCY, QUICK_HANG_CONCURRENCY):
        for name, call, meter in cases:
            hang.append(
                await measure(
                    f"{name} @{on_file}",
                    call,
                    concurrency=concurrency,
                    duration_s=duration_s,
                    meter=meter,
                )
            )
    print_table("Hang check (every call must answer)", hang)
    return _report(scales, by_scale, hang, noise, sizes, repeats)


def _row(rows: list[Measurement], name: str, concurrency: int) -> Measurement:
    return next(r for r in rows if r.name.startswith(name + " @") and r.concurrency == concurrency)


def _report(
    scales: tuple[int, ...],
    by_scale: dict[int, list[Measurement]],
    hang: list[Measurement],
    noise: dict[str, dict[str, Any]],
    sizes: dict[str, int],
    repeats: int,
) -> Mapping[str, object]:
    base = by_scale[scales[0]]
    print_cpu("Summary at 10 encounters", base)
    targets: dict[str, Any] = {}
    ours1, plain1 = _row(base, MEDIHAVEN, 1), _row(base, PLAIN, 1)
    ours16, plain16 = _row(base, MEDIHAVEN, 16), _row(base, PLAIN, 16)
    p50s = [_row(by_scale[n], MEDIHAVEN, 1).p50_ms for n in scales]
    # Flat: every point of the curve within 20 % of the lowest (a noisy first point must
    # not hide growth after it), and the end against the start for the record.
    growth = p50s[-1] / p50s[0] - 1
    curve = max(p50s) / min(p50s) - 1
    cpus = [_row(by_scale[n], MEDIHAVEN, 1).cpu_ms.get("total", float("nan")) for n in scales]
    targets["p50_flat"] = {
        "p50_ms_by_on_file": dict(zip(scales, p50s, strict=True)),
        "cpu_ms_by_on_file": dict(zip(scales, cpus, strict=True)),
        "growth": growth,
        "max_over_min": curve,
        "target": TARGET_FLAT,
        "met": curve <= TARGET_FLAT,
    }
    ratio = ours1.p50_ms / plain1.p50_ms
    targets["p50_vs_plain_c1"] = {
        "ratio": ratio,
        "target": TARGET_P50_RATIO,
        "met": ratio <= TARGET_P50_RATIO,
    }
    share = ours16.throughput / plain16.throughput
    targets["throughput_vs_plain_c16"] = {
        "share": share,
        "target": TARGET_THROUGHPUT_RATIO,
        "met": share >= TARGET_THROUGHPUT_RATIO,
    }
    for row in (ours1, ours16):
        cpu = row.cpu_ms.get("total", float("nan"))
        targets[f"cpu_ms_c{row.concurrency}"] = {
            "ms": cpu,
            "by_process": row.cpu_ms,
            "target": TARGET_CPU_MS,
            "met": cpu <= TARGET_CPU_MS,
        }
    # The HTTP cases only: the direct case's client is a mesh runtime signing proofs
    # (it stands for the gateway), not the lean HTTP client the rule is about.
    client = {
        f"{r.name} c{r.concurrency}": r.cpu_ms.get("client", 0.0) / r.cpu_ms["total"]
        for rows in by_scale.values()
        for r in rows
        if r.cpu_ms.get("total") and not r.name.startswith(DIRECT)
    }
    targets["client_share"] = {
        "by_case": client,
        "max": max(client.values()),
        "target": CLIENT_SHARE_MAX,
        "met": max(client.values()) < CLIENT_SHARE_MAX,
    }
    targets["no_hang"] = {
        "errors": {f"{r.name} c{r.concurrency}": r.errors for r in hang},
        "met": all(r.errors == 0 and r.calls > 0 for r in hang),
    }
    print("\nTargets (issue 17):")
    print(
        f"  p50 {scales[0]} -> {scales[-1]:,} encounters: {growth:+.0%}, highest over "
        f"lowest point {curve:+.0%} ({' / '.join(f'{p:.1f}' for p in p50s)} ms; target "
        f"<= +20 %); CPU per summary {' / '.join(f'{c:.1f}' for c in cpus)} ms"
    )
    print(f"  p50 vs plain monolith at c=1: {ratio:.2f}x (target <= 4x)")
    print(f"  throughput vs plain monolith at c=16: {share:.0%} (target >= 25 %)")
    for c in CONCURRENCY:
        print(
            f"  CPU per summary at c={c}: {targets[f'cpu_ms_c{c}']['ms']:.2f} ms "
            f"across all processes (target <= 8 ms)"
        )
    print(
        f"  lean HTTP client's CPU: at most {max(client.values()):.1%} of the measured "
        f"request's (must be < 15 %)"
    )
    hung = "/".join(str(c) for c in dict.fromkeys(r.concurrency for r in hang))
    print(f"  no hang at c={hung}: {targets['no_hang']['met']}")
    worst = max(v["p50_spread"] for v in noise.values())
    typical = statistics.median(v["p50_spread"] for v in noise.values())
    print(
        f"  noise: p50 spread (max-min)/median over {repeats} repeats: median {typical:.0%}, "
        f"worst {worst:.0%}"
    )
    png = _plot(scales, by_scale)
    result = {
        "by_on_file": {str(n): rows for n, rows in by_scale.items()},
        "hang_check": hang,
        "targets": targets,
        "noise": noise,
        "sizes": sizes,
        "repeats": repeats,
    }
    print(f"  written: {write_results('summary', result)} and {png}  (process logs: {LOGS})")
    return result


def _plot(scales: tuple[int, ...], by_scale: dict[int, list[Measurement]]) -> Any:
    series: dict[str, tuple[list[float], list[float]]] = {}
    xs = [float(n) for n in scales]
    for name, label in ((MEDIHAVEN, "Medihaven"), (PLAIN, "plain monolith")):
        rows = [_row(by_scale[n], name, 1) for n in scales]
        series[f"{label} p50"] = (xs, [r.p50_ms for r in rows])
        series[f"{label} p99"] = (xs, [r.p99_ms for r in rows])
        series[f"{label} CPU ms/request"] = (xs, [r.cpu_ms.get("total", 0.0) for r in rows])
    return plot(
        "summary_scaling",
        "Patient summary (10 shown) vs encounters on file, c=1",
        "encounters on file",
        series,
        ylabel="ms (latency; CPU per request)",
    )


if __name__ == "__main__":
    import uvloop

    uvloop.run(run())
