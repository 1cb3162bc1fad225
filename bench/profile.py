"""Where the CPU of one patient summary goes (issue 17: profile first, then take the
levers that pay): py-spy samples the gateway, records, keyvault, audit and auth
processes while physicians read summaries through the gateway (the `bench.records`
setup: 10 encounters, 5 prescriptions), and the CPU meter (`bench.cpu`) measures each
process's CPU per summary over the same window.

py-spy records on-CPU Python stacks only (idle threads are left out), `--nonblocking`
(the processes are not paused), aggregated by function. For each process this writes
the share of its samples by kind of work (by the innermost frame's package: JSON and
base64, pydantic, AMQP client, crypto, DB driver, HTTP server, asyncio, logging,
Medihaven's own code), those shares as milliseconds per summary, the top functions by
own time, and Medihaven's functions by inclusive time, to `bench/results/profile.md`
(and `profile.json`, the raw stacks in `bench/results/profile/`).

Needs py-spy (`pip install py-spy`) and permission to ptrace the processes (root, or
`kernel.yama.ptrace_scope = 0`).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.common import RESULTS, measure, pick, write_results
from bench.cpu import CpuMeter
from bench.http import LeanHttp
from bench.mesh import Signed, bench_mesh
from bench.records import SERVICES, mesh_pids, seed_patient

PROFILED = ("gateway", "records", "keyvault", "audit", "auth")
DURATION_S = 20
RATE = 100
CONCURRENCY = 4
ROOT = Path(__file__).resolve().parents[1]
KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("JSON / base64 (message bodies)", ("json/", "base64", "binascii", "orjson")),
    ("pydantic (model building, validation)", ("pydantic",)),
    ("AMQP client (aio-pika, aiormq, pamqp)", ("aio_pika", "aiormq", "pamqp")),
    ("crypto (Ed25519, AEAD, hashes)", ("cryptography", "nacl", "hashlib", "hmac", "ed25519")),
    ("DB driver (asyncmy)", ("asyncmy", "aiomysql", "pymysql")),
    ("Redis client", ("redis/",)),
    ("HTTP server (uvicorn, starlette, fastapi)", ("uvicorn", "starlette", "fastapi", "httptools")),
    ("logging, metrics, tracing", ("structlog", "logging", "prometheus", "opentelemetry")),
)
OURS = "Medihaven code (mesh, services, gateway, contracts)"
LOOP = "event loop, asyncio streams (scheduling, socket reads not charged to a library)"
OTHER = "other (interpreter, other libraries)"
LOOP_FRAMES = ("Runner.run ", "run_until_complete ", "run_forever ")
ROOTS = ("<module> ", "serve (")
IDLE = (
    "epoll_pwait ",
    "epoll_wait ",
    "poll ",
    "select ",
    "futex",
    "__futex",
    "do_futex_wait",
    "nanosleep",
    "clock_nanosleep",
    "sem_wait",
    "sem_timedwait",
    "pthread_cond_wait",
    "pthread_cond_timedwait",
)
WAITING = ("PyThread_acquire_lock_timed ", "take_gil ", "_queue_SimpleQueue_get ")
"""Native leaves (and frames near the leaf) of a thread waiting, not computing (py-spy's
`--native` keeps them): such samples are dropped."""


def _waiting(frames: list[str]) -> bool:
    return frames[-1].startswith(IDLE) or any(f.startswith(WAITING) for f in frames[-3:])


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    return found


def _path(frame: str) -> str:
    return frame.rsplit(" (", 1)[-1].rstrip(")")


def _python(frame: str) -> bool:
    path = _path(frame)
    return path.endswith(".py") or path == "<string>"


def _file(frame: str) -> str:
    """The file of a py-spy frame `function (path)`, shortened to its package."""
    path = _path(frame)
    for marker in ("site-packages/", "/lib/python3.11/", str(ROOT) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _ours(frame: str) -> bool:
    path = _path(frame)
    return path.startswith(str(ROOT)) and "/.venv/" not in path


def _stdlib(frame: str) -> bool:
    path = _path(frame)
    return ("/lib/python3.11/" in path and "site-packages" not in path) or path == "<string>"


def _kind(frame: str) -> str | None:
    """The kind of a Python frame's work, or None for the standard library's generic
    machinery (asyncio, re, typing…), which is charged to its caller."""
    if _ours(frame):
        return OURS
    path = _file(frame)
    for kind, markers in KINDS:
        if any(m in path for m in markers):
            return kind
    return None if _stdlib(frame) else OTHER


def _charged(frames: list[str]) -> str:
    """The kind of work a sample is: that of its innermost Python frame that is not the
    standard library's generic machinery (a socket write from asyncio's StreamWriter is
    the cost of the library that wrote), or the event loop's."""
    for frame in reversed(frames):
        if any(frame.startswith(m) for m in LOOP_FRAMES):
            return LOOP
        if _python(frame):
            kind = _kind(frame)
            if kind is not None:
                return kind
    return LOOP


def _short(frame: str) -> str:
    name = frame.rsplit(" (", 1)[0]
    return f"{name} ({_file(frame)})"


