"""RPC handlers of the auth service: accounts, keys, registration tokens."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from contracts import auth
from contracts.audit import AuditAction, AuditOutcome
from contracts.auth import Account, AccountStatus, TokenState
from contracts.base import Principal, Role
from mesh import audit, outbox
from mesh.context import CallContext
from mesh.errors import (
    Conflict,
    Forbidden,
    IntegrityError,
    InvalidRequest,
    NotFound,
    Unauthenticated,
)
from mesh.httpsig import RequestProof, SignatureError, verify_proof
from mesh.rpc import RpcRouter
from mesh.runtime import Runtime
from services.auth import store
from services.auth.integrity import seal_rows, verified
from services.auth.store import StoredAccount, StoredToken

router = RpcRouter(auth.SERVICE)

REFUSED_REGISTRATION = "this registration token is not valid (unknown, expired, revoked or used)"


def _runtime(ctx: CallContext) -> Runtime:
    assert ctx.runtime is not None and ctx.runtime.db is not None
    return ctx.runtime


def _now() -> datetime:
    return datetime.now(UTC)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _public_key_bytes(value: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("public_key is not base64") from None
    if len(raw) != 32:
        raise InvalidRequest("public_key must be a 32-byte Ed25519 public key")
    return raw


def _check_proof(ctx: CallContext, public_key: bytes, key_id: str) -> None:
    """Verify the forwarded request signature here too (not only at the gateway)."""
    if ctx.proof is None:
        raise Unauthenticated("this operation needs the user's forwarded request signature")
    try:
        proof = RequestProof.model_validate_json(ctx.proof)
        parsed = verify_proof(
            proof,
            public_key,
            now=time.time(),
            window_s=_runtime(ctx).settings.signature_window_s,
            skew_s=_runtime(ctx).settings.signature_skew_s,
        )
    except ValidationError:
        raise Unauthenticated("the forwarded request signature is malformed") from None
    except SignatureError as exc:
        raise Unauthenticated(f"request signature refused: {exc.message}") from None
    if parsed.key_id != key_id:
        raise Unauthenticated("the request was signed for another key id")


def token_state(token: StoredToken, now: datetime) -> TokenState:
    if token.used_by is not None:
        return TokenState.used
    if token.revoked_at is not None:
        return TokenState.revoked
    if token.expires_at <= now:
        return TokenState.expired
    return TokenState.pending


def token_info(token: StoredToken) -> auth.TokenInfo:
    return auth.TokenInfo(
        token_id=token.token_id,
        role=token.role,
        state=token_state(token, _now()),
        expires_at=token.expires_at,
        issued_by=token.issued_by,
        created_at=token.created_at,
        used_by=token.used_by,
        revoked_at=token.revoked_at,
    )


async def _audit(
    ctx: CallContext,
    type: str,
    action: AuditAction,
    outcome: AuditOutcome,
    *,
    entity_type: str | None = None,
    entity_id: str | None = None,
    detail: str | None = None,
    principal: Principal | None = None,
) -> None:
    event = audit.make_event(
        auth.SERVICE,
        type,
        action,
        outcome,
        principal=principal,
        entity_type=entity_type,
        entity_id=entity_id,
        detail=detail,
    )
    await audit.record(_runtime(ctx), event, conn=ctx.tx)


async def _caller(ctx: CallContext) -> StoredAccount:
    """The acting account, verified: its row MAC, active, its role, and its own signature.

    A principal forged on the bus (any role in the headers) without the account's own fresh
    signature gets nothing from an administrative operation.
    """
    principal = ctx.principal
    assert principal is not None
    runtime = _runtime(ctx)
    stored = await store.get_account(runtime.db, principal.account_id)
    rows = await verified(runtime, [stored] if stored else [])
    if not rows:
        raise Unauthenticated("the acting account does not exist")
    account = rows[0].account
    if account.status is not AccountStatus.active:
        raise Unauthenticated("the acting account is disabled")
    if account.role is not principal.role:
        raise Unauthenticated("the acting principal's role does not match its account")
    _check_proof(ctx, _public_key_bytes(account.public_key), account.account_id)
    return rows[0]


async def _new_token(
    ctx: CallContext, role: Role, hours: int, issued_by: str | None
) -> auth.IssuedToken:
    token = secrets.token_urlsafe(32)  # 256 bits
    now = _now()
    row = StoredToken(
        token_id=str(uuid.uuid4()),
        token_hash=_hash_token(token),
        role=role,
        expires_at=now + timedelta(hours=hours),
        issued_by=issued_by,
        created_at=now,
        revoked_at=None,
        used_by=None,
        used_at=None,
        mac="",
    )
    (tag,) = await seal_rows(_runtime(ctx), [row])
    row = row.with_(mac=tag)
    await store.insert_token(ctx.tx, row)
    await _audit(
        ctx,
        "auth.token_issued",
        AuditAction.create,
        AuditOutcome.success,
        entity_type=store.TOKENS_TABLE,
        entity_id=row.token_id,
        detail=f"role {role.value}, expires {row.expires_at.isoformat()}",
    )
    return auth.IssuedToken(
        token_id=row.token_id, token=token, role=role, expires_at=row.expires_at
    )


@router.handler(auth.BOOTSTRAP)
async def bootstrap(req: auth.BootstrapRequest, ctx: CallContext) -> auth.IssuedToken:
    """The first administrator's token; refused once any administrator exists."""
    runtime = _runtime(ctx)
    if await verified(runtime, await store.administrators(ctx.tx)):
        raise Conflict("an administrator already exists: ask them for a registration token")
    return await _new_token(ctx, Role.administrator, req.expires_hours, None)


