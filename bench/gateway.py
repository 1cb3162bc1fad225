"""Signed `GET /api/v1/me` through the gateway vs. an unsigned endpoint making the
closest RPC.

Signed = signature verification + nonce (Redis) + token bucket (Redis) + the `auth.me`
RPC (whose forwarded proof auth's runtime verifies again). Unsigned = a bare FastAPI
endpoint making `auth.resolve_key` for the same account: `auth.me` needs the user's
proof under zero trust, and `resolve_key` is the closest RPC that needs none (one auth
round trip reading the same account row, returning the account). Both behind uvicorn in
their own processes, both measured in the same run at concurrency 1 and 32, in a
namespace of their own (`bench.mesh`), with the lean client (`bench.http`).
Target (issue: identity and gateway): signed throughput >= 60 % of unsigned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from bench.common import (
    against_baseline,
    duration,
    print_table,
    write_results,
)
from bench.http import LeanHttp
from bench.mesh import LOGS, bench_mesh, new_actor
from mesh.httpsig import sign_request
from tests.processes import Process

SERVICES = ["services.keyvault", "services.auth"]


async def run(duration_s: float | None = None) -> Mapping[str, object]:
    duration_s = duration(duration_s if duration_s is not None else 3.0)
    async with bench_mesh(SERVICES, "gateway") as bench:
        baseline = Process("bench.gateway_baseline", bench.settings, LOGS)
        try:
            await asyncio.to_thread(_wait, baseline)
            return await _measure(bench.gateway.url, baseline.url, bench.admin_token, duration_s)
        finally:
            baseline.stop()


def _wait(proc: Process) -> None:
    import time

    import httpx

    for _ in range(100):
        try:
            httpx.get(f"{proc.url}/docs", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("baseline did not start")


async def _measure(
    gateway: str, baseline: str, token: str, duration_s: float
) -> Mapping[str, object]:
    actor = await asyncio.to_thread(new_actor, gateway, token, "bench-admin", "Bench")
    key, account_id = actor.key, actor.account_id
    signed_url = f"{gateway}/api/v1/me"
    async with LeanHttp(gateway) as http, LeanHttp(baseline) as plain:

        async def signed() -> None:
            headers = sign_request(key, account_id, "GET", signed_url, b"")
            response = await http.get("/api/v1/me", headers)
            assert response.status == 200, response.text

        async def unsigned() -> None:
            # Signed alike (the baseline does not check it); the account named in a header.
            headers = sign_request(key, account_id, "GET", signed_url, b"")
            response = await plain.get("/unsigned/me", {**headers, "x-account-id": account_id})
            assert response.status == 200, response.text

        rows, ratios = await against_baseline(
            ("unsigned FastAPI + resolve_key", unsigned),
            ("signed GET /api/v1/me", signed),
            duration_s,
        )
    print_table("Gateway: signed /me vs unsigned (auth.resolve_key, same account row)", rows)
    for name, r in ratios.items():
        print(
            f"  {name}: signed throughput {r['throughput_ratio']:.0%} of unsigned "
            f"(target >= 60%), p50 {r['p50_ratio']:.2f}x"
        )
    result = {"rows": rows, "ratios": ratios}
    print(f"  written: {write_results('gateway', result)}")
    return result


if __name__ == "__main__":
    import uvloop

    uvloop.run(run())
