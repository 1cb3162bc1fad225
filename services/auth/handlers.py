"""RPC handlers of the auth service: accounts, keys, registration tokens.

The runtime has verified the user's signature for each operation (the signer's account
is `ctx.operation.account`); rows are MAC'd by the keyvault only for that signed
operation (`keyvault.mac_token`, `keyvault.mac_account`), so nothing here can mint an
account or a token the signer did not ask for.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from contracts import auth, fhir
from contracts import keyvault as kv
from contracts.audit import AuditAction, AuditOutcome, AuditType
from contracts.auth import Account, AccountRecord, AccountStatus, TokenState, token_hash
from contracts.base import Principal, Role
from mesh import audit, outbox
from mesh.accounts import MAX_ACCOUNT_ID
from mesh.context import CallContext, runtime_of
from mesh.errors import (
    Conflict,
    Forbidden,
    IntegrityError,
    InvalidRequest,
    NotFound,
    Unauthenticated,
)
from mesh.rpc import RpcRouter
from mesh.runtime import Runtime
from services.auth import store
from services.auth.integrity import verified
from services.auth.store import StoredAccount, StoredToken

router = RpcRouter(auth.SERVICE)

REFUSED_REGISTRATION = "this registration token is not valid (unknown, expired, revoked or used)"


def _now() -> datetime:
    return datetime.now(UTC)


def _public_key_bytes(value: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("public_key is not base64") from None
    if len(raw) != 32:
        raise InvalidRequest("public_key must be a 32-byte Ed25519 public key")
    return raw


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
    type: AuditType,
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
    await audit.record(runtime_of(ctx), event, conn=ctx.tx)


def _signer(ctx: CallContext) -> Account:
    """The account that signed this operation (verified by the runtime, row MAC checked)."""
    assert ctx.operation is not None and ctx.operation.account is not None
    return ctx.operation.account


def _token_row(role: Role, hours: int, issued_by: str | None) -> tuple[str, StoredToken]:
    token = secrets.token_urlsafe(32)  # 256 bits
    now = _now()
    row = StoredToken(
        token_id=str(uuid.uuid4()),
        token_hash=token_hash(token),
        role=role,
        expires_at=now + timedelta(hours=hours),
        issued_by=issued_by,
        created_at=now,
        revoked_at=None,
        used_by=None,
        used_at=None,
        mac="",
    )
    return token, row


async def _store_new_token(ctx: CallContext, token: str, row: StoredToken) -> auth.IssuedToken:
    await store.insert_token(ctx.tx, row)
    await _audit(
        ctx,
        AuditType.auth_token_issued,
        AuditAction.create,
        AuditOutcome.success,
        entity_type=store.TOKENS_TABLE,
        entity_id=row.token_id,
        detail=f"role {row.role.value}, expires {row.expires_at.isoformat()}",
    )
    return auth.IssuedToken(
        token_id=row.token_id, token=token, role=row.role, expires_at=row.expires_at
    )


@router.handler(auth.BOOTSTRAP)
async def bootstrap(req: auth.BootstrapRequest, ctx: CallContext) -> auth.IssuedToken:
    """The first administrator's token; refused once any administrator exists (here, and
    by the keyvault, which MACs it only while it never registered an administrator)."""
    runtime = runtime_of(ctx)
    if await verified(runtime, await store.administrators(ctx.tx)):
        raise Conflict("an administrator already exists: ask them for a registration token")
    token, row = _token_row(Role.administrator, req.expires_hours, None)
    reply = await runtime.rpc.call(kv.MAC_BOOTSTRAP_TOKEN, kv.MacTokenRequest(token=row.row))
    return await _store_new_token(ctx, token, row.with_(mac=reply.tags[0]))


@router.handler(auth.REGISTER)
async def register(req: auth.RegisterRequest, ctx: CallContext) -> auth.Account:
    """A new staff member: token + identity + public key, signed by that key (checked by
    the runtime, and by the keyvault, which alone can MAC the new row)."""
    runtime = runtime_of(ctx)
    _public_key_bytes(req.public_key)
    token = await store.lock_token_by_hash(ctx.tx, token_hash(req.token))
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
    sealed = await runtime.rpc.call(
        kv.MAC_ACCOUNT,
        kv.MacAccountRequest(account=account, token=token.row, token_mac=token.mac),
    )
    if sealed.token is None or sealed.token_mac is None:
        raise IntegrityError("the keyvault did not seal the used token")
    await store.insert_account(ctx.tx, StoredAccount(account, sealed.account_mac))
    await store.update_token(ctx.tx, StoredToken.of(sealed.token, sealed.token_mac))
    await _audit(
        ctx,
        AuditType.auth_registered,
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
    runtime = runtime_of(ctx)
    stored = await store.get_account(runtime.db, req.account_id)
    if stored is None:
        raise NotFound("no such account")
    if req.verify and not await verified(runtime, [stored]):
        raise IntegrityError("the account row fails its integrity check")
    return auth.AccountRecord(account=stored.account, mac=stored.mac)


@router.handler(auth.ME)
async def me(req: auth.MeRequest, ctx: CallContext) -> auth.Me:
    settings = runtime_of(ctx).settings
    return auth.Me(
        **_signer(ctx).model_dump(),
        clinic_time_zone=settings.clinic_timezone,
        clinic_region=settings.clinic_region,
    )


@router.handler(auth.ISSUE_TOKEN)
async def issue_token(req: auth.IssueTokenRequest, ctx: CallContext) -> auth.IssuedToken:
    token, row = _token_row(req.role, req.expires_hours, _signer(ctx).account_id)
    reply = await runtime_of(ctx).rpc.call(kv.MAC_TOKEN, kv.MacTokenRequest(token=row.row))
    return await _store_new_token(ctx, token, row.with_(mac=reply.tags[0]))


@router.handler(auth.LIST_TOKENS)
async def list_tokens(req: auth.ListTokensRequest, ctx: CallContext) -> auth.TokenList:
    runtime = runtime_of(ctx)
    assert runtime.db is not None
    tokens = [token_info(t) for t in await verified(runtime, await store.list_tokens(runtime.db))]
    if req.state is not None:
        tokens = [t for t in tokens if t.state is req.state]
    return auth.TokenList(tokens=tokens)


@router.handler(auth.REVOKE_TOKEN)
async def revoke_token(req: auth.RevokeTokenRequest, ctx: CallContext) -> auth.TokenInfo:
    runtime = runtime_of(ctx)
    token = await store.lock_token(ctx.tx, req.token_id)
    valid = await verified(runtime, [token] if token else [])
    if not valid:
        raise NotFound("no such registration token")
    state = token_state(valid[0], _now())
    if state is not TokenState.pending:
        raise Conflict(f"the token is already {state.value}")
    revoked = valid[0].with_(revoked_at=_now())
    reply = await runtime.rpc.call(
        kv.MAC_TOKEN,
        kv.MacTokenRequest(token=revoked.row, previous=valid[0].row, previous_mac=valid[0].mac),
    )
    revoked = revoked.with_(mac=reply.tags[0])
    await store.update_token(ctx.tx, revoked)
    await _audit(
        ctx,
        AuditType.auth_token_revoked,
        AuditAction.update,
        AuditOutcome.success,
        entity_type=store.TOKENS_TABLE,
        entity_id=revoked.token_id,
    )
    return token_info(revoked)


@router.handler(auth.LIST_STAFF)
async def list_staff(req: auth.ListStaffRequest, ctx: CallContext) -> auth.StaffList:
    runtime = runtime_of(ctx)
    assert runtime.db is not None
    rows = await verified(runtime, await store.list_accounts(runtime.db, req.role))
    return auth.StaffList(accounts=[r.account for r in rows])


async def _change_account(
    ctx: CallContext, account_id: str, audit_type: AuditType, **changes: object
) -> Account:
    """Change one account (its MAC renewed by the keyvault), announce and audit it."""
    runtime = runtime_of(ctx)
    stored = await store.lock_account(ctx.tx, account_id)
    valid = await verified(runtime, [stored] if stored else [])
    if not valid:
        raise NotFound("no such account")
    account = valid[0].account.model_copy(update={**changes, "updated_at": _now()})
    reply = await runtime.rpc.call(
        kv.MAC_ACCOUNT,
        kv.MacAccountRequest(
            account=account, previous=AccountRecord(account=valid[0].account, mac=valid[0].mac)
        ),
    )
    await store.update_account(ctx.tx, StoredAccount(account, reply.account_mac))
    await outbox.add_event(
        ctx.tx, auth.ACCOUNT_CHANGED, auth.AccountChanged(account_id=account.account_id)
    )
    await _audit(
        ctx,
        audit_type,
        AuditAction.update,
        AuditOutcome.success,
        entity_type="staff_accounts",
        entity_id=account.account_id,
    )
    return account


@router.handler(auth.SET_ACCOUNT_STATUS)
async def set_account_status(req: auth.SetAccountStatusRequest, ctx: CallContext) -> auth.Account:
    admin = _signer(ctx)
    if req.account_id == admin.account_id and req.status is AccountStatus.disabled:
        raise Forbidden("an administrator cannot disable their own account")
    disabled = req.status is AccountStatus.disabled
    audit_type = AuditType.auth_account_disabled if disabled else AuditType.auth_account_enabled
    return await _change_account(ctx, req.account_id, audit_type, status=req.status)


@router.handler(auth.ROTATE_KEY)
async def rotate_key(req: auth.RotateKeyRequest, ctx: CallContext) -> auth.Account:
    """Replace one's own key; the request is signed by the old key."""
    _public_key_bytes(req.new_public_key)
    return await _change_account(
        ctx, _signer(ctx).account_id, AuditType.auth_key_rotated, public_key=req.new_public_key
    )