@router.handler(auth.REGISTER)
async def register(req: auth.RegisterRequest, ctx: CallContext) -> auth.Account:
    """A new staff member: token + identity + public key, signed by that key."""
    runtime = _runtime(ctx)
    public_key = _public_key_bytes(req.public_key)
    _check_proof(ctx, public_key, auth.REGISTRATION_KEY_ID)
    token = await store.lock_token_by_hash(ctx.tx, _hash_token(req.token))
    valid = await verified(runtime, [token] if token else [])
    if not valid or token_state(valid[0], _now()) is not TokenState.pending:
        raise Unauthenticated(REFUSED_REGISTRATION)
    token = valid[0]
    if await store.username_taken(ctx.tx, req.username):
        raise Conflict(f"the username {req.username!r} is taken")
    now = _now()
    account = Account(
        account_id=str(uuid.uuid4()),
        username=req.username,
        display_name=req.display_name,
        role=token.role,
        status=AccountStatus.active,
        public_key=req.public_key,
        specialty=req.specialty,
        created_at=now,
        updated_at=now,
    )
    used = token.with_(used_by=account.account_id, used_at=now)
    account_tag, token_tag = await seal_rows(runtime, [StoredAccount(account, ""), used])
    await store.insert_account(ctx.tx, StoredAccount(account, account_tag))
    await store.update_token(ctx.tx, used.with_(mac=token_tag))
    await _audit(
        ctx,
        "auth.registered",
        AuditAction.create,
        AuditOutcome.success,
        entity_type="staff_accounts",
        entity_id=account.account_id,
        detail=f"{account.username} as {account.role.value}",
        principal=Principal(account_id=account.account_id, role=account.role),
    )
    return account


@router.handler(auth.RESOLVE_KEY)
async def resolve_key(req: auth.ResolveKeyRequest, ctx: CallContext) -> auth.AccountRecord:
    runtime = _runtime(ctx)
    stored = await store.get_account(runtime.db, req.account_id)
    if stored is None:
        raise NotFound("no such account")
    if req.verify and not await verified(runtime, [stored]):
        raise IntegrityError("the account row fails its integrity check")
    return auth.AccountRecord(account=stored.account, mac=stored.mac)


@router.handler(auth.ME)
async def me(req: auth.MeRequest, ctx: CallContext) -> auth.Account:
    return (await _caller(ctx)).account


@router.handler(auth.ISSUE_TOKEN)
async def issue_token(req: auth.IssueTokenRequest, ctx: CallContext) -> auth.IssuedToken:
    admin = await _caller(ctx)
    return await _new_token(ctx, req.role, req.expires_hours, admin.account.account_id)


