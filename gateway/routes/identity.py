"""Staff identity: registration, who am I, registration tokens, staff accounts, keys."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from contracts import auth
from contracts.auth import AccountStatus, TokenState
from contracts.base import Role
from gateway.deps import relay, runtime, security, signed
from gateway.security import Caller

router = APIRouter(tags=["identity"])
caller = Depends(signed())


@router.post("/register", response_model=auth.Account, status_code=201)
async def register(body: auth.RegisterRequest, request: Request) -> auth.Account:
    """Register with a token, in a request signed by the new key (keyid `register`)."""
    proof = await security(request).verify_registration(request, body.public_key)
    return await runtime(request).rpc.call(
        auth.REGISTER,
        body,
        proof=proof.model_dump_json(),
        idempotency_key=f"register:{proof.signature}",
    )


@router.get("/me", response_model=auth.Account)
async def me(request: Request, who: Caller = caller) -> Response:
    return await relay(request, who, auth.ME, auth.MeRequest())


class NewKey(BaseModel):
    new_public_key: str


@router.put("/me/key", response_model=auth.Account)
async def rotate_key(body: NewKey, request: Request, who: Caller = caller) -> Response:
    """Replace one's own key; the request is signed by the old one."""
    return await relay(
        request, who, auth.ROTATE_KEY, auth.RotateKeyRequest(new_public_key=body.new_public_key)
    )


@router.post("/tokens", response_model=auth.IssuedToken, status_code=201)
async def issue_token(
    body: auth.IssueTokenRequest, request: Request, who: Caller = caller
) -> Response:
    return await relay(request, who, auth.ISSUE_TOKEN, body)


@router.get("/tokens", response_model=auth.TokenList)
async def list_tokens(
    request: Request, state: TokenState | None = Query(default=None), who: Caller = caller
) -> Response:
    return await relay(request, who, auth.LIST_TOKENS, auth.ListTokensRequest(state=state))


@router.post("/tokens/{token_id}/revoke", response_model=auth.TokenInfo)
async def revoke_token(token_id: str, request: Request, who: Caller = caller) -> Response:
    return await relay(request, who, auth.REVOKE_TOKEN, auth.RevokeTokenRequest(token_id=token_id))


@router.get("/staff", response_model=auth.StaffList)
async def list_staff(
    request: Request, role: Role | None = Query(default=None), who: Caller = caller
) -> Response:
    return await relay(request, who, auth.LIST_STAFF, auth.ListStaffRequest(role=role))


class StatusChange(BaseModel):
    status: AccountStatus


@router.put("/staff/{account_id}/status", response_model=auth.Account)
async def set_status(
    account_id: str, body: StatusChange, request: Request, who: Caller = caller
) -> Response:
    """Disable or re-enable an account (a disabled account is refused at once)."""
    return await relay(
        request,
        who,
        auth.SET_ACCOUNT_STATUS,
        auth.SetAccountStatusRequest(account_id=account_id, status=body.status),
    )


@router.get("/directory", response_model=auth.Directory)
async def directory(
    request: Request, role: Role | None = Query(default=None), who: Caller = caller
) -> Response:
    """Active colleagues (names, roles, specialties), for booking and chat."""
    return await relay(request, who, auth.DIRECTORY, auth.DirectoryRequest(role=role))
