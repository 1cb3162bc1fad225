"""End to end: a mixed clinic workload through the gateway with real signatures.

Mix per request: 35 % patient search and 25 % patient summary (patient-data reads), 15 %
booking, 10 % new encounter, 15 % chat message. Two replicas of records and of the
keyvault; concurrency 1, 16 and 64, with the lean client (`bench.http`). Baseline in the
same run: the raw aio-pika RPC echo, its server in its own process (`bench.echo_server`);
the plain monolith doing the same work is `bench.records`' (the summary: a plain app
doing this whole mix would be a second product). At every concurrency, CPU per request
across every process, RabbitMQ and MariaDB included (`bench.cpu`), and each process's
share of a core at the highest, to say which service saturates first. Writes a table,
JSON and a PNG plot of latency against concurrency.

Every physician has a care relationship with their patients before recording anything:
an appointment booked by the desk during setup (records asks scheduling). The mesh runs
in a namespace of its own (`bench.mesh`); the raw echo connects as the bench's own
broker user, and the second keyvault replica is unsealed by the operator identity.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aio_pika

from bench import echo_server
from bench.common import (
    RESULTS,
    Measurement,
    duration,
    measure,
    pick,
    print_cpu,
    print_table,
    write_results,
)
from bench.cpu import CpuMeter
from bench.http import LeanHttp
from bench.mesh import EVERY_SERVICE, LOGS, Signed, Staffing, bench_mesh
from bench.rpc import RawClient
from contracts import keyvault as kv
from contracts.base import OPERATOR
from tests.keyvault.support import unseal
from tests.mesh.fixtures import client_runtime
from tests.processes import Process, process_env

CONCURRENCY = (1, 16, 64)
PATIENTS = 20
DOCTORS = 4


async def setup(api: Signed, admin_token: str) -> dict[str, Any]:
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
    # Tomorrow's appointments (the workload books from the day after): each patient's
    # physician then has a care relationship with them.
    first_visit = datetime.combine(
        date.today() + timedelta(days=1), datetime.min.time(), UTC
    ) + timedelta(hours=8)
    patients = []
    for i in range(PATIENTS):
        patient_id = await api.add_patient(desk, i, _born(i), phone=f"+44 20 7946 {i:04d}")
        doctor = doctors[i % DOCTORS]
        visit = first_visit + timedelta(minutes=10 * i)
        await api.call(
            desk,
            "POST",
            "/api/v1/appointments",
            {
                "patient_id": patient_id,
                "physician_id": doctor.account_id,
                "start": visit.isoformat(),
                "end": (visit + timedelta(minutes=5)).isoformat(),
                "reason": "first visit",
            },
        )
        for _ in range(2):
            encounter = await api.call(
                doctor,
                "POST",
                f"/api/v1/patients/{patient_id}/encounters",
                {"content": _encounter()},
            )
        medication = {
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
        }
        await api.prescribe(doctor, patient_id, encounter["encounter_id"], medication)
        patients.append((patient_id, i, doctor))
    conversations = []
    for doctor in doctors:
        c = await api.call(
            desk, "POST", "/api/v1/chat/direct", {"other_account_id": doctor.account_id}
        )
        conversations.append(c["conversation_id"])
    return {
        "admin": staff.admin,
        "desk": desk,
        "doctors": doctors,
        "patients": patients,
        "conversations": conversations,
    }


def _born(i: int) -> str:
    """Patients' birth dates apart (names alike with one birth date ask for a confirmation)."""
    return (date(1950, 1, 1) + timedelta(days=401 * i)).isoformat()


def _encounter() -> dict[str, Any]:
    return {
        "occurred_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "chief_complaint": "Follow-up",
        "diagnoses": [{"code": "J45.9"}],
    }


def workload(api: Signed, world: dict[str, Any]) -> Callable[[], Awaitable[object]]:
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
                date_of_birth=_born(i),
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


