"""The signature gate: the keyvault serves a user only on that user's own signature.

A compromised gateway or service can put any principal in a message's headers, but it
cannot sign as the user. So before it decrypts or computes a blind index for a user,
the keyvault itself checks the forwarded RFC 9421 proof: well formed, fresh, made by the
acting principal's key, and that key's account row (as stored by auth) carries a valid
MAC under the keyvault's own integrity key, is active, and has the principal's role.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from contracts.audit import AuditAction, AuditOutcome
from contracts.auth import (
    RESOLVE_KEY,
    AccountRecord,
    ResolveKeyRequest,
    account_mac_row,
)
from contracts.base import Principal
from contracts.keyvault import SERVICE
from mesh import audit
from mesh.callers import require_signed_by
from mesh.context import CallContext
from mesh.errors import IntegrityError, NotFound, RpcError
from mesh.logging import get_logger
from mesh.runtime import Runtime
from services.keyvault.vault import Vault

log = get_logger("keyvault.gate")

CACHE_TTL_S = 5.0


@dataclass
class _Cached:
    record: AccountRecord
    until: float


class AccountKeys:
    """Recently verified account rows, dropped on `auth.account.changed` or after a TTL."""

    def __init__(self, ttl_s: float = CACHE_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, _Cached] = {}

    def forget(self, account_id: str) -> None:
        self._entries.pop(account_id, None)

    def clear(self) -> None:
        self._entries.clear()

    async def get(self, runtime: Runtime, vault: Vault, account_id: str) -> AccountRecord:
        cached = self._entries.get(account_id)
        if cached is not None and cached.until > time.monotonic():
            return cached.record
        # verify=False: auth would ask us to verify the MAC; we do it with our own key.
        record = await runtime.rpc.call(
            RESOLVE_KEY, ResolveKeyRequest(account_id=account_id, verify=False)
        )
        if record.account.account_id != account_id or not await vault.verify_one(
            account_mac_row(record.account), record.mac
        ):
            raise IntegrityError(f"the account row of {account_id} fails its integrity check")
        self._entries[account_id] = _Cached(record, time.monotonic() + self.ttl_s)
        return record


async def require_user_signature(
    ctx: CallContext, vault: Vault, accounts: AccountKeys, *, patient_id: str | None = None
) -> Principal:
    """The verified principal, or a refusal (`unauthenticated` / `integrity`) and an audit."""
    assert ctx.runtime is not None
    try:
        return await _check(ctx, vault, accounts)
    except RpcError as exc:
        log.warning("vault.signature_refused", reason=exc.message, method=ctx.method)
        event = audit.make_event(
            SERVICE,
            "vault.signature_refused",
            AuditAction.execute,
            AuditOutcome.refused,
            patient_id=patient_id,
            detail=f"{ctx.method}: {exc.message}",
        )
        await audit.record(ctx.runtime, event)
        raise


async def _check(ctx: CallContext, vault: Vault, accounts: AccountKeys) -> Principal:
    assert ctx.runtime is not None
    runtime = ctx.runtime

    async def resolve(account_id: str) -> AccountRecord | None:
        try:
            return await accounts.get(runtime, vault, account_id)
        except NotFound:
            return None

    await require_signed_by(ctx, resolve)
    assert ctx.principal is not None
    return ctx.principal
