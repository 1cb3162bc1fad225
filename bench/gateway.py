"""Signed `GET /api/v1/me` through the gateway vs. an unsigned endpoint making the same RPC.

Signed = signature verification + nonce (Redis) + token bucket (Redis) + the `auth.me`
RPC; unsigned = the same RPC from a bare FastAPI endpoint. Both behind uvicorn in their
own processes, both measured in the same run at concurrency 1 and 32.
Target (issue: identity and gateway): signed throughput >= 60 % of unsigned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import httpx

from bench.common import Measurement, measure, print_table, write_results
from bench.mesh import LOGS, bench_mesh
from cli import keys
from cli.sdk import register
from contracts.base import Principal, Role
from mesh.httpsig import proof_from_headers, sign_request
from tests.processes import Process

SERVICES = ["services.keyvault", "services.auth"]


async def run(duration_s: float = 3.0) -> Mapping[str, object]:
    async with bench_mesh(SERVICES) as bench:
        baseline = Process("bench.gateway_baseline", bench.settings, LOGS)
        try:
            await asyncio.to_thread(_wait, baseline)
            return await _measure(bench.gateway.url, baseline.url, bench.admin_token, duration_s)
        finally:
            baseline.stop()


def _wait(proc: Process) -> None:
    import time

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
    key = keys.generate()
    account = await asyncio.to_thread(
        register,
        gateway,
        key,
        token=token,
        username="bench-admin",
        display_name="Bench",
        public_key=keys.public_key_b64(key),
    )
    account_id = str(account["account_id"])
    principal = Principal(account_id=account_id, role=Role.administrator).model_dump_json()
    signed_url = f"{gateway}/api/v1/me"
    unsigned_url = f"{baseline}/unsigned/me"
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=10) as http:

        async def signed() -> None:
            headers = sign_request(key, account_id, "GET", signed_url, b"")
            response = await http.get(signed_url, headers=headers)
            assert response.status_code == 200, response.text

        async def unsigned() -> None:
            headers = sign_request(key, account_id, "GET", signed_url, b"")
            proof = proof_from_headers("GET", signed_url, headers).model_dump_json()
            response = await http.get(
                unsigned_url, headers={"x-principal": principal, "x-proof": proof}
            )
            assert response.status_code == 200, response.text

        rows: list[Measurement] = []
        ratios: dict[str, dict[str, float]] = {}
        for concurrency in (1, 32):
            base = await measure(
                "unsigned FastAPI + RPC", unsigned, concurrency=concurrency, duration_s=duration_s
            )
            ours = await measure(
                "signed GET /api/v1/me", signed, concurrency=concurrency, duration_s=duration_s
            )
            rows += [base, ours]
            ratios[f"c{concurrency}"] = {
                "throughput_ratio": ours.throughput / base.throughput,
                "p50_ratio": ours.p50_ms / base.p50_ms,
            }
    print_table("Gateway: signed vs unsigned (same auth.me RPC)", rows)
    for name, r in ratios.items():
        print(
            f"  {name}: signed throughput {r['throughput_ratio']:.0%} of unsigned "
            f"(target >= 60%), p50 {r['p50_ratio']:.2f}x"
        )
    result = {"rows": rows, "ratios": ratios}
    print(f"  written: {write_results('gateway', result)}")
    return result


if __name__ == "__main__":
    asyncio.run(run())
