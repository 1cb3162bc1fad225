"""Smoke test of `make bench`: every benchmark runs in quick mode (tiny sizes, short
windows) as `python -m bench --quick NAME` against the real servers, in a namespace of
its own, and writes results that make sense (calls made, no errors, CPU counted across
the processes, the baseline's JSON the same size, plots written). Its figures are not
checked against targets: quick mode's are meaningless, and the machine is shared.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import BENCHES
from bench.common import QUICK_ENV

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 150
SLOWER_S = {"clustered": 420}
"""Benchmarks that first start something big (three local clusters)."""


def _run(name: str, out: Path) -> str:
    env = {**os.environ, QUICK_ENV: "1", "MEDIHAVEN_BENCH_RESULTS": str(out)}
    done = subprocess.run(
        [sys.executable, "-m", "bench", name],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SLOWER_S.get(name, TIMEOUT_S),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _load(out: Path, name: str) -> Any:
    return json.loads((out / f"{name}.json").read_text())


def _sane(row: dict[str, Any], *, cpu: bool = False) -> None:
    """A measured row: calls answered, none failed, finite latencies in order."""
    assert row["calls"] > 0, row
    assert row["errors"] == 0, row
    assert 0 < row["p50_ms"] <= row["p99_ms"] < 30_000, row
    if cpu:
        assert row["cpu_ms"]["total"] > 0, row
        assert "client" in row["cpu_ms"], row


def _png(out: Path, *names: str) -> None:
    for name in names:
        assert (out / f"{name}.png").stat().st_size > 1000, name


def check_rpc(out: Path) -> None:
    result = _load(out, "rpc")
    for row in result["rows"]:
        _sane(row)


def check_keyvault(out: Path) -> None:
    for figures in _load(out, "keyvault").values():
        assert all(math.isfinite(v) and v > 0 for v in figures.values()), figures


def check_gateway(out: Path) -> None:
    for row in _load(out, "gateway")["rows"]:
        _sane(row)


def check_scheduling(out: Path) -> None:
    for row in _load(out, "scheduling")["rows"]:
        _sane(row)


def check_records(out: Path) -> None:
    result = _load(out, "summary")
    assert result["sizes"]["medihaven_bytes"] == result["sizes"]["plain_bytes"], result["sizes"]
    scales = list(result["by_on_file"])
    assert len(scales) >= 2
    for rows in result["by_on_file"].values():
        for row in rows:
            _sane(row, cpu=True)
    ours = next(r for r in result["by_on_file"][scales[0]] if r["name"].startswith("summary via"))
    # CPU across every process: the mesh's own and the shared servers.
    for process in ("gateway", "records", "keyvault", "audit", "mariadbd (ours)"):
        assert process in ours["cpu_ms"], ours["cpu_ms"]
    assert "rabbitmq gross" in ours["cpu_ms"], ours["cpu_ms"]
    targets = result["targets"]
    for key in ("p50_flat", "p50_vs_plain_c1", "throughput_vs_plain_c16", "client_share"):
        assert isinstance(targets[key]["met"], bool), targets[key]
    assert targets["no_hang"]["met"], targets["no_hang"]
    _png(out, "summary_scaling")


def check_lists(out: Path) -> None:
    result = _load(out, "lists")
    for row in (*result["calendar"], *result["chat_list"]):
        _sane(row, cpu=True)
    assert sum(result["seed_failures"].values()) == 0, result["seed_failures"]
    _png(out, "calendar", "chat_list")


def check_audit(out: Path) -> None:
    result = _load(out, "audit")
    for run in result["ingest"]:
        assert run["drain_per_s"] > 0 and run["progress"], run
        assert run["cpu_ms_per_1000_events"]["audit"] > 0, run
    for size, point in result["scaling"].items():
        assert point["entries"] >= int(size), point
        assert point["verify_cold"]["ok"] is True, point["verify_cold"]
        assert all(w["ok"] is True for w in point["verify_warm"]), point["verify_warm"]
        assert point["full_walk"]["state"] == "passed", point["full_walk"]
        assert point["full_walk"]["checked"] == point["entries"], point["full_walk"]
        for row in point["queries"]:
            _sane(row, cpu=True)
    _png(out, "audit_scaling", "audit_walk", "audit_ingest")


def check_catalog(out: Path) -> None:
    for row in _load(out, "catalog")["rows"]:
        _sane(row)


def check_chat(out: Path) -> None:
    result = _load(out, "chat_audit")
    assert 0 < result["chat_ws_latency_ms"]["p50"] <= result["chat_ws_latency_ms"]["p99"]
    assert 0 < result["raw_echo_ms"]["p50"]


def check_clinic(out: Path) -> None:
    result = _load(out, "clinic")
    for row in result["rows"]:
        _sane(row, cpu=row["name"].startswith("clinic mix"))
    _png(out, "clinic")


def check_clustered(out: Path) -> None:
    result = _load(out, "clustered")
    names = {row["name"] for row in result["rows"]}
    assert names == {"single nodes", "clustered engines"}, names
    for row in result["rows"]:
        _sane(row, cpu=True)
    clustered = [r for r in result["rows"] if r["name"] == "clustered engines"][-1]
    # every node of every engine is charged: three brokers, three Galera nodes, the set
    for node in ("rabbitmq-3", "galera-3", "redis master", "sentinel-3"):
        assert node in clustered["cpu_ms"], clustered["cpu_ms"]
    for figures in result["ratios"].values():
        assert all(math.isfinite(v) and v > 0 for v in figures.values()), figures
    assert result["rss_mb"]["clustered engines"]["galera-1"] > 0, result["rss_mb"]
    assert "| records |" in (out / "capacity.md").read_text()
    _png(out, "clustered")


def check_rewrap(out: Path) -> None:
    result = _load(out, "rewrap")
    for row in result["rows"]:
        _sane(row)
    for run in (result["rewrap_alone"], result["rewrap_under_mix"]):
        assert run["state"] == "complete" and run["failures"] == 0, run
        assert run["rows_rewrapped"] > 0 and run["fields_rewrapped"] > 0, run
        assert run["rows_per_s_wall"] > 0 and run["wall_s"] > 0, run
    assert all(math.isfinite(v) and v > 0 for v in result["impact"].values()), result["impact"]


def check_profile(out: Path) -> None:
    result = _load(out, "profile")
    assert result["calls"] > 0
    assert result["cpu_ms"]["total"] > 0
    for name in ("gateway", "records", "keyvault"):
        assert result["profiles"][name]["samples"] > 0, name
    assert (out / "profile.md").read_text().startswith("# Where the CPU")


def check_overload(out: Path) -> None:
    result = _load(out, "overload")
    limited, unlimited = result["with the admission limit"], result["without it"]
    _sane(limited["measurement"])
    assert set(limited["outcomes"]) == {"answered"}, limited["outcomes"]
    assert unlimited["measurement"]["calls"] > 0, unlimited
    known = {"answered", "busy", "timeout"}
    assert all(k in known or k.startswith("other (") for k in unlimited["outcomes"]), unlimited


CHECKS: dict[str, Callable[[Path], None]] = {
    "rpc": check_rpc,
    "keyvault": check_keyvault,
    "gateway": check_gateway,
    "scheduling": check_scheduling,
    "records": check_records,
    "lists": check_lists,
    "audit": check_audit,
    "catalog": check_catalog,
    "chat": check_chat,
    "clinic": check_clinic,
    "clustered": check_clustered,
    "overload": check_overload,
    "rewrap": check_rewrap,
    "profile": check_profile,
}


def test_every_benchmark_is_checked() -> None:
    assert set(CHECKS) == set(BENCHES)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.timeout(SLOWER_S.get(n, TIMEOUT_S) + 30)) for n in CHECKS],
)
def test_benchmark_runs_in_quick_mode(name: str, tmp_path: Path) -> None:
    _run(name, tmp_path)
    CHECKS[name](tmp_path)
