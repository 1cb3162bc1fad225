"""Catalog search for typing ahead: a physician's signed prefix searches through the
gateway at concurrency 1. Target (issue: medicine catalog): p99 under 50 ms."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Mapping
from pathlib import Path

from bench.common import duration, measure, print_table, write_results
from bench.http import LeanHttp
from bench.mesh import Actor, Signed, bench_mesh, new_client

SERVICES = ["services.keyvault", "services.auth", "services.records", "services.audit"]
SEED = Path(__file__).resolve().parents[1] / "services" / "records" / "catalog_seed.json"
PREFIXES = ["a", "am", "amo", "s", "sa", "sal", "c", "ci", "met", "om", "p", "pre", "l", "lo"]


async def run(duration_s: float | None = None) -> Mapping[str, object]:
    duration_s = duration(duration_s if duration_s is not None else 4.0)
    async with bench_mesh(SERVICES, "catalog") as bench:
        url = bench.gateway.url
        admin = await asyncio.to_thread(
            new_client, url, bench.admin_token, "bench-admin", "bench-admin"
        )
        token = admin.post("/api/v1/tokens", {"role": "physician"})["token"]
        doctor = await asyncio.to_thread(new_client, url, token, "bench-doctor", "bench-doctor")
        for details in json.loads(SEED.read_text())["medicines"]:
            admin.post("/api/v1/catalog/medicines", {"details": details})
        prefixes = itertools.cycle(PREFIXES)
        actor = Actor(doctor.key_id, doctor.private_key)
        async with LeanHttp(url) as http:
            api = Signed(http)

            async def search() -> object:
                return await api.send(
                    actor, "GET", "/api/v1/catalog/medicines", prefix=next(prefixes)
                )

            result = await measure(
                "catalog prefix search (signed)", search, concurrency=1, duration_s=duration_s
            )
    print_table("Medicine catalog search through the gateway", [result])
    verdict = "met" if result.p99_ms < 50 else "NOT MET"
    print(f"  p99 {result.p99_ms:.1f} ms (target < 50 ms: {verdict})")
    out = {"rows": [result], "p99_ms": result.p99_ms, "target_met": result.p99_ms < 50}
    print(f"  written: {write_results('catalog', out)}")
    return out


if __name__ == "__main__":
    import uvloop

    uvloop.run(run())
