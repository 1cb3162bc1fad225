"""mesh/service.py: a service app answers /healthz at once, /readyz only while its
runtime is up (503 while starting and after stopping), serves RPC inside its lifespan,
and exposes its metrics; no API docs are served."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
import structlog
from fastapi import FastAPI

from mesh.service import create_service_app
from mesh.settings import Settings
from tests.mesh.fixtures import (
    ECHO,
    MIGRATIONS,
    SERVICE,
    Counters,
    EchoRequest,
    client_runtime,
    make_router,
)


@pytest_asyncio.fixture
async def http(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app and a client for it (the session's logging set back after its lifespan,
    which configures logging as a process does)."""
    config, root = structlog.get_config(), logging.getLogger()
    handlers, level = list(root.handlers), root.level
    context = structlog.contextvars.get_contextvars()
    app = create_service_app(
        SERVICE, make_router(Counters()), migrations=MIGRATIONS, settings=settings
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield app, client
    finally:
        structlog.configure(**config)
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.contextvars.bind_contextvars(**context)


async def test_ready_only_while_the_runtime_is_up(
    settings: Settings, http: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    app, client = http
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    starting = await client.get("/readyz")
    assert starting.status_code == 503 and starting.json()["reason"] == "starting"
    async with app.router.lifespan_context(app):
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}
        async with client_runtime(settings) as caller:
            assert (await caller.rpc.call(ECHO, EchoRequest(text="hi"))).text == "hi"
        assert (await client.get("/healthz")).status_code == 200
    stopped = await client.get("/readyz")
    assert stopped.status_code == 503
    assert stopped.json()["reason"] == "message bus connection is closed"


async def test_metrics_are_exposed_and_no_api_docs(
    http: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = http
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert "medihaven_rpc_served_total" in metrics.text
    for path in ("/docs", "/redoc"):
        assert (await client.get(path)).status_code == 404
    schema = (await client.get("/openapi.json")).json()
    assert schema["paths"] == {}  # the probes are not part of any API