@router.handler(auth.DIRECTORY)
async def directory(req: auth.DirectoryRequest, ctx: CallContext) -> auth.Directory:
    runtime = runtime_of(ctx)
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


class LocalAccounts:
    """Signers' accounts from auth's own table, row MAC verified (the runtime's source)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def get(self, account_id: str) -> AccountRecord | None:
        runtime = self._runtime
        if runtime.db is None or not 0 < len(account_id) <= MAX_ACCOUNT_ID:
            return None
        stored = await store.get_account(runtime.db, account_id)
        rows = await verified(runtime, [stored] if stored else [])
        return AccountRecord(account=rows[0].account, mac=rows[0].mac) if rows else None

    def forget(self, account_id: str) -> None:
        """Nothing to forget: every lookup reads the table."""


async def use_local_accounts(runtime: Runtime) -> None:
    runtime.accounts = LocalAccounts(runtime)


@router.handler(fhir.PRACTITIONER_SEARCH)
async def fhir_practitioners(req: fhir.PractitionerSearch, ctx: CallContext) -> auth.Directory:
    """FHIR Practitioners: the active physicians of the staff directory."""
    return await directory(auth.DirectoryRequest(role=Role.physician), ctx)


@router.handler(fhir.PRACTITIONER_READ)
async def fhir_practitioner(req: fhir.PractitionerRead, ctx: CallContext) -> auth.Directory:
    """That active physician's directory entry (an empty directory: not one)."""
    found = await directory(auth.DirectoryRequest(role=Role.physician), ctx)
    return auth.Directory(staff=[s for s in found.staff if s.account_id == req.practitioner_id])
