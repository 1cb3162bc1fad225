"""Staff-account and registration-token rows: MAC'd only for the signed operation that
makes them (DESIGN §3a, "no oracles").

Whoever holds a valid account row MAC is a member of staff, so the keyvault does not MAC
such rows on request. A token row is MAC'd for an administrator's signed issue (the
role and validity they signed) or revocation; the first administrator's token only while
the keyvault has never registered an administrator. An account row is MAC'd for a
registration signed by the new key itself, with a token row whose MAC the keyvault
checks and whose role the account gets; for an administrator's signed status change;
or for one's own signed key rotation. Each compares the new row with the one it
replaces, column by column: only what the signed request changes may differ.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts import auth
from contracts import keyvault as kv
from contracts.auth import Account, AccountStatus, TokenRow, account_mac_row, token_mac_row
from contracts.base import Role
from contracts.rows import MacRow
from mesh.errors import Conflict, Forbidden, RpcError, Unauthenticated
from mesh.proofs import Operation
from services.keyvault import store
from services.keyvault.vault import Vault

CLOCK_TOLERANCE = timedelta(minutes=2)


def _now() -> datetime:
    return datetime.now(UTC)


def _recent(value: datetime) -> bool:
    return abs(value.astimezone(UTC) - _now()) <= CLOCK_TOLERANCE


def _refuse(what: str) -> RpcError:
    return Forbidden(f"the keyvault does not MAC this row: {what}")


def _fresh(token: TokenRow) -> None:
    if token.revoked_at is not None or token.used_by is not None or token.used_at is not None:
        raise _refuse("a new token is neither revoked nor used")
    if not _recent(token.created_at):
        raise _refuse("a new token is created now")


async def _mac(vault: Vault, rows: list[MacRow]) -> list[str]:
    return await vault.mac(rows)


async def mac_token(vault: Vault, operation: Operation, req: kv.MacTokenRequest) -> kv.MacReply:
    token, signer = req.token, operation.account
    if signer is None or signer.role is not Role.administrator:
        raise _refuse("tokens are issued and revoked by administrators")
    request = operation.request
    if isinstance(request, auth.IssueTokenRequest):
        _fresh(token)
        if req.previous is not None:
            raise _refuse("a new token replaces nothing")
        if token.issued_by != signer.account_id or token.role is not request.role:
            raise _refuse("the token has the role the administrator signed, issued by them")
        lifetime = token.expires_at - token.created_at
        if abs(lifetime - timedelta(hours=request.expires_hours)) > timedelta(seconds=1):
            raise _refuse("the token expires when the administrator signed")
    elif isinstance(request, auth.RevokeTokenRequest):
        previous = await _checked_token(vault, req.previous, req.previous_mac)
        if previous.token_id != request.token_id or token.token_id != request.token_id:
            raise _refuse("the revoked token is the one named in the signed request")
        if previous.revoked_at is not None or previous.used_by is not None:
            raise _refuse("only a pending token is revoked")
        if token.revoked_at is None or not _recent(token.revoked_at):
            raise _refuse("a revocation is dated now")
        if token != previous.model_copy(update={"revoked_at": token.revoked_at}):
            raise _refuse("a revocation changes nothing but the revocation time")
    else:
        raise _refuse(f"a {operation.method.route_text} request does not change tokens")
    return kv.MacReply(tags=await _mac(vault, [token_mac_row(token)]))


async def mac_bootstrap_token(vault: Vault, req: kv.MacTokenRequest) -> kv.MacReply:
    token = req.token
    _fresh(token)
    if token.role is not Role.administrator or token.issued_by is not None or req.previous:
        raise _refuse("a bootstrap token is a new administrator's, issued by no one")
    if await store.administrator_registered(vault.db):
        raise Conflict("an administrator is registered: ask them for a registration token")
    return kv.MacReply(tags=await _mac(vault, [token_mac_row(token)]))


async def _checked_token(vault: Vault, token: TokenRow | None, tag: str | None) -> TokenRow:
    if token is None or tag is None:
        raise _refuse("the stored token row and its MAC are needed")
    if not await vault.verify_one(token_mac_row(token), tag):
        raise Unauthenticated("the registration token row fails its integrity check")
    return token


async def _checked_account(vault: Vault, previous: auth.AccountRecord | None) -> Account:
    if previous is None:
        raise _refuse("the stored account row and its MAC are needed")
    if not await vault.verify_one(account_mac_row(previous.account), previous.mac):
        raise Unauthenticated("the stored account row fails its integrity check")
    return previous.account


async def mac_account(
    vault: Vault, operation: Operation, req: kv.MacAccountRequest
) -> kv.MacAccountReply:
    account, request = req.account, operation.request
    if isinstance(request, auth.RegisterRequest):
        return await _register(vault, request, req)
    signer = operation.account
    assert signer is not None  # only a registration has no signing account
    previous = await _checked_account(vault, req.previous)
    if previous.account_id != account.account_id or account.updated_at < previous.updated_at:
        raise _refuse("a change keeps the account's id and moves its time forward")
    if isinstance(request, auth.SetAccountStatusRequest):
        if signer.role is not Role.administrator or request.account_id != account.account_id:
            raise _refuse("an administrator changes the status of the account they name")
        if signer.account_id == account.account_id and request.status is AccountStatus.disabled:
            raise _refuse("an administrator does not disable their own account")
        expected = previous.model_copy(
            update={"status": request.status, "updated_at": account.updated_at}
        )
    elif isinstance(request, auth.RotateKeyRequest):
        if signer.account_id != account.account_id:
            raise _refuse("a key is rotated by its own account")
        expected = previous.model_copy(
            update={"public_key": request.new_public_key, "updated_at": account.updated_at}
        )
    else:
        raise _refuse(f"a {operation.method.route_text} request does not change accounts")
    if account != expected:
        raise _refuse("the change touches columns the signed request does not")
    (tag,) = await _mac(vault, [account_mac_row(account)])
    return kv.MacAccountReply(account_mac=tag)


async def _register(
    vault: Vault, request: auth.RegisterRequest, req: kv.MacAccountRequest
) -> kv.MacAccountReply:
    """A registration: the new key signed it (the runtime checked), the token row is
    genuine and pending, and the account is what the new member asked for, with the
    token's role."""
    account = req.account
    token = await _checked_token(vault, req.token, req.token_mac)
    now = _now()
    if token.token_hash != auth.token_hash(request.token):
        raise Unauthenticated("the registration token does not match the signed request")
    if token.used_by is not None or token.revoked_at is not None or token.expires_at <= now:
        raise Unauthenticated("the registration token is used, revoked or expired")
    wanted = Account(
        account_id=account.account_id,
        username=request.username,
        display_name=request.display_name,
        role=token.role,
        status=AccountStatus.active,
        public_key=request.public_key,
        specialty=request.specialty,
        created_at=account.created_at,
        updated_at=account.updated_at,
    )
    if req.previous is not None or account != wanted or not _recent(account.created_at):
        raise _refuse("a new account is what the signed registration asks, with the token's role")
    used = token.model_copy(update={"used_by": account.account_id, "used_at": now})
    account_tag, token_tag = await _mac(vault, [account_mac_row(account), token_mac_row(used)])
    if token.role is Role.administrator:
        await store.record_administrator(vault.db, account.account_id)
    return kv.MacAccountReply(account_mac=account_tag, token=used, token_mac=token_tag)
