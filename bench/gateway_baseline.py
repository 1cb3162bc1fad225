"""The unsigned baseline of the gateway benchmark: the closest RPC to `auth.me` that needs
no user's proof, with no checks.

Under zero trust `auth.me` is served only for the user's own signed request (auth's
runtime verifies the forwarded proof), so no unsigned endpoint can make it. This app
makes `auth.resolve_key` for the same account instead: one auth round trip reading the
same account row (its MAC check memoised by auth, as for `auth.me`), and returns the
account, as `/me` does. It connects as the gateway's broker identity (a caller of
`auth.resolve_key`). The client signs its requests here too (so both sides of the
comparison sign alike) and names the account in `x-account-id`; the signature headers
are not checked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from contracts import auth
from contracts.base import GATEWAY
from mesh.runtime import Runtime
from mesh.settings import get_settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime = await Runtime.start(
        "bench-baseline", get_settings(), use_database=False, identity=GATEWAY
    )
    app.state.runtime = runtime
    yield
    await runtime.stop()


app = FastAPI(lifespan=lifespan)


@app.get("/unsigned/me")
async def me(request: Request) -> auth.Account:
    runtime: Runtime = request.app.state.runtime
    record = await runtime.rpc.call(
        auth.RESOLVE_KEY, auth.ResolveKeyRequest(account_id=request.headers["x-account-id"])
    )
    return record.account


if __name__ == "__main__":
    import uvicorn

    settings = get_settings()
    uvicorn.run(app, host="127.0.0.1", port=settings.http_port or 8900, log_config=None)
