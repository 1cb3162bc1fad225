"""Helpers shared by the benchmarks: timing loops, percentiles, CPU per request, tables,
repeats and their medians, JSON results and plots, and the quick mode.

Quick mode (`python -m bench --quick`, or `MEDIHAVEN_BENCH_QUICK=1`): every benchmark
with tiny sizes and short windows, to check that it runs and reports (the smoke test,
`tests/test_bench.py`); its figures mean nothing. `MEDIHAVEN_BENCH_RESULTS` names another
folder for the results (the smoke test writes to a temporary one).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from bench.cpu import CpuMeter

RESULTS = Path(os.environ.get("MEDIHAVEN_BENCH_RESULTS") or Path(__file__).with_name("results"))
QUICK_ENV = "MEDIHAVEN_BENCH_QUICK"
QUICK_DURATION_S = 0.3
T = TypeVar("T")


def quick() -> bool:
    """Quick mode (read at call time, so `python -m bench --quick` can set it)."""
    return os.environ.get(QUICK_ENV, "") not in ("", "0")


def pick(full: T, small: T) -> T:
    """`full` for a real run, `small` in quick mode."""
    return small if quick() else full


def duration(full_s: float | None) -> float:
    """A measured window: `full_s` (or the quick mode's)."""
    return pick(3.0 if full_s is None else full_s, QUICK_DURATION_S)


CALL_TIMEOUT_S = 30.0
"""A call that takes longer counts as hung (an error), and the run goes on."""


@dataclass
class Measurement:
    name: str
    concurrency: int
    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    first_error: str | None = None
    cpu_ms: dict[str, float] = field(default_factory=dict)
    """CPU milliseconds per call, by process (`bench.cpu`): `total` across every process
    the request touched, and `client` (this process, not in the total)."""

    @property
    def throughput(self) -> float:
        return self.calls / self.seconds


async def measure(
    name: str,
    call: Callable[[], Awaitable[object]],
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float | None = None,
    meter: CpuMeter | None = None,
    until: Callable[[], Awaitable[bool]] | None = None,
) -> Measurement:
    """Run `call` from `concurrency` workers for `duration_s`; latency of every call that
    succeeds; a call that raises or takes over CALL_TIMEOUT_S counts as an error. With a
    `meter`, CPU per call across processes over the measured window (after an idle window
    for the shared servers and the warm-up). With `until`, the window ends as soon as it
    answers true (asked every 0.2 s), `duration_s` being then the longest it may last."""
    latencies: list[float] = []
    errors: list[str] = []
    stop_at = 0.0

    async def worker(record: bool) -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                await asyncio.wait_for(call(), CALL_TIMEOUT_S)
            except Exception as exc:  # counted and shown: a benchmark reports, never hides
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                await asyncio.sleep(0.01)
                continue
            if record:
                latencies.append(time.perf_counter() - started)

    if meter is not None:
        await meter.measure_idle()
    stop_at = time.perf_counter() + (pick(0.5, 0.1) if warmup_s is None else warmup_s)
    await asyncio.gather(*(worker(False) for _ in range(concurrency)))
    errors.clear()
    if meter is not None:
        await meter.start()
    started = time.perf_counter()
    stop_at = started + duration_s

    async def watch() -> None:
        nonlocal stop_at
        assert until is not None
        while time.perf_counter() < stop_at:
            if await until():
                stop_at = time.perf_counter()
                return
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch()) if until is not None else None
    await asyncio.gather(*(worker(True) for _ in range(concurrency)))
    if watcher is not None:
        await watcher
    elapsed = time.perf_counter() - started
    sample = await meter.stop() if meter is not None else None
    latencies.sort()
    return Measurement(
        name=name,
        concurrency=concurrency,
        calls=len(latencies),
        seconds=elapsed,
        p50_ms=statistics.median(latencies) * 1000 if latencies else float("nan"),
        p99_ms=(
            latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
            if latencies
            else float("nan")
        ),
        errors=len(errors),
        first_error=errors[0] if errors else None,
        cpu_ms=sample.per_call_ms(len(latencies) + len(errors)) if sample else {},
    )


