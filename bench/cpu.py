"""CPU per request across every process a request touches, from /proc/<pid>/stat
(utime + stime) deltas over the measured window, divided by the requests made.

Medihaven's own processes (gateway, services, the plain monolith) are the benchmark's
alone: their deltas are exact. RabbitMQ (beam.smp), MariaDB (mariadbd) and Redis are
shared with whatever else runs on the machine (other engineers' test runs), so for each
of them the meter reports:

- `gross`: the whole process's delta over the window;
- `idle`: its rate over an equal window just before, with the benchmark's load stopped
  (everything else on the machine, and the mesh's own background work), scaled;
- `net` = max(0, gross - idle): the estimate charged to the requests.

MariaDB runs one thread per connection, so its share is also measured exactly for the
threads serving this benchmark's connections (information_schema.PROCESSLIST.TID of the
connections on databases with the benchmark's prefix): `mariadbd (ours)`. That excludes
InnoDB's background threads (flushing, purge), so it is a lower bound; the total per
request uses it, and `mariadbd net` is reported beside it.

The client process (this one) is reported on its own (`client`), never in the total.

The benchmark's own processes also work when no request is in flight (outbox pollers,
the audit checkpoints and verified marks, heartbeats): that share is charged to the
requests (it is what running the mesh costs), and reported beside it for the record as
`<process> idle` (its rate in the idle window, over the measured window, per request).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import asyncmy

from bench.common import pick
from mesh.settings import Settings

TICK = os.sysconf("SC_CLK_TCK")
CLIENT = "client"
SHARED = ("rabbitmq", "mariadbd", "redis")


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        with open(path) as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


SERVER_PORTS = {"rabbitmq": 5672, "mariadbd": 3306, "redis": 6379}
"""The machine's own servers, told apart from other nodes of the same program (local
clusters started beside them) by the port they listen on."""


def _listening_pid(port: int) -> int | None:
    """The pid of the process listening on TCP `port` here (`ss`), if any."""
    try:
        out = subprocess.run(
            ["ss", "-ltnpH", f"sport = :{port}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"pid=(\d+)", out)
    return int(found.group(1)) if found else None


def shared_servers() -> dict[str, int]:
    """The pids of the machine's RabbitMQ node (not `rabbitmqctl`'s short-lived
    beam.smp), MariaDB and Redis: the ones on their standard ports, else (no `ss`) the
    first process of each program found."""
    found = {n: at for n, port in SERVER_PORTS.items() if (at := _listening_pid(port))}
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        comm = _comm(pid)
        if comm.startswith("beam.smp") and "rabbit boot" in _cmdline(pid):
            found.setdefault("rabbitmq", int(pid))
        elif comm in ("mariadbd", "mysqld"):
            found.setdefault("mariadbd", int(pid))
        elif comm == "redis-server":
            found.setdefault("redis", int(pid))
    return found


async def _our_mariadb_threads(settings: Settings) -> set[int]:
    """OS thread ids of the MariaDB connections on this benchmark's databases."""
    conn = await asyncmy.connect(
        host=settings.db_host,
        port=settings.db_port,
        user=settings.db_user,
        password=settings.db_password.get_secret_value(),
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT TID FROM information_schema.PROCESSLIST WHERE LEFT(DB, %s) = %s",
                (len(settings.db_prefix), settings.db_prefix),
            )
            return {int(r[0]) for r in await cur.fetchall() if r[0]}
    finally:
        conn.close()


