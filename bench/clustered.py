"""Single nodes against clustered engines, in one run: the clinic mix of `bench.clinic`
(same setup, same workload, same concurrencies, the lean client, one replica of each
service) first on the machine's own RabbitMQ, MariaDB and Redis, then on a three-node
RabbitMQ cluster, a three-node MariaDB Galera cluster and a Redis Sentinel set (a master,
two replicas, three Sentinels) started beside them by `mesh.cluster`.

Every process of the clustered mesh is given every node (`amqp_nodes`, `db_hosts`,
`redis_sentinels`) in the same order, so each engine's first node serves it: one Galera
node takes the writes and replicates them (the routing docs/clustering.md describes), the
quorum queues' leaders sit where they were declared, the Sentinel master takes the
gateway's nonces and buckets. Spreading connections over the nodes is a deployment
choice this measurement leaves out.

CPU per request: on single nodes the shared servers are charged as `bench.cpu` says (our
MariaDB threads, RabbitMQ and Redis net of their idle rate); the clustered engines are
this benchmark's own processes, so every node is charged exactly, replication included:
that is what clustering costs. Writes `clustered.json` and `clustered.png`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench import clinic
from bench.capacity import Measured, plan, render
from bench.common import (
    RESULTS,
    Measurement,
    duration,
    measure,
    pick,
    plot,
    print_cpu,
    print_table,
    write_results,
)
from bench.cpu import CpuMeter, shared_servers
from bench.http import LeanHttp
from bench.mesh import EVERY_SERVICE, Signed, bench_mesh
from mesh.cluster import galera, rabbitmq, sentinel
from mesh.db import connect_any
from mesh.settings import Settings

CONCURRENCY = (1, 16)
SINGLE, CLUSTERED = "single nodes", "clustered engines"


@dataclass(frozen=True)
class Engines:
    """Where the clustered engines are: the settings that point a mesh at them, the
    RabbitMQ node to provision the namespace on, and every node's pid (for the meter)."""

    settings: Mapping[str, Any]
    broker_node: str
    pids: Mapping[str, int]


@contextmanager
def clustered_engines() -> Iterator[Engines]:
    """The three local clusters, stopped and removed afterwards whatever happens."""
    # Under /tmp, short: RabbitMQ runs as its own user, a Galera socket path has a limit.
    base = Path(tempfile.mkdtemp(prefix="mhbench-cl-", dir="/tmp"))
    base.chmod(0o755)  # the rabbitmq user must reach its nodes' folders
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, base, True)
        bus = rabbitmq.up(base / "rabbitmq")
        stack.callback(rabbitmq.down, base / "rabbitmq")
        database = galera.up(base / "galera")
        stack.callback(database.down)
        redis = sentinel.up(base / "sentinel")
        stack.callback(sentinel.down, base / "sentinel")
        pids: dict[str, int] = {}
        for i, broker in enumerate(bus.nodes, 1):
            pids[f"rabbitmq-{i}"] = int(broker.pid_file.read_text().strip())
        for server in database.nodes:
            if server.pid is not None:
                pids[f"galera-{server.index + 1}"] = server.pid
        roles = {str(redis.master[1]): "redis master"}
        roles |= {str(p): f"redis replica-{i}" for i, (_, p) in enumerate(redis.replicas, 1)}
        roles |= {str(p): f"sentinel-{i}" for i, (_, p) in enumerate(redis.sentinels, 1)}
        pids |= {roles[port]: pid for port, pid in redis.pids.items() if port in roles}
        first = database.nodes[0]
        yield Engines(
            settings={
                "amqp_url": SecretStr(bus.urls[0]),
                "amqp_nodes": bus.addresses,
                "db_host": first.address.rsplit(":", 1)[0],
                "db_port": first.port,
                "db_hosts": database.hosts,
                "redis_sentinels": redis.sentinels_setting,
                "redis_sentinel_master": redis.master_name,
            },
            broker_node=bus.names[0],
            pids=pids,
        )


@dataclass
class Side:
    """One side's measured rows and what the capacity model needs besides CPU."""

    rows: list[Measurement]
    db_bytes_per_request: float
    rss_mb: dict[str, float]


async def _database_bytes(settings: Settings) -> int:
    """Data and index bytes of the benchmark's databases, statistics refreshed first."""
    conn, _ = await connect_any(settings)
    try:
        async with conn.cursor() as cur:
            prefix = settings.db_prefix.replace("_", "\\_") + "%"
            await cur.execute(
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA LIKE %s AND ENGINE = 'InnoDB'",
                (prefix,),
            )
            for schema, table in await cur.fetchall():
                await cur.execute(f"ANALYZE TABLE `{schema}`.`{table}`")
                await cur.fetchall()
            await cur.execute(
                "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) "
                "FROM information_schema.TABLES WHERE TABLE_SCHEMA LIKE %s",
                (prefix,),
            )
            row = await cur.fetchone()
            return int(row[0]) if row else 0
    finally:
        conn.close()


def _rss_mb(pids: Mapping[str, int]) -> dict[str, float]:
    """Resident memory of each process, MB (0 for one that is gone)."""
    found = {}
    for name, pid in pids.items():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                found[name] = int(line.split()[1]) / 1024
    return found


