"""Row MACs of the auth tables, through the keyvault, and what happens when one fails.

Every read verifies (one batched keyvault call per request). A row that fails is treated
as if it did not exist, and an integrity audit event names it: an attacker who edits the
database (promotes a receptionist, inserts an administrator, swaps two public keys) gains
nothing and is seen.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from contracts.auth import SERVICE, account_mac_row
from contracts.rows import MacRow
from mesh import audit, keyvault
from mesh.runtime import Runtime, service_state
from services.auth.store import StoredAccount, StoredToken, token_mac_row

T = TypeVar("T", StoredAccount, StoredToken)


def mac_row(item: StoredAccount | StoredToken) -> MacRow:
    if isinstance(item, StoredAccount):
        return account_mac_row(item.account)
    return token_mac_row(item)


class VerifiedRows:
    """Fingerprints of rows (exact MAC input + tag) the keyvault has confirmed.

    Verification is a pure function of the row, its tag and the integrity key, so a row
    seen intact need not be sent to the keyvault again while it is unchanged: any edit
    changes the fingerprint. This also lets known staff keep signing in (their own, not
    patient data) while the keyvault is sealed; a row never seen needs the keyvault.
    """

    def __init__(self, ttl_s: float = 3600.0, limit: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self.limit = limit
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    @staticmethod
    def fingerprint(row: MacRow, tag: str) -> bytes:
        return hashlib.sha256(row.model_dump_json().encode() + b"\0" + tag.encode()).digest()

    def known(self, fingerprint: bytes) -> bool:
        expiry = self._seen.get(fingerprint)
        return expiry is not None and expiry > time.monotonic()

    def remember(self, fingerprint: bytes) -> None:
        self._seen[fingerprint] = time.monotonic() + self.ttl_s
        self._seen.move_to_end(fingerprint)
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)


@dataclass
class AuthState:
    """What an auth process holds beside its runtime (`service_state`)."""

    verified_rows: VerifiedRows = field(default_factory=VerifiedRows)


def _memory(runtime: Runtime) -> VerifiedRows:
    return service_state(runtime, AuthState).verified_rows


async def verified(runtime: Runtime, items: Sequence[T]) -> list[T]:
    """The rows whose MAC verifies; each one that does not is audited and dropped."""
    if not items:
        return []
    memory = _memory(runtime)
    prints = [VerifiedRows.fingerprint(mac_row(i), i.mac) for i in items]
    unknown = [i for i, p in zip(items, prints, strict=True) if not memory.known(p)]
    results: dict[int, bool] = {}
    if unknown:
        valid = await keyvault.verify_macs(
            runtime, [mac_row(i) for i in unknown], [i.mac for i in unknown]
        )
        results = {id(i): ok for i, ok in zip(unknown, valid, strict=True)}
    good: list[T] = []
    for item, fingerprint in zip(items, prints, strict=True):
        ok = results.get(id(item), True)
        if ok:
            memory.remember(fingerprint)
            good.append(item)
            continue
        row = mac_row(item)
        await audit.record_rejected_row(
            runtime,
            SERVICE,
            table=row.table,
            pk=row.pk,
            why="fails its MAC: edited or inserted outside Medihaven; treated as nonexistent",
        )
    return good
