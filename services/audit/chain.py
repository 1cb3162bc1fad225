"""The hash chain: how an entry is encoded and hashed (pure, no I/O).

hash(n) = SHA-256( "medihaven.audit.v1" ‖ hash(n-1) ‖ lp(seq) ‖ lp(field) … ) over every
stored field in a fixed order, each length-prefixed (None distinct from ""), so no two
different entries encode alike. The first entry chains to 32 zero bytes.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from contracts.audit import AuditEvent
from contracts.keyvault import MacRow

GENESIS = bytes(32)
LABEL = b"medihaven.audit.v1"
HEAD_TABLE = "audit_chain_head"


def _lp(value: str | None) -> bytes:
    if value is None:
        return b"\xff\xff\xff\xff"
    data = value.encode("utf-8")
    return len(data).to_bytes(4, "big") + data


def recorded_text(value: datetime) -> str:
    """The recorded time as stored (UTC, microseconds), whatever zone it came in."""
    stamp = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fields(event: AuditEvent) -> list[str | None]:
    return [
        event.event_id,
        event.type,
        event.action.value,
        event.outcome.value,
        recorded_text(event.recorded),
        event.agent.account_id,
        event.agent.role.value if event.agent.role else None,
        event.agent.address,
        event.source,
        event.patient_id,
        event.entity_type,
        event.entity_id,
        event.purpose_of_use,
        event.detail,
        event.trace_id,
    ]


def entry_hash(prev_hash: bytes, seq: int, event: AuditEvent) -> bytes:
    digest = hashlib.sha256(LABEL + prev_hash + _lp(str(seq)))
    for value in fields(event):
        digest.update(_lp(value))
    return digest.digest()


def head_mac_row(seq: int, head_hash: bytes) -> MacRow:
    """What the keyvault MACs at a checkpoint: the chain head."""
    return MacRow(table=HEAD_TABLE, pk=str(seq), columns=[("hash", head_hash.hex())])
