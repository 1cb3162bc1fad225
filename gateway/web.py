"""The web app: the built single-page app (`frontend/dist`) served at `/`.

Files are served from `MEDIHAVEN_WEB_DIR` only (no path leaves it); any other path that
is not under `/api/` or the FHIR base (`/fhir/R4`) answers `index.html`, so the app's own
routes survive a reload. Every answer carries a strict Content-Security-Policy (scripts,
styles and connections from this origin only, the WebSocket to this host included; no
framing), `nosniff` and `no-referrer`. Without a build, `/` answers a page saying how to
make one (never a 500). The auto-lock setting reaches the app as a `<meta>` tag in `index.html`.
"""

from __future__ import annotations

import html
import mimetypes
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.fhir import FHIR_PREFIX
from gateway.errors import error_response
from gateway.settings import GatewaySettings

API_PREFIX = "api/"
FHIR_BASE = FHIR_PREFIX.lstrip("/")
LOCK_META = "medihaven-auto-lock-seconds"
BUILD_HINT = "make web (or: cd frontend && npm ci && npm run build)"


def content_security_policy(host: str) -> str:
    """Same origin for everything; `connect-src` names ws/wss to this host explicitly
    (older browsers do not count a WebSocket to the same host as 'self')."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            "font-src 'self'",
            f"connect-src 'self' ws://{host} wss://{host}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(request: Request) -> dict[str, str]:
    host = request.headers.get("host") or request.url.netloc
    # A Host header is only ever reflected into this response's own policy; refuse odd ones.
    if not all(c.isalnum() or c in ".-:[]" for c in host):
        host = request.url.hostname or "localhost"
    return {
        "Content-Security-Policy": content_security_policy(host),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }


NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Medihaven: web app not built</title></head>
<body><h1>The Medihaven web app is not built</h1>
<p>The gateway serves the app from <code>{folder}</code>, which has no <code>index.html</code>.
Build it with <code>{hint}</code>, or start everything with <code>make run</code>,
which builds it first. The API is up at <code>/api/v1</code>.</p></body></html>
"""


def _inside(root: Path, relative: str) -> Path | None:
    """The file `relative` names inside `root`, or None (missing, a folder, or outside)."""
    if "\x00" in relative or "\\" in relative:
        return None
    try:
        candidate = (root / relative).resolve()
        base = root.resolve()
    except (OSError, ValueError):
        return None
    if candidate != base and base not in candidate.parents:
        return None
    return candidate if candidate.is_file() else None


class WebApp:
    """Serves the build; answers GET/HEAD of every path no API route claimed."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.root = settings.web_dir
        self.lock_s = settings.web_auto_lock_s

    def index(self, request: Request) -> Response:
        headers = security_headers(request)
        page = self.root / "index.html"
        if not page.is_file():
            folder = html.escape(str(self.root))
            body = NOT_BUILT.format(folder=folder, hint=html.escape(BUILD_HINT))
            return HTMLResponse(body, status_code=503, headers=headers)
        text = page.read_text(encoding="utf-8")
        meta = f'<meta name="{LOCK_META}" content="{self.lock_s}" />'
        text = text.replace("</head>", f"  {meta}\n  </head>", 1)
        return HTMLResponse(text, headers={**headers, "Cache-Control": "no-cache"})

    def serve(self, request: Request) -> Response | None:
        """The file or page for this request, or None when it is not the app's to answer."""
        path = request.url.path.lstrip("/")
        if request.method not in ("GET", "HEAD") or path.startswith(API_PREFIX) or path == "api":
            return None
        if path == FHIR_BASE or path.startswith(FHIR_BASE + "/"):
            return None  # the FHIR base's unknown paths are OperationOutcome 404s
        found = _inside(self.root, path) if path not in ("", "index.html") else None
        if found is None:
            if "." in path.rsplit("/", 1)[-1] and path != "index.html":
                return None  # a missing file is a 404, not the app's page
            return self.index(request)
        headers = security_headers(request)
        if path.startswith("assets/"):  # content-hashed names: cache for good
            headers["Cache-Control"] = "public, max-age=31536000, immutable"
        else:
            headers["Cache-Control"] = "no-cache"
        media_type = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
        return FileResponse(found, media_type=media_type, headers=headers)


def install(app: FastAPI, settings: GatewaySettings) -> None:
    """Answer the app for paths no route matched (so every API answer is unchanged: an
    unknown `/api/...` path is still the JSON 404, a wrong method still a 405)."""
    webapp = WebApp(settings)

    async def not_found(request: Request, exc: Exception) -> Response:
        served = webapp.serve(request)
        if served is not None:
            return served
        detail = exc.detail if isinstance(exc, StarletteHTTPException) else "Not Found"
        return error_response(404, "not_found", str(detail), path=request.url.path)

    app.add_exception_handler(404, not_found)
