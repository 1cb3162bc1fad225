"""How the keyvault knows a signer: the account row as auth stores it, MAC checked here.

A compromised gateway or service can put any principal in a message's headers, but it
cannot sign as the user, and it cannot make auth's row of a key it made up pass the
keyvault's own integrity key. The runtime verifies every forwarded proof against the
account this source returns (`mesh.proofs`); rows are remembered briefly and dropped on
`auth.account.changed` or when the keyvault seals.
"""

from __future__ import annotations

from contracts.auth import RESOLVE_KEY, AccountRecord, ResolveKeyRequest, account_mac_row
from mesh.accounts import MAX_ACCOUNT_ID
from mesh.cache import TtlCache
from mesh.errors import NotFound, RpcError
from mesh.logging import get_logger
from mesh.rpc import RpcClient
from services.keyvault.vault import Vault

log = get_logger("keyvault.gate")

CACHE_TTL_S = 5.0


class AccountKeys:
    """Account rows whose MAC the keyvault verified itself (a source for `mesh.proofs`)."""

    def __init__(self, rpc: RpcClient, vault: Vault, ttl_s: float = CACHE_TTL_S) -> None:
        self._rpc = rpc
        self._vault = vault
        self._cache: TtlCache[str, AccountRecord] = TtlCache(ttl_s)

    def forget(self, account_id: str) -> None:
        self._cache.forget(account_id)

    def clear(self) -> None:
        self._cache.clear()

    async def get(self, account_id: str) -> AccountRecord | None:
        cached = self._cache.get(account_id)
        if cached is not None:
            return cached
        if not 0 < len(account_id) <= MAX_ACCOUNT_ID:
            return None
        self._vault.require_unsealed()
        try:
            # verify=False: auth would ask us to verify the MAC; we do it with our own key.
            record = await self._rpc.call(
                RESOLVE_KEY, ResolveKeyRequest(account_id=account_id, verify=False)
            )
        except NotFound:
            return None
        except RpcError as exc:
            log.warning("keyvault.account_lookup_failed", error=exc.message)
            return None
        if record.account.account_id != account_id or not await self._vault.verify_one(
            account_mac_row(record.account), record.mac
        ):
            log.error("keyvault.account_row_rejected", account_id=account_id)
            return None
        self._cache.put(account_id, record)
        return record