@dataclass
class CpuSample:
    """CPU seconds per process over one measured window (see the module doc)."""

    seconds: float
    own: dict[str, float]
    gross: dict[str, float]
    idle: dict[str, float]
    own_idle: dict[str, float]
    mariadb_ours: float
    client: float

    def net(self, name: str) -> float:
        return max(0.0, self.gross.get(name, 0.0) - self.idle.get(name, 0.0))

    def charged(self) -> dict[str, float]:
        """CPU seconds charged to the requests, per process: own processes exactly,
        MariaDB by its threads serving our connections, RabbitMQ and Redis net."""
        out = dict(self.own)
        if "mariadbd" in self.gross:
            out["mariadbd (ours)"] = self.mariadb_ours
        for name in ("rabbitmq", "redis"):
            if name in self.gross:
                out[f"{name} (net)"] = self.net(name)
        return out

    def per_call_ms(self, calls: float) -> dict[str, float]:
        """Milliseconds per request: each charged process, `total`, the client, and the
        shared servers' gross/idle/net for the record."""
        calls = calls if calls > 0 else 1
        out = {n: s * 1000 / calls for n, s in self.charged().items()}
        out["total"] = sum(out.values())
        out[CLIENT] = self.client * 1000 / calls
        for name in self.gross:
            out[f"{name} gross"] = self.gross[name] * 1000 / calls
            out[f"{name} net"] = self.net(name) * 1000 / calls
        for name, seconds in self.own_idle.items():
            out[f"{name} idle"] = seconds * 1000 / calls
        return out


@dataclass
class CpuMeter:
    """Snapshots of every process's CPU around a measured window.

    `processes` maps a name to the pid of each process the benchmark started (their
    deltas are exact); the shared servers are found on the machine.
    """

    settings: Settings
    processes: Mapping[str, int]
    idle_s: float = field(default_factory=lambda: pick(1.5, 0.2))
    shared: dict[str, int] = field(default_factory=shared_servers)
    _start: dict[str, float] = field(default_factory=dict)
    _threads: dict[int, float] = field(default_factory=dict)
    _idle_rate: dict[str, float] = field(default_factory=dict)
    _own_idle_rate: dict[str, float] = field(default_factory=dict)
    _started_at: float = 0.0

    def _snapshot(self) -> dict[str, float]:
        snap = {n: cpu_seconds(p) for n, p in self.processes.items()}
        snap.update({n: cpu_seconds(p) for n, p in self.shared.items()})
        snap[CLIENT] = time.process_time()
        return snap

    async def measure_idle(self) -> None:
        """The shared servers' rate with this benchmark's load stopped (call just
        before the warm-up: nothing of ours is in flight)."""
        if self.idle_s <= 0:
            self._idle_rate = self._own_idle_rate = {}
            return
        before = {n: cpu_seconds(p) for n, p in self.shared.items()}
        own = {n: cpu_seconds(p) for n, p in self.processes.items()}
        started = time.perf_counter()
        await asyncio.sleep(self.idle_s)
        elapsed = time.perf_counter() - started
        self._idle_rate = {
            n: (cpu_seconds(p) - before[n]) / elapsed for n, p in self.shared.items()
        }
        self._own_idle_rate = {
            n: (cpu_seconds(p) - own[n]) / elapsed for n, p in self.processes.items()
        }

    async def start(self) -> None:
        tids = await _our_mariadb_threads(self.settings) if "mariadbd" in self.shared else set()
        pid = self.shared.get("mariadbd", 0)
        self._threads = {t: cpu_seconds(pid, t) for t in tids}
        self._start = self._snapshot()
        self._started_at = time.perf_counter()

    async def stop(self) -> CpuSample:
        end = self._snapshot()
        seconds = time.perf_counter() - self._started_at
        pid = self.shared.get("mariadbd", 0)
        ours = 0.0
        for tid, before in self._threads.items():
            after = cpu_seconds(pid, tid)
            if after >= before:  # 0.0: the connection closed meanwhile (not counted)
                ours += after - before
        delta = {n: end[n] - self._start[n] for n in end}
        return CpuSample(
            seconds=seconds,
            own={n: delta[n] for n in self.processes},
            gross={n: delta[n] for n in self.shared},
            idle={n: r * seconds for n, r in self._idle_rate.items()},
            own_idle={n: r * seconds for n, r in self._own_idle_rate.items()},
            mariadb_ours=ours,
            client=delta[CLIENT],
        )
