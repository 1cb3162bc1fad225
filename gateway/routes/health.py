"""Mesh health: ping every service over the bus, so one request proves the whole mesh."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from contracts.common import SERVICES, PingRequest, ping
from gateway.deps import runtime
from mesh.errors import RpcError
from mesh.runtime import Runtime

router = APIRouter(tags=["health"])

PING_TIMEOUT_S = 2.0


class ServiceHealth(BaseModel):
    ok: bool
    instance: str | None = None
    latency_ms: float | None = None
    error: str | None = None


class MeshHealth(BaseModel):
    status: str
    services: dict[str, ServiceHealth]


async def _ping(rt: Runtime, service: str) -> ServiceHealth:
    started = time.perf_counter()
    try:
        reply = await rt.rpc.call(ping(service), PingRequest(), timeout=PING_TIMEOUT_S)
    except RpcError as exc:
        return ServiceHealth(ok=False, error=f"{exc.code}: {exc.message}")
    return ServiceHealth(
        ok=True,
        instance=reply.instance,
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
    )


@router.get(
    "/health/mesh",
    response_model=MeshHealth,
    responses={503: {"model": MeshHealth, "description": "a service does not answer"}},
)
async def mesh_health(rt: Runtime = Depends(runtime)) -> JSONResponse:
    """Ping every service; 200 when all answer, 503 naming the ones that do not."""
    results = await asyncio.gather(*(_ping(rt, s) for s in SERVICES))
    services = dict(zip(SERVICES, results, strict=True))
    healthy = all(r.ok for r in results)
    body = MeshHealth(status="ok" if healthy else "degraded", services=services)
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)
