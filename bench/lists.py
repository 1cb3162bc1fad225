"""List routes as what is on file grows (issue 17: cost bounded by the page).

- Calendar: a physician's signed `GET /api/v1/physicians/{id}/calendar?span=week` for a
  week holding 10 appointments and for one holding 1,000 (booked through the gateway by
  the desk, SEED_CONCURRENCY at a time).
- Chat: `GET /api/v1/chat/conversations` for a user one of whose conversations holds 10
  messages, then 10,000 (sent through the gateway, SEND_CONCURRENCY at a time: the sends
  are also the hang check of concurrent writes, every one must answer).

Every service a process, in a namespace of its own (`bench.mesh`); the lean client
(`bench.http`); CPU per request across every process (`bench.cpu`); REPEATS runs per
point, medians and spread. Plots: `bench/results/calendar.png`, `chat_list.png`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from bench.common import (
    Measurement,
    duration,
    measure,
    median_of,
    pick,
    plot,
    print_table,
    spread,
    write_results,
)
from bench.cpu import CpuMeter
from bench.http import LeanHttp
from bench.mesh import EVERY_SERVICE, Actor, BenchMesh, Signed, Staffing, bench_mesh
from bench.records import mesh_pids

APPOINTMENTS = (10, 1000)
MESSAGES = (10, 10_000)
QUICK_APPOINTMENTS = (3, 8)
QUICK_MESSAGES = (3, 8)
PATIENTS = 20
REPEATS = 3
SEED_CONCURRENCY = 8
SEND_CONCURRENCY = 16
SLOT = timedelta(minutes=5)


async def _pool(count: int, concurrency: int, one: Callable[[int], Awaitable[object]]) -> int:
    """Run one(i) for i < count, `concurrency` at a time; returns the failures."""
    queue = list(range(count))
    failures: list[str] = []

    async def worker() -> None:
        while queue:
            i = queue.pop(0)
            try:
                await asyncio.wait_for(one(i), 30)
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}"[:200])

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if failures:
        print(f"  {len(failures)} of {count} failed; first: {failures[0]}")
    return len(failures)


async def _repeat(
    name: str,
    call: Callable[[], Awaitable[object]],
    meter: CpuMeter,
    duration_s: float,
    repeats: int,
    noise: dict[str, Any],
) -> Measurement:
    runs = [
        await measure(name, call, concurrency=1, duration_s=duration_s, meter=meter)
        for _ in range(repeats)
    ]
    noise[name] = {
        "p50_runs": [r.p50_ms for r in runs],
        "p50_spread": spread([r.p50_ms for r in runs]),
        "cpu_total_runs": [r.cpu_ms.get("total", 0.0) for r in runs],
    }
    return median_of(name, runs)


async def calendar(
    api: Signed,
    desk: Actor,
    doctor: Actor,
    patients: list[str],
    meter: CpuMeter,
    duration_s: float,
    repeats: int,
    noise: dict[str, Any],
    appointments: tuple[int, ...],
) -> tuple[list[Measurement], dict[str, int]]:
    today = date.today()
    next_monday = today + timedelta(days=7 - today.weekday())
    rows, failed = [], {}
    for i, count in enumerate(appointments):
        monday = next_monday + timedelta(weeks=i + 1)
        first = datetime.combine(monday, time(12), UTC)

        async def book(k: int, first: datetime = first) -> object:
            start = first + SLOT * k
            return await api.call(
                desk,
                "POST",
                "/api/v1/appointments",
                {
                    "patient_id": patients[k % len(patients)],
                    "physician_id": doctor.account_id,
                    "start": start.isoformat(),
                    "end": (start + SLOT).isoformat(),
                    "reason": "check-up",
                },
            )

        failed[f"book {count}"] = await _pool(count, SEED_CONCURRENCY, book)
        path = f"/api/v1/physicians/{doctor.account_id}/calendar"
        check = await api.call(doctor, "GET", path, day=monday.isoformat(), span="week")
        print(f"  week of {monday}: {len(check['appointments'])} appointments shown")

        async def read(monday: date = monday, path: str = path) -> None:
            await api.send(doctor, "GET", path, day=monday.isoformat(), span="week")

        rows.append(
            await _repeat(
                f"calendar week, {count} appointments", read, meter, duration_s, repeats, noise
            )
        )
    return rows, failed


async def chat_list(
    api: Signed,
    desk: Actor,
    doctor: Actor,
    others: list[Actor],
    meter: CpuMeter,
    duration_s: float,
    repeats: int,
    noise: dict[str, Any],
    messages: tuple[int, ...],
) -> tuple[list[Measurement], dict[str, int]]:
    main = await api.call(
        desk, "POST", "/api/v1/chat/direct", {"other_account_id": doctor.account_id}
    )
    conversation = main["conversation_id"]
    for other in others:  # a few more conversations, a message each
        c = await api.call(
            desk, "POST", "/api/v1/chat/direct", {"other_account_id": other.account_id}
        )
        await api.call(
            other,
            "POST",
            f"/api/v1/chat/conversations/{c['conversation_id']}/messages",
            {"text": "hi"},
        )
    rows, failed, sent = [], {}, 0
    for count in messages:

        async def send(k: int) -> object:
            sender = doctor if k % 2 else desk
            return await api.call(
                sender,
                "POST",
                f"/api/v1/chat/conversations/{conversation}/messages",
                {"text": f"patient in room {k % 7} is ready for you"},
            )

        started = asyncio.get_running_loop().time()
        failed[f"send {count - sent}"] = await _pool(count - sent, SEND_CONCURRENCY, send)
        elapsed = asyncio.get_running_loop().time() - started
        print(
            f"  {count - sent} messages sent at concurrency {SEND_CONCURRENCY} in "
            f"{elapsed:.1f} s ({(count - sent) / elapsed:.0f}/s)"
        )
        sent = count

        async def read() -> None:
            await api.send(desk, "GET", "/api/v1/chat/conversations")

        rows.append(
            await _repeat(
                f"chat conversation list, {count} messages", read, meter, duration_s, repeats, noise
            )
        )
    return rows, failed


async def run(duration_s: float | None = None, repeats: int | None = None) -> Mapping[str, object]:
    """The whole benchmark (quick mode: a few appointments and messages, one repeat)."""
    window, repeats = duration(duration_s), repeats or pick(REPEATS, 1)
    async with bench_mesh(EVERY_SERVICE, "lists") as bench, LeanHttp(bench.gateway.url) as http:
        return await _run(bench, Signed(http), window, repeats)


async def _run(
    bench: BenchMesh, api: Signed, duration_s: float, repeats: int
) -> Mapping[str, object]:
    staff = Staffing(api, bench.admin_token, "lists")
    desk = await staff.add("receptionist", "desk")
    doctor = await staff.add("physician", "dr")
    others = [await staff.add("physician", f"dr{i}") for i in range(3)]
    hours = {
        "weekly": [
            {"weekday": d, "start": "00:00", "end": "24:00"}
            for d in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        ]
    }
    await api.call(desk, "PUT", f"/api/v1/physicians/{doctor.account_id}/working-hours", hours)
    patients = []
    appointments = pick(APPOINTMENTS, QUICK_APPOINTMENTS)
    messages = pick(MESSAGES, QUICK_MESSAGES)
    for i in range(pick(PATIENTS, 4)):
        born = (date(1950, 1, 1) + timedelta(days=401 * i)).isoformat()
        patients.append(await api.add_patient(desk, i, born))
    meter = CpuMeter(bench.settings, mesh_pids(bench))
    noise: dict[str, Any] = {}
    cal, cal_failed = await calendar(
        api, desk, doctor, patients, meter, duration_s, repeats, noise, appointments
    )
    print_table(f"Calendar week (medians of {repeats})", cal)
    chat, chat_failed = await chat_list(
        api, desk, doctor, others, meter, duration_s, repeats, noise, messages
    )
    print_table(f"Chat conversation list (medians of {repeats})", chat)
    growth = {
        "calendar_p50_x": cal[-1].p50_ms / cal[0].p50_ms,
        "chat_list_p50_x": chat[-1].p50_ms / chat[0].p50_ms,
    }
    print(
        f"  calendar p50 {cal[0].p50_ms:.1f} -> {cal[-1].p50_ms:.1f} ms "
        f"({growth['calendar_p50_x']:.1f}x for {appointments[-1] / appointments[0]:.0f}x the "
        f"appointments); chat list p50 "
        f"{chat[0].p50_ms:.1f} -> {chat[-1].p50_ms:.1f} ms ({growth['chat_list_p50_x']:.2f}x "
        f"for {messages[-1] / messages[0]:.0f}x the messages in one conversation)"
    )
    failures = {**cal_failed, **chat_failed}
    print(f"  writes that failed or hung while seeding: {sum(failures.values())} ({failures})")
    pngs = [
        _plot(
            "calendar",
            "Calendar week read vs appointments in the week",
            "appointments",
            appointments,
            cal,
        ),
        _plot(
            "chat_list",
            "Chat conversation list vs messages in one conversation",
            "messages in one conversation",
            messages,
            chat,
        ),
    ]
    result = {
        "calendar": cal,
        "chat_list": chat,
        "growth": growth,
        "seed_failures": failures,
        "noise": noise,
    }
    print(f"  written: {write_results('lists', result)} and {', '.join(map(str, pngs))}")
    return result


def _plot(name: str, title: str, xlabel: str, xs: tuple[int, ...], rows: list[Measurement]) -> Any:
    x = [float(v) for v in xs]
    return plot(
        name,
        title,
        xlabel,
        {
            "p50 ms": (x, [r.p50_ms for r in rows]),
            "p99 ms": (x, [r.p99_ms for r in rows]),
            "CPU ms/request (all processes)": (x, [r.cpu_ms.get("total", 0.0) for r in rows]),
        },
        ylabel="ms",
    )


if __name__ == "__main__":
    import uvloop

    uvloop.run(run())
