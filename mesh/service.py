"""The FastAPI app every service is: health, readiness, metrics, and the mesh in its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mesh.logging import configure_logging, get_logger
from mesh.rpc import RpcRouter
from mesh.runtime import ConsumerSpec, Runtime
from mesh.settings import Settings, get_settings

log = get_logger("mesh.service")

DEFAULT_PORTS: dict[str, int] = {
    "gateway": 8000,
    "auth": 8101,
    "records": 8102,
    "scheduling": 8103,
    "keyvault": 8104,
    "chat": 8105,
    "audit": 8106,
}


def add_probes(app: FastAPI, ready: Callable[[], Awaitable[None]]) -> None:
    """`/healthz` (the process answers), `/readyz` (its dependencies answer), `/metrics`."""

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        try:
            await ready()
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def check_runtime(runtime: Runtime | None) -> None:
    """Raise unless the bus connection is open and the database answers."""
    if runtime is None:
        raise RuntimeError("starting")
    if runtime.connection.is_closed:
        raise RuntimeError("message bus connection is closed")
    if runtime.db is not None:
        await runtime.db.ping()


def create_service_app(
    name: str,
    router: RpcRouter,
    *,
    migrations: Path | None = None,
    consumers: Sequence[ConsumerSpec] = (),
    on_startup: Callable[[Runtime], Awaitable[None]] | None = None,
    on_shutdown: Callable[[Runtime], Awaitable[None]] | None = None,
    settings: Settings | None = None,
) -> FastAPI:
    """A service process: its RPC handlers and consumers run inside the app's lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cfg = settings or get_settings()
        configure_logging(name, cfg)
        runtime = await Runtime.start(
            name,
            cfg,
            router=router,
            migrations=migrations,
            consumers=consumers,
            on_startup=on_startup,
            on_shutdown=on_shutdown,
        )
        app.state.runtime = runtime
        log.info("service.started", service=name)
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title=f"medihaven {name}", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.runtime = None
    add_probes(app, lambda: check_runtime(app.state.runtime))
    return app


def serve(name: str, app_path: str) -> None:
    """Entry point of `python -m services.<name>`: run the app under uvicorn."""
    settings = get_settings()
    port = settings.http_port if settings.http_port is not None else DEFAULT_PORTS[name]
    uvicorn.run(
        app_path,
        host=settings.http_host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 1,
    )
