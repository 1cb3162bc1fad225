"""The whole mesh as real processes, exactly as `make run` starts it."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from contracts.common import SERVICES
from mesh.settings import Settings
from tests.processes import running

MODULES = [f"services.{s}" for s in SERVICES] + ["gateway"]


def test_every_service_answers_through_the_gateway(settings: Settings, tmp_path: Path) -> None:
    with running(MODULES, settings, tmp_path) as procs:
        gateway = procs["gateway"]
        response = httpx.get(f"{gateway.url}/api/v1/health/mesh", timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "ok"
        assert set(body["services"]) == set(SERVICES)
        assert all(s["ok"] for s in body["services"].values())

        # Each service exposes Prometheus metrics including the ping it just served.
        metrics = httpx.get(f"{procs['services.auth'].url}/metrics", timeout=5).text
        assert (
            'medihaven_rpc_served_total{method="auth.ping",outcome="ok",service="auth"}' in metrics
        )

        # One service gone: the mesh health names it and answers 503 quickly.
        # (uvicorn shuts down gracefully, then re-raises SIGTERM as its exit status)
        assert procs["services.chat"].stop(signal.SIGTERM) in (0, -signal.SIGTERM)
        assert "runtime.stopped" in procs["services.chat"].log()
        response = httpx.get(f"{gateway.url}/api/v1/health/mesh", timeout=10)
        assert response.status_code == 503
        chat = response.json()["services"]["chat"]
        assert chat["ok"] is False and chat["error"].startswith("no_route")

        # Logs are JSON lines carrying the service name.
        assert '"service": "auth"' in procs["services.auth"].log()
