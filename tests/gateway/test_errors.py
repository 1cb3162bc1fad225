"""An unexpected exception is a generic 500 JSON answer, and the connection goes on.

Starlette's own error middleware answers, then raises the exception on, and uvicorn then
closes the connection: a client's next request on that keep-alive connection is reset.
`gateway.errors` catches it first. Tried against a real uvicorn server and a keep-alive
client.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from gateway import errors


def _app() -> FastAPI:
    app = FastAPI()
    errors.install(app)

    @app.get("/boom")
    async def boom() -> dict[str, str]:
        raise RecursionError("deep")

    @app.get("/ok")
    async def ok() -> dict[str, str]:
        return {"ok": "yes"}

    return app


@pytest.fixture
def server() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(_app(), host="127.0.0.1", port=port, log_config=None)
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not instance.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(10)


def test_an_unexpected_exception_is_a_500_and_the_connection_is_kept(server: str) -> None:
    connections: list[object] = []
    with httpx.Client(timeout=5) as client:
        for path in ("/boom", "/ok", "/boom", "/ok"):
            response = client.get(server + path)
            connections.append(response.extensions["network_stream"])
            if path == "/boom":
                assert response.status_code == 500
                assert response.json() == {
                    "error": {"code": "internal", "message": "internal error", "details": None}
                }
                assert "Traceback" not in response.text
            else:
                assert response.status_code == 200
    assert len({id(c) for c in connections}) == 1, "the server closed the connection"
