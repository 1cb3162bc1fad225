"""The hash chain: how an entry is encoded and hashed (pure, no I/O).

hash(n) = SHA-256( label ‖ hash(n-1) ‖ lp(seq) ‖ lp(field) … ) over every stored field in
a fixed order, each length-prefixed (None distinct from ""), so no two different entries
encode alike. The first entry chains to 32 zero bytes. Entries that carry their
broker-validated publisher use the label "medihaven.audit.v2" and end with lp(publisher);
the oldest entries keep "medihaven.audit.v1" without it. An entry naming several patients
(one read of a list) uses "medihaven.audit.v3": lp(publisher), lp(count), then lp(id) of
each patient in order.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from contracts.audit import AuditEvent
from contracts.keyvault import MacRow

GENESIS = bytes(32)
LABEL = b"medihaven.audit.v1"
LABEL_V2 = b"medihaven.audit.v2"
LABEL_V3 = b"medihaven.audit.v3"
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


def _label(event: AuditEvent, publisher: str | None) -> bytes:
    if event.patients:
        return LABEL_V3
    return LABEL if publisher is None else LABEL_V2


def entry_hash(
    prev_hash: bytes, seq: int, event: AuditEvent, publisher: str | None = None
) -> bytes:
    digest = hashlib.sha256(_label(event, publisher) + prev_hash + _lp(str(seq)))
    for value in fields(event):
        digest.update(_lp(value))
    if publisher is not None or event.patients:
        digest.update(_lp(publisher))
    if event.patients:
        digest.update(_lp(str(len(event.patients))))
        for patient_id in event.patients:
            digest.update(_lp(patient_id))
    return digest.digest()


def head_mac_row(seq: int, head_hash: bytes) -> MacRow:
    """What the keyvault MACs at a checkpoint: the chain head."""
    return MacRow(table=HEAD_TABLE, pk=str(seq), columns=[("hash", head_hash.hex())])