@router.handler(auth.LIST_TOKENS)
async def list_tokens(req: auth.ListTokensRequest, ctx: CallContext) -> auth.TokenList:
    await _caller(ctx)
    runtime = _runtime(ctx)
    assert runtime.db is not None
    tokens = [token_info(t) for t in await verified(runtime, await store.list_tokens(runtime.db))]
    if req.state is not None:
        tokens = [t for t in tokens if t.state is req.state]
    return auth.TokenList(tokens=tokens)


@router.handler(auth.REVOKE_TOKEN)
async def revoke_token(req: auth.RevokeTokenRequest, ctx: CallContext) -> auth.TokenInfo:
    await _caller(ctx)
    runtime = _runtime(ctx)
    token = await store.lock_token(ctx.tx, req.token_id)
    valid = await verified(runtime, [token] if token else [])
    if not valid:
        raise NotFound("no such registration token")
    state = token_state(valid[0], _now())
    if state is not TokenState.pending:
        raise Conflict(f"the token is already {state.value}")
    revoked = valid[0].with_(revoked_at=_now())
    (tag,) = await seal_rows(runtime, [revoked])
    revoked = revoked.with_(mac=tag)
    await store.update_token(ctx.tx, revoked)
    await _audit(
        ctx,
        "auth.token_revoked",
        AuditAction.update,
        AuditOutcome.success,
        entity_type=store.TOKENS_TABLE,
        entity_id=revoked.token_id,
    )
    return token_info(revoked)


@router.handler(auth.LIST_STAFF)
async def list_staff(req: auth.ListStaffRequest, ctx: CallContext) -> auth.StaffList:
    await _caller(ctx)
    runtime = _runtime(ctx)
    assert runtime.db is not None
    rows = await verified(runtime, await store.list_accounts(runtime.db, req.role))
    return auth.StaffList(accounts=[r.account for r in rows])


async def _change_account(ctx: CallContext, account_id: str, **changes: object) -> Account:
    runtime = _runtime(ctx)
    stored = await store.lock_account(ctx.tx, account_id)
    valid = await verified(runtime, [stored] if stored else [])
    if not valid:
        raise NotFound("no such account")
    account = valid[0].account.model_copy(update={**changes, "updated_at": _now()})
    (tag,) = await seal_rows(runtime, [StoredAccount(account, "")])
    await store.update_account(ctx.tx, StoredAccount(account, tag))
    await outbox.add_event(
        ctx.tx, auth.ACCOUNT_CHANGED, auth.AccountChanged(account_id=account.account_id)
    )
    return account


@router.handler(auth.SET_ACCOUNT_STATUS)
async def set_account_status(req: auth.SetAccountStatusRequest, ctx: CallContext) -> auth.Account:
    admin = await _caller(ctx)
    if req.account_id == admin.account.account_id and req.status is AccountStatus.disabled:
        raise Forbidden("an administrator cannot disable their own account")
    account = await _change_account(ctx, req.account_id, status=req.status)
    await _audit(
        ctx,
        f"auth.account_{'disabled' if req.status is AccountStatus.disabled else 'enabled'}",
        AuditAction.update,
        AuditOutcome.success,
        entity_type="staff_accounts",
        entity_id=account.account_id,
    )
    return account


@router.handler(auth.ROTATE_KEY)
async def rotate_key(req: auth.RotateKeyRequest, ctx: CallContext) -> auth.Account:
    """Replace one's own key; the request is signed by the old key."""
    caller = await _caller(ctx)
    _public_key_bytes(req.new_public_key)
    account = await _change_account(ctx, caller.account.account_id, public_key=req.new_public_key)
    await _audit(
        ctx,
        "auth.key_rotated",
        AuditAction.update,
        AuditOutcome.success,
        entity_type="staff_accounts",
        entity_id=account.account_id,
    )
    return account


@router.handler(auth.DIRECTORY)
async def directory(req: auth.DirectoryRequest, ctx: CallContext) -> auth.Directory:
    await _caller(ctx)
    runtime = _runtime(ctx)
    assert runtime.db is not None
    rows = await verified(runtime, await store.list_accounts(runtime.db, req.role))
    return auth.Directory(
        staff=[
            auth.DirectoryEntry(
                account_id=r.account.account_id,
                display_name=r.account.display_name,
                role=r.account.role,
                specialty=r.account.specialty,
            )
            for r in rows
            if r.account.status is AccountStatus.active
        ]
    )
