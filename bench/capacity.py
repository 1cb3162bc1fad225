"""A capacity model from measured figures: how many replicas of each service and what
engine sizes a hospital needs (docs/capacity.md explains the method and its numbers).

Inputs are what `bench.clustered` measures on the clustered engines: CPU milliseconds
per clinic-mix request for every process (each service, each RabbitMQ and Galera node,
the Redis master) and the database bytes each request adds. The assumptions about the
hospital (staff, how often each sends a request, the peak, the headroom) are named in
`Hospital`, so anyone can rerun the model with their own. Pure arithmetic: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

SERVICES = ("gateway", "auth", "records", "scheduling", "chat", "keyvault", "audit")


@dataclass(frozen=True)
class Hospital:
    """What is assumed about the place (defaults: a 500-bed hospital, docs/capacity.md)."""

    concurrent_staff: int = 300
    requests_per_staff_per_min: float = 6.0
    """An active user's API calls: a chart opened is a few, a chat message one."""
    peak_factor: float = 3.0
    """The busiest minutes (morning rounds, shift change) against the day's average."""
    busy_hours_per_day: float = 16.0
    """Hours a day at the average rate (nights are quieter, not idle)."""
    target_utilisation: float = 0.6
    """Share of a core a replica or node may use at peak: the rest is headroom."""
    min_replicas: int = 2
    """Never fewer: one replica lost must leave one serving."""


@dataclass(frozen=True)
class Measured:
    """Per clinic-mix request, from one `bench.clustered` run."""

    cpu_ms: Mapping[str, float]
    """CPU ms per request by process name (`bench.cpu`'s names)."""
    db_bytes_per_request: float = 0.0
    """Bytes every database together grew by, per request (data and indexes)."""
    rss_mb: Mapping[str, float] = field(default_factory=dict)
    """Resident memory of each process at the end of the run."""


@dataclass(frozen=True)
class Line:
    """One row of the plan: a service's replicas, or an engine's nodes and their size."""

    name: str
    cpu_ms: float
    cores_at_peak: float
    replicas: int
    cores_each: int
    memory_mb_each: int


@dataclass(frozen=True)
class Plan:
    peak_rps: float
    average_rps: float
    services: list[Line]
    engines: list[Line]
    storage_gb_per_year: float


def _node_share(cpu_ms: Mapping[str, float], prefix: str) -> float:
    """The busiest node of an engine (each node is sized for it: any may become it)."""
    nodes = [ms for name, ms in cpu_ms.items() if name.startswith(prefix) and "idle" not in name]
    return max(nodes, default=0.0)


def _memory(rss_mb: Mapping[str, float], prefix: str, floor_mb: int) -> int:
    """Memory to give one replica or node: what it used, doubled for growth, at least
    `floor_mb`, rounded up to 256 MB."""
    used = max((mb for n, mb in rss_mb.items() if n.startswith(prefix)), default=0.0)
    return max(floor_mb, math.ceil(used * 2 / 256) * 256)


def plan(measured: Measured, hospital: Hospital | None = None) -> Plan:
    """Replicas per service and engine node sizes for `hospital` at its peak."""
    h = hospital or Hospital()
    average = h.concurrent_staff * h.requests_per_staff_per_min / 60
    peak = average * h.peak_factor
    services = []
    for name in SERVICES:
        ms = measured.cpu_ms.get(name, 0.0)
        cores = peak * ms / 1000
        # Python replicas use one core each; one more than the load needs, so losing
        # one (a node, a deploy) keeps the rest under the target.
        replicas = max(h.min_replicas, math.ceil(cores / h.target_utilisation) + 1)
        memory = _memory(measured.rss_mb, name, 256)
        services.append(Line(name, ms, cores, replicas, 1, memory))
    engines = []
    for label, prefix, nodes, floor_mb in (
        ("RabbitMQ (quorum queues)", "rabbitmq-", 3, 2048),
        ("MariaDB Galera", "galera-", 3, 4096),
        ("Redis (Sentinel master)", "redis master", 3, 512),
    ):
        ms = _node_share(measured.cpu_ms, prefix)
        # With one of three nodes lost, the two left take its share too.
        cores = peak * ms / 1000 * nodes / (nodes - 1)
        each = max(2, math.ceil(cores / h.target_utilisation))
        memory = _memory(measured.rss_mb, prefix, floor_mb)
        engines.append(Line(label, ms, cores, nodes, each, memory))
    requests_per_year = average * 3600 * h.busy_hours_per_day * 365
    storage = requests_per_year * measured.db_bytes_per_request / 1e9
    return Plan(peak, average, services, engines, storage)


def render(result: Plan, hospital: Hospital | None = None) -> str:
    """The plan as a Markdown section (`bench/results/capacity.md`, docs/capacity.md)."""
    h = hospital or Hospital()
    lines = [
        f"Hospital: {h.concurrent_staff} concurrent staff, {h.requests_per_staff_per_min:g} "
        f"requests a minute each, peak {h.peak_factor:g}x the average: "
        f"**{result.average_rps:.0f} requests/s on average, {result.peak_rps:.0f} at peak**; "
        f"replicas and nodes sized to {h.target_utilisation:.0%} of a core at peak.",
        "",
        "| service | CPU ms per request | cores at peak | replicas (1 core each) | memory each |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for line in result.services:
        lines.append(
            f"| {line.name} | {line.cpu_ms:.2f} | {line.cores_at_peak:.2f} | {line.replicas} "
            f"| {line.memory_mb_each} MB |"
        )
    lines += [
        "",
        "| engine | CPU ms per request (busiest node) | cores at peak, one node lost "
        "| nodes | cores each | memory each |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for line in result.engines:
        lines.append(
            f"| {line.name} | {line.cpu_ms:.2f} | {line.cores_at_peak:.2f} | {line.replicas} "
            f"| {line.cores_each} | {line.memory_mb_each} MB |"
        )
    lines += [
        "",
        f"Database growth: **{result.storage_gb_per_year:.0f} GB a year** on every Galera node "
        f"({h.busy_hours_per_day:g} busy hours a day at the average rate).",
    ]
    return "\n".join(lines) + "\n"
