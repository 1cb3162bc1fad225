"""FastAPI dependencies shared by the gateway's routes."""

from __future__ import annotations

from fastapi import HTTPException, Request

from mesh.runtime import Runtime


def runtime(request: Request) -> Runtime:
    rt: Runtime | None = request.app.state.runtime
    if rt is None:
        raise HTTPException(status_code=503, detail="the gateway is starting")
    return rt