async def _mix(
    label: str, levels: tuple[int, ...], window_s: float, engines: Engines | None
) -> Side:
    """The clinic mix at each concurrency on one kind of engine."""
    tag = "clustered" if engines else "single"
    async with bench_mesh(
        EVERY_SERVICE,
        tag,
        engines=engines.settings if engines else None,
        broker_node=engines.broker_node if engines else None,
    ) as bench:
        async with LeanHttp(bench.gateway.url) as http:
            api = Signed(http)
            world = await clinic.setup(api, bench.admin_token)
            mix = clinic.workload(api, world)
            pids = {
                name.removeprefix("services."): proc.popen.pid
                for name, proc in bench.processes.items()
            }
            if engines:
                pids |= engines.pids
                meter = CpuMeter(bench.settings, pids, shared={})
            else:
                meter = CpuMeter(bench.settings, pids, shared=shared_servers())
            before = await _database_bytes(bench.settings)
            rows = [
                await measure(label, mix, concurrency=c, duration_s=window_s, meter=meter)
                for c in levels
            ]
            grown = await _database_bytes(bench.settings) - before
            calls = sum(r.calls + r.errors for r in rows)
            return Side(rows, max(grown, 0) / max(calls, 1), _rss_mb(pids))


async def run(duration_s: float | None = None) -> Mapping[str, object]:
    """Both sides, single nodes first (quick mode: concurrency 1 and 4, short windows)."""
    window_s = duration(duration_s if duration_s is not None else 5.0)
    levels = pick(CONCURRENCY, (1, 4))
    single = await _mix(SINGLE, levels, window_s, None)
    with clustered_engines() as engines:
        clustered = await _mix(CLUSTERED, levels, window_s, engines)
    return _report(single, clustered, levels)


def _engine_cpu(row: Measurement) -> dict[str, float]:
    """CPU ms per request of the engines alone (what clustering multiplies)."""
    engines = ("rabbitmq", "galera", "mariadbd", "redis", "sentinel")
    return {
        name: ms
        for name, ms in row.cpu_ms.items()
        if name.startswith(engines) and not name.endswith((" gross", " net", " idle"))
    }


def _report(single: Side, clustered: Side, levels: tuple[int, ...]) -> Mapping[str, object]:
    rows = single.rows + clustered.rows
    print_table("Clinic mix: single nodes vs clustered engines (same run)", rows)
    by = {(r.name, r.concurrency): r for r in rows}
    ratios: dict[str, dict[str, float]] = {}
    for c in levels:
        one, many = by[(SINGLE, c)], by[(CLUSTERED, c)]
        ratios[f"c{c}"] = {
            "throughput_clustered_vs_single": many.throughput / one.throughput,
            "p50_clustered_vs_single": many.p50_ms / one.p50_ms,
            "p99_clustered_vs_single": many.p99_ms / one.p99_ms,
            "cpu_ms_single": one.cpu_ms.get("total", 0.0),
            "cpu_ms_clustered": many.cpu_ms.get("total", 0.0),
            "engine_cpu_ms_single": sum(_engine_cpu(one).values()),
            "engine_cpu_ms_clustered": sum(_engine_cpu(many).values()),
        }
        r = ratios[f"c{c}"]
        print(
            f"  c{c}: clustered throughput {r['throughput_clustered_vs_single']:.0%} of single; "
            f"p50 {r['p50_clustered_vs_single']:.2f}x, p99 {r['p99_clustered_vs_single']:.2f}x; "
            f"CPU {r['cpu_ms_single']:.1f} -> {r['cpu_ms_clustered']:.1f} ms per request "
            f"(engines {r['engine_cpu_ms_single']:.1f} -> {r['engine_cpu_ms_clustered']:.1f})"
        )
    print_cpu("Clinic mix, by process", rows)
    series: dict[str, tuple[list[float], list[float]]] = {}
    for name in (SINGLE, CLUSTERED):
        mine = [r for r in rows if r.name == name]
        xs = [float(r.concurrency) for r in mine]
        series[f"{name} p50"] = (xs, [r.p50_ms for r in mine])
        series[f"{name} p99"] = (xs, [r.p99_ms for r in mine])
    png = plot(
        "clustered",
        "Clinic mix: single nodes vs clustered engines",
        "concurrency",
        series,
        logy=True,
    )
    busiest = clustered.rows[-1]  # the highest concurrency: the least idle work per request
    measured = Measured(busiest.cpu_ms, clustered.db_bytes_per_request, clustered.rss_mb)
    capacity = render(plan(measured))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "capacity.md").write_text(
        f"# Capacity model (from `bench.clustered`, c={busiest.concurrency})\n\n{capacity}"
    )
    print(f"\nCapacity model (docs/capacity.md) from these figures:\n{capacity}")
    result = {
        "rows": rows,
        "ratios": ratios,
        "engines": {CLUSTERED: _engine_cpu(busiest)},
        "db_bytes_per_request": {
            SINGLE: single.db_bytes_per_request,
            CLUSTERED: clustered.db_bytes_per_request,
        },
        "rss_mb": {SINGLE: single.rss_mb, CLUSTERED: clustered.rss_mb},
    }
    print(f"  written: {write_results('clustered', result)}, {png} and capacity.md")
    return result


if __name__ == "__main__":
    import uvloop

    uvloop.run(run())
