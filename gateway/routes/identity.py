"""Registration: the one signed route whose signer is not yet an account (the new key)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from contracts import auth
from contracts.common import routes
from contracts.http import build_request
from gateway.deps import runtime, security

router = APIRouter(tags=["identity"])
REGISTER = auth.REGISTER.route
assert REGISTER is not None


@router.post(REGISTER.path, response_model=auth.Account, status_code=REGISTER.status)
async def register(body: auth.RegisterRequest, request: Request) -> auth.Account:
    """Register with a token, in a request signed by the new key (keyid `register`)."""
    proof = await security(request).verify_registration(request, body.public_key)
    raw = await request.body()
    _, params, query = routes().operation_of(proof.method, proof.target_uri)
    signed = build_request(auth.REGISTER, params, query, raw)
    return await runtime(request).rpc.call(
        auth.REGISTER,
        signed,
        proof=proof.model_dump_json(),
        signed_body=raw,
        idempotency_key=f"register:{proof.signature}",
    )
