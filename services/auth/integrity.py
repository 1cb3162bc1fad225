"""Row MACs of the auth tables, through the keyvault, and what happens when one fails.

Every read verifies (one batched keyvault call per request). A row that fails is treated
as if it did not exist, and an integrity audit event names it: an attacker who edits the
database (promotes a receptionist, inserts an administrator, swaps two public keys) gains
nothing and is seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from contracts import keyvault as kv
from contracts.audit import AuditAction, AuditOutcome
from contracts.auth import SERVICE, account_mac_row
from mesh import audit
from mesh.logging import get_logger
from mesh.runtime import Runtime
from services.auth.store import StoredAccount, StoredToken, token_mac_row

log = get_logger("auth.integrity")

T = TypeVar("T", StoredAccount, StoredToken)


def mac_row(item: StoredAccount | StoredToken) -> kv.MacRow:
    if isinstance(item, StoredAccount):
        return account_mac_row(item.account)
    return token_mac_row(item)


async def seal_rows(runtime: Runtime, items: Sequence[StoredAccount | StoredToken]) -> list[str]:
    """MAC tags for rows about to be written."""
    reply = await runtime.rpc.call(kv.MAC, kv.MacRequest(rows=[mac_row(i) for i in items]))
    return reply.tags


async def verified(runtime: Runtime, items: Sequence[T]) -> list[T]:
    """The rows whose MAC verifies; each one that does not is audited and dropped."""
    if not items:
        return []
    reply = await runtime.rpc.call(
        kv.VERIFY_MAC,
        kv.VerifyMacRequest(rows=[mac_row(i) for i in items], tags=[i.mac for i in items]),
    )
    good: list[T] = []
    for item, ok in zip(items, reply.valid, strict=True):
        if ok:
            good.append(item)
            continue
        row = mac_row(item)
        log.error("auth.integrity_failure", table=row.table, pk=row.pk)
        await audit.record(
            runtime,
            audit.make_event(
                SERVICE,
                "integrity.row_rejected",
                AuditAction.read,
                AuditOutcome.failure,
                entity_type=row.table,
                entity_id=row.pk,
                detail=f"{row.table} row {row.pk} fails its MAC: edited or inserted outside "
                "Medihaven; treated as nonexistent",
            ),
        )
    return good
