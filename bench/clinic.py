"""End to end: a mixed clinic workload through the gateway with real signatures.

Mix per request: 35 % patient search and 25 % patient summary (patient-data reads), 15 %
booking, 10 % new encounter, 15 % chat message. Two replicas of records and of the
keyvault; concurrency 1, 16 and 64. Baselines measured in the same run: the raw aio-pika
RPC echo and an unsigned, unencrypted FastAPI + MariaDB read of a patient. While the
highest concurrency runs, each process's CPU use is sampled to say which service
saturates first. Writes a table, JSON and a PNG plot of latency against concurrency.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aio_pika
import httpx

from bench.common import RESULTS, Measurement, measure, print_table, write_results
from bench.echo_contract import RAW_QUEUE
from bench.echo_server import raw_echo_server
from bench.mesh import LOGS, Signed, Staffing, bench_mesh
from bench.rpc import RawClient
from cli.sdk import sign_prescription
from tests.keyvault.support import unseal
from tests.mesh.fixtures import client_runtime
from tests.processes import Process

SERVICES = [
    "services.keyvault",
    "services.auth",
    "services.records",
    "services.scheduling",
    "services.chat",
    "services.audit",
]
CONCURRENCY = (1, 16, 64)
PATIENTS = 20
DOCTORS = 4


async def _setup(api: Signed, admin_token: str) -> dict[str, Any]:
    staff = Staffing(api, admin_token, "clinic")
    desk = await staff.add("receptionist", "desk")
    doctors = [await staff.add("physician", f"dr{i}") for i in range(DOCTORS)]
    hours = {
        "weekly": [
            {"weekday": d, "start": "00:00", "end": "23:30"}
            for d in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        ]
    }
    for doctor in doctors:
        await api.call(desk, "PUT", f"/api/v1/physicians/{doctor.account_id}/working-hours", hours)
    patients = []
    for i in range(PATIENTS):
        written = await api.call(
            desk,
            "POST",
            "/api/v1/patients",
            {
                "demographics": {
                    "given_name": f"Given{i}",
                    "family_name": f"Family{i}",
                    "date_of_birth": "1980-01-01",
                    "sex": "unknown",
                    "phone": f"+44 20 7946 {i:04d}",
                }
            },
        )
        patient_id = written["patient_id"]
        doctor = doctors[i % DOCTORS]
        for _ in range(2):
            encounter = await api.call(
                doctor,
                "POST",
                f"/api/v1/patients/{patient_id}/encounters",
                {"content": _encounter()},
            )
        body = sign_prescription(
            doctor.key,
            doctor.account_id,
            {
                "prescription_id": str(uuid.uuid4()),
                "patient_id": patient_id,
                "encounter_id": encounter["encounter_id"],
                "created_at": datetime.now(UTC).isoformat(),
                "medication": {
                    "drug_name": "Amoxicillin",
                    "strength": "500 mg",
                    "dosage_form": "capsule",
                    "dose": "1 capsule",
                    "route": "oral",
                    "frequency": "three times daily",
                    "duration_days": 7,
                    "quantity": 21,
                    "refills": 0,
                    "free_text": True,  # no catalog is loaded in this benchmark
                },
            },
        )
        await api.call(doctor, "POST", "/api/v1/prescriptions", body)
        patients.append((patient_id, i, doctor))
    conversations = []
    for doctor in doctors:
        c = await api.call(
            desk, "POST", "/api/v1/chat/direct", {"other_account_id": doctor.account_id}
        )
        conversations.append(c["conversation_id"])
    return {"desk": desk, "doctors": doctors, "patients": patients, "conversations": conversations}


def _encounter() -> dict[str, Any]:
    return {
        "occurred_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "chief_complaint": "Follow-up",
        "diagnoses": [{"code": "J45.909"}],
    }


def _workload(api: Signed, world: dict[str, Any]) -> Callable[[], Awaitable[object]]:
    desk, patients, conversations = world["desk"], world["patients"], world["conversations"]
    slots = itertools.count()
    rng = random.Random(7)
    tomorrow = date.today() + timedelta(days=2)

    async def one() -> object:
        patient_id, i, doctor = rng.choice(patients)
        pick = rng.random()
        if pick < 0.35:
            return await api.call(
                desk,
                "GET",
                "/api/v1/patients/search",
                family_name=f"Family{i}",
                date_of_birth="1980-01-01",
            )
        if pick < 0.60:
            return await api.call(doctor, "GET", f"/api/v1/patients/{patient_id}/summary")
        if pick < 0.75:
            k = next(slots)
            physician = world["doctors"][k % DOCTORS]
            day = tomorrow + timedelta(days=(k // DOCTORS) // 250)
            start = datetime.combine(day, datetime.min.time(), UTC) + timedelta(
                minutes=((k // DOCTORS) % 250) * 5
            )
            return await api.call(
                desk,
                "POST",
                "/api/v1/appointments",
                {
                    "patient_id": patient_id,
                    "physician_id": physician.account_id,
                    "start": start.isoformat(),
                    "end": (start + timedelta(minutes=5)).isoformat(),
                    "reason": "check-up",
                },
            )
        if pick < 0.85:
            return await api.call(
                doctor,
                "POST",
                f"/api/v1/patients/{patient_id}/encounters",
                {"content": _encounter()},
            )
        return await api.call(
            desk,
            "POST",
            f"/api/v1/chat/conversations/{rng.choice(conversations)}/messages",
            {"text": "patient waiting"},
        )

    return one


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(duration_s: float = 4.0) -> Mapping[str, object]:
    async with bench_mesh(SERVICES) as bench:
        settings = bench.settings
        extra = [
            Process("services.records", settings, LOGS),
            Process("services.keyvault", settings, LOGS),
        ]
        baseline = Process("bench.clinic_baseline", settings, LOGS)
        try:
            for proc in (*extra, baseline):
                await asyncio.to_thread(
                    proc.wait_ready if proc is not baseline else _wait_http,
                    *(() if proc is not baseline else (proc.url + "/docs",)),
                )
            async with client_runtime(settings, "clinic-ops") as ops:
                from contracts import keyvault as kv

                for status in await ops.rpc.gather(kv.STATUS, kv.StatusRequest(), window_s=0.5):
                    if isinstance(status, kv.StatusReply) and status.state is kv.VaultState.sealed:
                        await unseal(ops.rpc, bench.shares, instance=status.instance)
            limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
            async with httpx.AsyncClient(limits=limits, timeout=30) as http:
                api = Signed(http, bench.gateway.url)
                world = await _setup(api, bench.admin_token)
                workload = _workload(api, world)
                connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
                await raw_echo_server(connection)
                raw = RawClient(connection, RAW_QUEUE)
                await raw.start()

                async def plain() -> object:
                    return (
                        await http.get(f"{baseline.url}/plain/patients/{random.randrange(50)}")
                    ).json()

                rows: list[Measurement] = []
                cpu: dict[str, float] = {}
                for concurrency in CONCURRENCY:
                    rows.append(
                        await measure(
                            "raw aio-pika echo",
                            lambda: raw.call(b"{}"),
                            concurrency=concurrency,
                            duration_s=duration_s,
                        )
                    )
                    rows.append(
                        await measure(
                            "unsigned FastAPI + MariaDB read",
                            plain,
                            concurrency=concurrency,
                            duration_s=duration_s,
                        )
                    )
                    pids = {name: proc.popen.pid for name, proc in bench.processes.items()}
                    pids.update({"records#2": extra[0].popen.pid, "keyvault#2": extra[1].popen.pid})
                    pids["bench client (this process)"] = os.getpid()
                    before = {n: _cpu_seconds(p) for n, p in pids.items()}
                    rows.append(
                        await measure(
                            "clinic mix (signed)",
                            workload,
                            concurrency=concurrency,
                            duration_s=duration_s,
                        )
                    )
                    if concurrency == CONCURRENCY[-1]:
                        cpu = {n: _cpu_seconds(p) - before[n] for n, p in pids.items()}
                await connection.close()
        finally:
            for proc in (*extra, baseline):
                proc.stop()
    return _report(rows, cpu, duration_s)


def _wait_http(url: str) -> None:
    import time

    for _ in range(100):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def _report(
    rows: list[Measurement], cpu: dict[str, float], duration_s: float
) -> Mapping[str, object]:
    print_table("Clinic workload (mixed, signed) vs baselines", rows)
    by = {(r.name, r.concurrency): r for r in rows}
    ratios = {}
    for c in CONCURRENCY:
        mix, raw, plain = (
            by[(n, c)]
            for n in ("clinic mix (signed)", "raw aio-pika echo", "unsigned FastAPI + MariaDB read")
        )
        ratios[f"c{c}"] = {
            "throughput_vs_raw": mix.throughput / raw.throughput,
            "throughput_vs_plain": mix.throughput / plain.throughput,
            "p50_vs_raw": mix.p50_ms / raw.p50_ms,
            "p50_vs_plain": mix.p50_ms / plain.p50_ms,
            "p99_vs_raw": mix.p99_ms / raw.p99_ms,
            "p99_vs_plain": mix.p99_ms / plain.p99_ms,
        }
        r = ratios[f"c{c}"]
        print(
            f"  c{c}: throughput {r['throughput_vs_raw']:.1%} of raw echo, "
            f"{r['throughput_vs_plain']:.1%} of plain read; p50 {r['p50_vs_raw']:.1f}x raw, "
            f"{r['p50_vs_plain']:.1f}x plain; p99 {r['p99_vs_raw']:.1f}x raw, "
            f"{r['p99_vs_plain']:.1f}x plain"
        )
    busiest = sorted(cpu.items(), key=lambda kv: kv[1], reverse=True)
    print(f"  CPU use at concurrency {CONCURRENCY[-1]} (share of one core over {duration_s:g} s):")
    for name, seconds in busiest:
        print(f"    {name:<24} {seconds / duration_s:6.0%}")
    services = [(n, c) for n, c in busiest if not n.startswith("bench client")]
    if services:
        print(f"  the service that saturates first: {services[0][0]}")
    _plot(rows)
    result = {
        "rows": rows,
        "ratios": ratios,
        "cpu_share_at_max_concurrency": {n: s / duration_s for n, s in cpu.items()},
    }
    print(f"  written: {write_results('clinic', result)} and {RESULTS / 'clinic.png'}")
    return result


def _plot(rows: list[Measurement]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r.name for r in rows):
        series = [r for r in rows if r.name == name]
        xs = [r.concurrency for r in series]
        axis.plot(xs, [r.p50_ms for r in series], marker="o", label=f"{name} p50")
        axis.plot(xs, [r.p99_ms for r in series], marker="x", linestyle="--", label=f"{name} p99")
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xlabel("concurrency")
    axis.set_ylabel("latency (ms)")
    axis.set_title("Medihaven clinic workload: latency percentiles")
    axis.legend(fontsize=7)
    figure.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    figure.savefig(RESULTS / "clinic.png", dpi=110)


if __name__ == "__main__":
    asyncio.run(run())
