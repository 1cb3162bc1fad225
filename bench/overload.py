"""Past capacity: the patient summary at 1,024 concurrent calls, through a gateway with
its admission limit (`gateway.admission`, the default 64) and through a second gateway of
the same mesh without one, in the same run.

Without the limit the calls queue on the bus, where the oldest outlive their RPC deadline
(504) while the services still do their work; with it they wait at the edge and every
admitted call has its whole deadline. Each outcome is counted: answered, refused `busy`
(503 after MEDIHAVEN_ADMISSION_WAIT_S), timed out in the mesh (504), and anything else.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping

from bench.common import Measurement, measure, pick, print_table, write_results
from bench.http import LeanHttp
from bench.mesh import LOGS, UNLIMITED, Actor, Signed, bench_mesh
from bench.records import SERVICES, seed_patient
from tests.processes import running

CONCURRENCY = 1024
DURATION_S = 15.0
NO_LIMIT = str(1_000_000)


def outcome(error: Exception | None) -> str:
    """How a call ended: `answered`, `busy`, `timeout`, or `other (…)`."""
    if error is None:
        return "answered"
    text = str(error)
    if re.search(r": 503 .*\"busy\"", text):
        return "busy"
    if re.search(r": 504 ", text):
        return "timeout"
    return f"other ({type(error).__name__})"


async def _case(
    name: str, url: str, doctor: Actor, path: str, concurrency: int, window: float
) -> tuple[Measurement, Counter[str]]:
    """One case's measurement, and how every call of it ended (warm-up included)."""
    counts: Counter[str] = Counter()
    async with LeanHttp(url) as http:
        api = Signed(http)

        async def summary() -> None:
            try:
                await api.send(doctor, "GET", path)
            except Exception as exc:
                counts[outcome(exc)] += 1
                raise
            counts[outcome(None)] += 1

        row = await measure(name, summary, concurrency=concurrency, duration_s=window)
    return row, counts


async def run(duration_s: float | None = None) -> Mapping[str, object]:
    concurrency = pick(CONCURRENCY, 64)
    window = duration_s or pick(DURATION_S, 2.0)
    results: dict[str, object] = {"concurrency": concurrency}
    rows = []
    async with bench_mesh(SERVICES, "overload") as bench:
        async with LeanHttp(bench.gateway.url) as http:
            doctor, patient_id = await seed_patient(Signed(http), bench.admin_token)
        path = f"/api/v1/patients/{patient_id}/summary"
        env = {**UNLIMITED, "MEDIHAVEN_ADMISSION_LIMIT": NO_LIMIT}
        with running(["gateway"], bench.settings, LOGS, **env) as unlimited:
            cases = {
                "with the admission limit": bench.gateway.url,
                "without it": unlimited["gateway"].url,
            }
            for name, url in cases.items():
                row, counts = await _case(name, url, doctor, path, concurrency, window)
                rows.append(row)
                results[name] = {"measurement": row, "outcomes": dict(counts)}
                print(f"  {name}: {dict(counts)} (warm-up included)")
    print_table(f"Summary past capacity, c={concurrency}", rows)
    write_results("overload", results)
    return results
