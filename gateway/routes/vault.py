"""Keyvault status and unsealing (unauthenticated: shares are sealed boxes), and sealing
every replica with one signed request (rotation is declared in `contracts.keyvault`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from contracts import keyvault as kv
from gateway.deps import forward, runtime, security, signed
from gateway.errors import ApiError
from gateway.routing import signed_request
from gateway.security import Caller
from mesh.errors import NoRoute

router = APIRouter(prefix="/vault", tags=["keyvault"])
GATHER_WINDOW_S = 0.5


class Replicas(BaseModel):
    replicas: list[kv.StatusReply]


async def _statuses(request: Request) -> list[kv.StatusReply]:
    replies = await runtime(request).rpc.gather(
        kv.STATUS, kv.StatusRequest(), window_s=GATHER_WINDOW_S
    )
    return sorted((r for r in replies if isinstance(r, kv.StatusReply)), key=lambda s: s.instance)


@router.get("/status", response_model=Replicas)
async def status(request: Request) -> Replicas:
    """Every keyvault replica: its state, unseal progress and transport key."""
    return Replicas(replicas=await _statuses(request))


class Unseal(BaseModel):
    instance: str = Field(max_length=200, description="The replica the share is sealed to.")
    sealed_share: str = Field(max_length=4096)


@router.post("/unseal", response_model=kv.StatusReply)
async def unseal(body: Unseal, request: Request) -> kv.StatusReply:
    await security(request).anonymous_request(request)
    try:
        return await runtime(request).rpc.call(
            kv.UNSEAL, kv.UnsealRequest(sealed_share=body.sealed_share), instance=body.instance
        )
    except NoRoute:
        raise ApiError(
            404, f"no keyvault replica {body.instance!r} (see GET /api/v1/vault/status)"
        ) from None


@router.post("/seal", response_model=Replicas)
async def seal(request: Request, who: Caller = Depends(signed())) -> Replicas:
    """Seal every replica (each wipes its keys; one signature serves each replica once).
    A replica already sealed stays as it is (it holds no keys to check a signature with)."""
    signed = signed_request(kv.SEAL, who)
    sealed = [
        await forward(request, who, kv.SEAL, signed, instance=s.instance)
        if s.state is kv.VaultState.unsealed
        else s
        for s in await _statuses(request)
    ]
    return Replicas(replicas=sealed)