async def against_baseline(
    baseline: tuple[str, Callable[[], Awaitable[object]]],
    ours: tuple[str, Callable[[], Awaitable[object]]],
    duration_s: float,
) -> tuple[list[Measurement], dict[str, dict[str, float]]]:
    """At concurrency 1, then 32: the baseline `(name, call)`, then ours, in the same run.
    The rows, and ours as ratios to the baseline by concurrency (`c1`, `c32`):
    `throughput_ratio` and `p50_ratio`."""
    rows: list[Measurement] = []
    ratios: dict[str, dict[str, float]] = {}
    for concurrency in (1, 32):
        base = await measure(
            baseline[0], baseline[1], concurrency=concurrency, duration_s=duration_s
        )
        mine = await measure(ours[0], ours[1], concurrency=concurrency, duration_s=duration_s)
        rows += [base, mine]
        ratios[f"c{concurrency}"] = {
            "throughput_ratio": mine.throughput / base.throughput,
            "p50_ratio": mine.p50_ms / base.p50_ms,
        }
    return rows, ratios


def median_of(name: str, runs: Sequence[Measurement]) -> Measurement:
    """One row from repeated runs of the same case: the median of each figure (the CPU
    figures too, process by process), the calls and errors summed."""
    keys = dict.fromkeys(k for r in runs for k in r.cpu_ms)
    errors = [r.first_error for r in runs if r.first_error]
    return Measurement(
        name=name,
        concurrency=runs[0].concurrency,
        calls=sum(r.calls for r in runs),
        seconds=sum(r.seconds for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        errors=sum(r.errors for r in runs),
        first_error=errors[0] if errors else None,
        cpu_ms={k: statistics.median(r.cpu_ms.get(k, 0.0) for r in runs) for k in keys},
    )


def spread(values: Sequence[float]) -> float:
    """(max - min) / median of repeated figures: how noisy the machine was."""
    values = [v for v in values if v == v]
    if len(values) < 2:
        return 0.0
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle if middle else 0.0


def print_table(title: str, rows: list[Measurement]) -> None:
    print(f"\n{title}")
    cpu = any(r.cpu_ms for r in rows)
    print(
        f"{'case':<40}{'conc':>5}{'calls':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        + (f"{'cpu ms':>8}{'client':>8}" if cpu else "")
        + f"{'err':>5}"
    )
    for r in rows:
        line = (
            f"{r.name:<40}{r.concurrency:>5}{r.calls:>8}{r.throughput:>9.0f}"
            f"{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
        )
        if cpu:
            line += f"{r.cpu_ms.get('total', 0):>8.2f}{r.cpu_ms.get('client', 0):>8.2f}"
        print(line + f"{r.errors:>5}")
        if r.first_error:
            print(f"    first error: {r.first_error}")


def print_cpu(title: str, rows: list[Measurement]) -> None:
    """CPU ms per call by process, one column per row."""
    names = [n for n in dict.fromkeys(k for r in rows for k in r.cpu_ms)]
    if not names:
        return
    print(f"\n{title} (CPU ms per request)")
    print(
        f"{'process':<28}" + "".join(f"{r.name[:22] + ' c' + str(r.concurrency):>30}" for r in rows)
    )
    for n in names:
        print(f"{n:<28}" + "".join(f"{r.cpu_ms.get(n, 0.0):>30.3f}" for r in rows))


def write_results(name: str, payload: Mapping[str, object]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=_plain))
    return path


def _plain(value: object) -> Any:
    if isinstance(value, Measurement):
        return {**asdict(value), "throughput": value.throughput}
    return asdict(value)  # type: ignore[call-overload]


def plot(
    name: str,
    title: str,
    xlabel: str,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    ylabel: str = "latency (ms)",
    logx: bool = True,
    logy: bool = False,
) -> Path:
    """One PNG in bench/results/: each series is (xs, ys)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for label, (xs, ys) in series.items():
        axis.plot(xs, ys, marker="o", linestyle="--" if "p99" in label else "-", label=label)
    if logx:
        axis.set_xscale("log")
    if logy:
        axis.set_yscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
