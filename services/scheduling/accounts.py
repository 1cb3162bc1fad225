"""Staff account rows as auth verified them (row MAC checked), kept for a few seconds.

A write checks two accounts (the caller's key and role, the physician's role), so under
load most lookups repeat. A cached row is dropped when auth announces a change to the
account (`auth.account.changed`: disabled, role or key changed) and after `ttl_s` at
the latest, the same bound the keyvault keeps on its own account cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from contracts.auth import (
    ACCOUNT_CHANGED,
    RESOLVE_KEY,
    AccountChanged,
    AccountRecord,
    ResolveKeyRequest,
)
from mesh.errors import NotFound
from mesh.events import EventHandler, ReceivedEvent
from mesh.runtime import ConsumerSpec, Runtime

CACHE_TTL_S = 5.0
STATE_KEY = "accounts"


@dataclass
class _Cached:
    record: AccountRecord
    until: float


class Accounts:
    def __init__(self, ttl_s: float = CACHE_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, _Cached] = {}

    def forget(self, account_id: str) -> None:
        self._entries.pop(account_id, None)

    async def get(self, runtime: Runtime, account_id: str) -> AccountRecord | None:
        """The account's row (verified by auth through the keyvault), None if unknown."""
        cached = self._entries.get(account_id)
        if cached is not None and cached.until > time.monotonic():
            return cached.record
        try:
            record = await runtime.rpc.call(RESOLVE_KEY, ResolveKeyRequest(account_id=account_id))
        except NotFound:
            return None
        if record.account.account_id != account_id:
            return None
        self._entries[account_id] = _Cached(record, time.monotonic() + self.ttl_s)
        return record


def accounts_of(runtime: Runtime) -> Accounts:
    accounts: Accounts = runtime.state.setdefault(STATE_KEY, Accounts())
    return accounts


def forget_changed_accounts(runtime: Runtime) -> EventHandler:
    async def handle(event: ReceivedEvent[AccountChanged]) -> None:
        accounts_of(runtime).forget(event.payload.account_id)

    return handle


CONSUMERS = [
    # Non-durable: every replica must drop the account from its own cache.
    ConsumerSpec("scheduling-accounts", [ACCOUNT_CHANGED], forget_changed_accounts, durable=False)
]
