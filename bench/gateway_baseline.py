"""The unsigned baseline of the gateway benchmark: the same `auth.me` RPC, no checks.

The client passes the principal and a signed proof in headers (made by the client in both
cases, so both sides of the comparison sign alike); this app forwards them as they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from contracts import auth
from contracts.base import Principal
from mesh.runtime import Runtime
from mesh.settings import get_settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime = await Runtime.start("bench-baseline", get_settings(), use_database=False)
    app.state.runtime = runtime
    yield
    await runtime.stop()


app = FastAPI(lifespan=lifespan)


@app.get("/unsigned/me")
async def me(request: Request) -> auth.Account:
    runtime: Runtime = request.app.state.runtime
    return await runtime.rpc.call(
        auth.ME,
        auth.MeRequest(),
        principal=Principal.model_validate_json(request.headers["x-principal"]),
        proof=request.headers["x-proof"],
    )


if __name__ == "__main__":
    import uvicorn

    settings = get_settings()
    uvicorn.run(app, host="127.0.0.1", port=settings.http_port or 8900, log_config=None)
