"""Signers' accounts as a service looks them up to check a forwarded signature.

The default asks auth (`auth.resolve_key`, which verifies the row's MAC through the
keyvault) and remembers the answer briefly; `auth.account.changed` drops an account at
once (the runtime subscribes every process that serves users). The keyvault and auth
bring their own sources (the keyvault checks the MAC with its own integrity key; auth
reads its own table).
"""

from __future__ import annotations

from contracts.auth import RESOLVE_KEY, AccountRecord, ResolveKeyRequest
from mesh.cache import TtlCache
from mesh.errors import IntegrityError, NotFound
from mesh.rpc import RpcClient

ACCOUNT_TTL_S = 5.0
MAX_ACCOUNT_ID = 64


class RemoteAccounts:
    """Accounts as auth serves them (row MAC verified), cached for `ttl_s`."""

    def __init__(self, rpc: RpcClient, ttl_s: float = ACCOUNT_TTL_S) -> None:
        self._rpc = rpc
        self._cache: TtlCache[str, AccountRecord] = TtlCache(ttl_s)

    async def get(self, account_id: str) -> AccountRecord | None:
        cached = self._cache.get(account_id)
        if cached is not None:
            return cached
        if not 0 < len(account_id) <= MAX_ACCOUNT_ID:
            return None
        try:
            record = await self._rpc.call(
                RESOLVE_KEY, ResolveKeyRequest(account_id=account_id), principal=None
            )
        except (NotFound, IntegrityError):
            return None
        if record.account.account_id != account_id:
            return None
        self._cache.put(account_id, record)
        return record

    def forget(self, account_id: str) -> None:
        self._cache.forget(account_id)