def analyse(raw: Path) -> dict[str, Any]:
    """Shares of a py-spy raw (collapsed stacks) file, waiting threads left out."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    total = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if _waiting(frames):
            idle += count
            continue
        total += count
        python = [f for f in frames if _python(f)]
        own[_short(python[-1] if python else frames[-1])] += count
        kinds[_charged(frames)] += count
        for frame in {f for f in python if _ours(f) and not f.startswith(ROOTS)}:
            inclusive[_short(frame)] += count
    share = (lambda n: n / total) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "idle_samples_dropped": idle,
        "kinds": {k: share(n) for k, n in kinds.most_common()},
        "top_own": [(f, share(n)) for f, n in own.most_common(12)],
        "top_inclusive_ours": [(f, share(n)) for f, n in inclusive.most_common(15)],
    }


async def run(duration_s: float | None = None, native: bool = True) -> Mapping[str, object]:
    """Profile the summary (quick mode: a 5-second window)."""
    duration_s = duration_s or pick(DURATION_S, 5)
    spy = py_spy()
    out = RESULTS / "profile"
    out.mkdir(parents=True, exist_ok=True)
    async with bench_mesh(SERVICES, "profile") as bench, LeanHttp(bench.gateway.url) as http:
        api = Signed(http)
        doctor, patient_id = await seed_patient(api, bench.admin_token)
        path = f"/api/v1/patients/{patient_id}/summary"
        pids = mesh_pids(bench)

        async def summary() -> None:
            await api.send(doctor, "GET", path)

        await measure("warm-up", summary, concurrency=CONCURRENCY, duration_s=pick(2.0, 0.3))
        spies = {
            name: subprocess.Popen(  # noqa: ASYNC220 - started once, before the window
                [
                    spy,
                    "record",
                    "-p",
                    str(pids[name]),
                    "-d",
                    str(int(duration_s)),
                    "-r",
                    str(RATE),
                    "-f",
                    "raw",
                    "--nolineno",
                    "--full-filenames",
                    *(["--native"] if native else ["--nonblocking"]),
                    "-o",
                    str(out / f"{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for name in PROFILED
            if name in pids
        }
        await asyncio.sleep(1.0)  # py-spy attaches
        meter = CpuMeter(bench.settings, pids)
        row = await measure(
            "summary via gateway (profiled)",
            summary,
            concurrency=CONCURRENCY,
            duration_s=duration_s - 3,
            meter=meter,
        )
        for name, proc in spies.items():
            _, err = await asyncio.to_thread(proc.communicate)
            if proc.returncode:
                print(f"py-spy on {name} failed: {err.decode()[-500:]}")
    profiles = {
        name: analyse(out / f"{name}.txt") for name in spies if (out / f"{name}.txt").exists()
    }
    return _report(profiles, row.cpu_ms, row.calls, row.p50_ms)


def _report(
    profiles: dict[str, dict[str, Any]], cpu_ms: dict[str, float], calls: int, p50: float
) -> Mapping[str, object]:
    lines = [
        "# Where the CPU of one patient summary goes",
        "",
        f"`python -m bench.profile`: {calls} summaries through the gateway at concurrency "
        f"{CONCURRENCY} (p50 {p50:.1f} ms while sampled), py-spy at {RATE} Hz on each "
        "process (`--native`: Python and C stacks; samples of a waiting thread dropped), "
        "classed by the innermost Python frame that is not the standard library's generic "
        "machinery. CPU per summary from /proc over the same window (`bench.cpu`; the shared "
        "servers net of their idle rate; py-spy pauses a process ~100 times a second, so "
        "these figures run a little above `bench.records`').",
        "",
        "## CPU per summary by process",
        "",
        "| process | ms per summary | share of the total |",
        "| --- | ---: | ---: |",
    ]
    total = cpu_ms.get("total", 0.0) or 1.0
    for name, ms in sorted(
        ((n, v) for n, v in cpu_ms.items() if not n.endswith((" gross", " net", " idle"))),
        key=lambda kv: -kv[1],
    ):
        if name in ("total", "client"):
            continue
        lines.append(f"| {name} | {ms:.2f} | {ms / total:.0%} |")
    lines += [
        f"| **total** | **{cpu_ms.get('total', 0.0):.2f}** | 100 % |",
        f"| (client, not in the total) | {cpu_ms.get('client', 0.0):.2f} | |",
        "",
        "## By kind of work (ms per summary = the process's share x its CPU per summary)",
        "",
    ]
    kinds = [k for k, _ in KINDS] + [OURS, LOOP, OTHER]
    names = list(profiles)
    lines.append("| kind | " + " | ".join(names) + " | all |")
    lines.append("| --- |" + " ---: |" * (len(names) + 1))
    for kind in kinds:
        cells, together = [], 0.0
        for name in names:
            share = profiles[name]["kinds"].get(kind, 0.0)
            ms = share * cpu_ms.get(name, 0.0)
            together += ms
            cells.append(f"{share:.0%} ({ms:.2f})")
        lines.append(f"| {kind} | " + " | ".join(cells) + f" | {together:.2f} ms |")
    for name in names:
        p = profiles[name]
        lines += [
            "",
            f"## {name}: {cpu_ms.get(name, 0.0):.2f} ms per summary, {p['samples']} samples",
            "",
            "| innermost Python function (own time, native code below it included) | share |",
            "| --- | ---: |",
        ]
        lines += [f"| `{f}` | {s:.1%} |" for f, s in p["top_own"]]
        lines += ["", "| Medihaven functions, inclusive | share |", "| --- | ---: |"]
        lines += [f"| `{f}` | {s:.1%} |" for f, s in p["top_inclusive_ours"]]
    text = "\n".join(lines) + "\n"
    path = RESULTS / "profile.md"
    path.write_text(text)
    print(text)
    result = {"cpu_ms": cpu_ms, "profiles": profiles, "calls": calls, "p50_ms": p50}
    print(f"  written: {path} and {write_results('profile', result)}")
    return result


if __name__ == "__main__":
    import uvloop

    uvloop.run(run())