async def run(duration_s: float | None = None) -> Mapping[str, object]:
    """The whole benchmark (quick mode: concurrency 1 and 4, short windows)."""
    duration_s = duration(duration_s if duration_s is not None else 4.0)
    levels = pick(CONCURRENCY, (1, 4))
    async with bench_mesh(EVERY_SERVICE, "clinic") as bench:
        settings = bench.settings
        extra = [
            Process("services.records", settings, LOGS),
            Process("services.keyvault", settings, LOGS),
        ]
        echo = echo_server.start(process_env(settings))
        try:
            for proc in extra:
                await asyncio.to_thread(proc.wait_ready)
            await echo_server.wait_started(echo)
            async with client_runtime(settings, "clinic-ops", OPERATOR) as ops:
                for status in await ops.rpc.gather(kv.STATUS, kv.StatusRequest(), window_s=0.5):
                    if isinstance(status, kv.StatusReply) and status.state is kv.VaultState.sealed:
                        await unseal(ops.rpc, bench.shares, instance=status.instance)
            async with LeanHttp(bench.gateway.url) as http:
                api = Signed(http)
                world = await setup(api, bench.admin_token)
                mix = workload(api, world)
                connection = await aio_pika.connect(settings.amqp_url_for("testclient"))
                raw = RawClient(connection)
                await raw.start()
                pids = {
                    name.removeprefix("services."): proc.popen.pid
                    for name, proc in bench.processes.items()
                }
                pids.update({"records#2": extra[0].popen.pid, "keyvault#2": extra[1].popen.pid})
                meter = CpuMeter(settings, pids)
                rows: list[Measurement] = []
                for concurrency in levels:
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
                            "clinic mix (signed)",
                            mix,
                            concurrency=concurrency,
                            duration_s=duration_s,
                            meter=meter,
                        )
                    )
                await connection.close()
        finally:
            for proc in extra:
                proc.stop()
            echo.terminate()
            echo.wait(15)
    return _report(rows, levels)


def _report(rows: list[Measurement], levels: tuple[int, ...]) -> Mapping[str, object]:
    print_table("Clinic workload (mixed, signed) vs the raw echo", rows)
    by = {(r.name, r.concurrency): r for r in rows}
    ratios = {}
    for c in levels:
        mix, raw = by[("clinic mix (signed)", c)], by[("raw aio-pika echo", c)]
        ratios[f"c{c}"] = {
            "throughput_vs_raw": mix.throughput / raw.throughput,
            "p50_vs_raw": mix.p50_ms / raw.p50_ms,
            "p99_vs_raw": mix.p99_ms / raw.p99_ms,
            "cpu_ms_per_request": mix.cpu_ms.get("total", 0.0),
        }
        r = ratios[f"c{c}"]
        print(
            f"  c{c}: throughput {r['throughput_vs_raw']:.1%} of raw echo; p50 "
            f"{r['p50_vs_raw']:.1f}x raw, p99 {r['p99_vs_raw']:.1f}x raw; CPU "
            f"{r['cpu_ms_per_request']:.2f} ms per request across all processes"
        )
    mixes = [r for r in rows if r.name == "clinic mix (signed)"]
    print_cpu("Clinic mix", mixes)
    top = mixes[-1]
    shares = {
        n: ms * (top.calls + top.errors) / top.seconds / 1000
        for n, ms in top.cpu_ms.items()
        if n in top.cpu_ms and not n.endswith((" gross", " net", " idle")) and n != "total"
    }
    busiest = sorted(shares.items(), key=lambda kv: kv[1], reverse=True)
    print(f"  CPU use at concurrency {levels[-1]} (share of one core):")
    for name, share in busiest:
        print(f"    {name:<24} {share:6.0%}")
    services = [(n, c) for n, c in busiest if n != "client"]
    if services:
        print(f"  the process that saturates first: {services[0][0]}")
    _plot(rows)
    result = {"rows": rows, "ratios": ratios, "cpu_share_at_max_concurrency": shares}
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
    RESULTS.mkdir(parents=True, exist_ok=True)
    figure.savefig(RESULTS / "clinic.png", dpi=110)


if __name__ == "__main__":
    import uvloop

    uvloop.run(run())
