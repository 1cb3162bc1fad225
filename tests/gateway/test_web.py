"""The gateway serves the single-page app at `/`: files from MEDIHAVEN_WEB_DIR only,
index.html for the app's own routes, strict security headers, the API untouched, and a
clear page (never a 500) when the app is not built.

These need no bus (static files); tests/web drives the real build through a real gateway
process in a browser, and checks the same headers there.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings

INDEX = '<!doctype html><html><head><title>Medihaven</title></head><body><div id="root">'


def client(web_dir: Path, lock_s: int = 600) -> TestClient:
    settings = GatewaySettings(web_dir=web_dir, web_auto_lock_s=lock_s)
    return TestClient(create_app(gateway_settings=settings))


@pytest.fixture
def built(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(INDEX + "</div></body></html>")
    (dist / "assets" / "index-abc123.js").write_text("console.log('app')")
    (dist / "favicon.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("outside the web folder")
    return dist


def assert_secure(headers: Mapping[str, str]) -> None:
    csp = headers.get("content-security-policy", "")
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ):
        assert directive in csp, csp
    connect = next(d for d in csp.split("; ") if d.startswith("connect-src"))
    assert connect == "connect-src 'self' ws://testserver wss://testserver"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers.get("x-content-type-options") == "nosniff"
    assert headers.get("referrer-policy") == "no-referrer"


def test_the_app_is_served_at_the_root_with_strict_headers(built: Path) -> None:
    http = client(built, lock_s=900)
    page = http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<div id="root">' in page.text
    assert '<meta name="medihaven-auto-lock-seconds" content="900" />' in page.text
    assert page.headers["cache-control"] == "no-cache"
    assert_secure(page.headers)
    script = http.get("/assets/index-abc123.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "immutable" in script.headers["cache-control"]
    assert_secure(script.headers)
    assert http.get("/favicon.svg").headers["content-type"].startswith("image/svg")


def test_client_routes_answer_the_app_and_missing_files_a_404(built: Path) -> None:
    http = client(built)
    for route in ("/chart", "/admin/tokens", "/index.html"):
        answer = http.get(route)
        assert answer.status_code == 200 and '<div id="root">' in answer.text, route
    missing = http.get("/assets/nothing-here.js")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_no_path_leaves_the_web_folder(built: Path) -> None:
    http = client(built)
    for attempt in ("/../secret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt"):
        answer = http.get(attempt)
        assert "outside the web folder" not in answer.text, attempt


def test_the_api_is_not_shadowed_by_the_app(built: Path) -> None:
    http = client(built)
    unknown = http.get("/api/v1/no-such-route")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    assert http.post("/api/v1/no-such-route").status_code == 404
    assert http.get("/api/v1/openapi.json").json()["info"]["title"] == "Medihaven API"
    assert http.get("/healthz").json() == {"status": "ok"}
    # a signed route without a runtime (no lifespan here) is a clean 503, not the app
    assert http.get("/api/v1/me").status_code == 503
    assert http.post("/").status_code == 404


def test_without_a_build_the_root_says_how_to_build_it(tmp_path: Path) -> None:
    http = client(tmp_path / "no-dist")
    page = http.get("/")
    assert page.status_code == 503
    assert "make web" in page.text and "npm run build" in page.text
    assert_secure(page.headers)
    assert http.get("/patients").status_code == 503
    assert http.get("/api/v1/no-such-route").status_code == 404
