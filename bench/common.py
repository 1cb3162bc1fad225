"""Helpers shared by the benchmarks: timing loops, percentiles, tables, JSON results."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS = Path(__file__).with_name("results")


@dataclass
class Measurement:
    name: str
    concurrency: int
    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def throughput(self) -> float:
        return self.calls / self.seconds


async def measure(
    name: str,
    call: Callable[[], Awaitable[object]],
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 0.5,
) -> Measurement:
    """Run `call` from `concurrency` workers for `duration_s`; latency of every call."""
    latencies: list[float] = []
    stop_at = 0.0

    async def worker(record: bool) -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            await call()
            if record:
                latencies.append(time.perf_counter() - started)

    stop_at = time.perf_counter() + warmup_s
    await asyncio.gather(*(worker(False) for _ in range(concurrency)))
    started = time.perf_counter()
    stop_at = started + duration_s
    await asyncio.gather(*(worker(True) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return Measurement(
        name=name,
        concurrency=concurrency,
        calls=len(latencies),
        seconds=elapsed,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    )


def print_table(title: str, rows: list[Measurement]) -> None:
    print(f"\n{title}")
    print(f"{'case':<34}{'conc':>6}{'calls':>9}{'req/s':>11}{'p50 ms':>10}{'p99 ms':>10}")
    for r in rows:
        print(
            f"{r.name:<34}{r.concurrency:>6}{r.calls:>9}{r.throughput:>11.0f}"
            f"{r.p50_ms:>10.3f}{r.p99_ms:>10.3f}"
        )


def write_results(name: str, payload: Mapping[str, object]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=lambda o: asdict(o)))
    return path
