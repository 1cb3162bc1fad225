"""The gateway: the one HTTP edge of the mesh (API under /api/v1)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway.routes import health
from mesh.logging import configure_logging, get_logger
from mesh.runtime import Runtime
from mesh.service import add_probes, check_runtime
from mesh.settings import Settings, get_settings

NAME = "gateway"
log = get_logger("gateway")


def create_app(settings: Settings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cfg = settings or get_settings()
        configure_logging(NAME, cfg)
        runtime = await Runtime.start(NAME, cfg, use_database=False)
        app.state.runtime = runtime
        log.info("gateway.started", url=f"http://{cfg.http_host}:{cfg.http_port or 8000}")
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="Medihaven API",
        version="1",
        lifespan=lifespan,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.runtime = None
    add_probes(app, lambda: check_runtime(app.state.runtime))
    app.include_router(health.router, prefix="/api/v1")
    return app


app = create_app()
