"""The audit service: ingesting audit events into the hash chain, and administrators'
queries, export and verification."""

from __future__ import annotations

import json
from typing import Any

from contracts import audit
from contracts import keyvault as kv
from contracts.audit import AuditEvent, StoredAuditEvent
from mesh.context import CallContext
from mesh.events import ReceivedEvent
from mesh.logging import get_logger
from mesh.rpc import RpcRouter
from mesh.runtime import Runtime
from services.audit import chain, store

router = RpcRouter(audit.SERVICE)
log = get_logger("audit")
VERIFY_PAGE = 2000


async def ingest(runtime: Runtime, event: AuditEvent) -> bool:
    """Append one event to the chain, once (a redelivery finds its event id and stops)."""
    assert runtime.db is not None
    async with runtime.db.transaction() as conn:
        seq, prev = await store.lock_head(conn)  # serialises appends across replicas
        if await store.exists(conn, event.event_id):
            return False
        seq += 1
        await store.append(conn, seq, event, prev, chain.entry_hash(prev, seq, event))
    return True


def consumer(runtime: Runtime) -> Any:
    async def handle(received: ReceivedEvent[AuditEvent]) -> None:
        await ingest(runtime, received.payload)

    return handle


async def checkpoint(runtime: Runtime) -> int | None:
    """MAC the current chain head through the keyvault; returns its seq (None: nothing new)."""
    assert runtime.db is not None
    seq, head_hash = await store.head(runtime.db)
    if seq == 0 or seq <= await store.last_checkpoint_seq(runtime.db):
        return None
    reply = await runtime.rpc.call(kv.MAC, kv.MacRequest(rows=[chain.head_mac_row(seq, head_hash)]))
    await store.add_checkpoint(runtime.db, seq, head_hash, reply.tags[0])
    return seq


def _runtime(ctx: CallContext) -> Runtime:
    assert ctx.runtime is not None and ctx.runtime.db is not None
    return ctx.runtime


def _page(entries: list[StoredAuditEvent], total: int, offset: int) -> audit.AuditPage:
    end = offset + len(entries)
    return audit.AuditPage(entries=entries, total=total, next_offset=end if end < total else None)


@router.handler(audit.QUERY)
async def query(req: audit.AuditQuery, ctx: CallContext) -> audit.AuditPage:
    db = _runtime(ctx).db
    assert db is not None
    entries, total = await store.search(db, req)
    return _page(entries, total, req.offset)


@router.handler(audit.PATIENT_HISTORY)
async def patient_history(req: audit.PatientHistoryRequest, ctx: CallContext) -> audit.AuditPage:
    """Who read or changed this patient's record, and when (newest first)."""
    return await query(
        audit.AuditQuery(
            patient_id=req.patient_id,
            sort=audit.SortField.recorded,
            descending=True,
            offset=req.offset,
            limit=req.limit,
        ),
        ctx,
    )


_ACTION_CODES = {"C": "C", "R": "R", "U": "U", "D": "D", "E": "E"}
_OUTCOME_CODES = {"success": "0", "refused": "4", "failure": "8"}


def fhir(entry: StoredAuditEvent) -> dict[str, Any]:
    """A FHIR R4 AuditEvent resource for one entry."""
    e = entry.event
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": e.event_id,
        "type": {"system": "urn:medihaven:audit-type", "code": e.type},
        "action": _ACTION_CODES[e.action.value],
        "recorded": chain.recorded_text(e.recorded),
        "outcome": _OUTCOME_CODES[e.outcome.value],
        "agent": [
            {
                "who": {"identifier": {"value": e.agent.account_id}} if e.agent.account_id else {},
                "requestor": True,
                **({"role": [{"text": e.agent.role.value}]} if e.agent.role else {}),
                **(
                    {"network": {"address": e.agent.address, "type": "2"}}
                    if e.agent.address
                    else {}
                ),
                **(
                    {"purposeOfUse": [{"coding": [{"code": e.purpose_of_use}]}]}
                    if e.purpose_of_use
                    else {}
                ),
            }
        ],
        "source": {"observer": {"display": e.source}},
        "extension": [{"url": "urn:medihaven:audit-seq", "valueInteger": entry.seq}],
    }
    entities: list[dict[str, Any]] = []
    if e.patient_id:
        entities.append({"what": {"reference": f"Patient/{e.patient_id}"}})
    if e.entity_type and e.entity_id:
        entities.append({"what": {"identifier": {"system": e.entity_type, "value": e.entity_id}}})
    if entities:
        resource["entity"] = entities
    if e.detail:
        resource["outcomeDesc"] = e.detail
    return resource


@router.handler(audit.EXPORT)
async def export(req: audit.AuditQuery, ctx: CallContext) -> audit.ExportReply:
    page = await query(req, ctx)
    lines = [json.dumps(fhir(entry), separators=(",", ":")) for entry in page.entries]
    return audit.ExportReply(
        ndjson="".join(line + "\n" for line in lines),
        count=len(lines),
        next_offset=page.next_offset,
    )


@router.handler(audit.VERIFY)
async def verify(req: audit.VerifyRequest, ctx: CallContext) -> audit.VerifyReply:
    return await verify_chain(_runtime(ctx))


async def verify_chain(runtime: Runtime) -> audit.VerifyReply:
    """Walk the whole chain; name the first entry that was edited, inserted or deleted."""
    db = runtime.db
    assert db is not None
    marks = await store.checkpoints(db)
    valid_macs: list[bool] = []
    if marks:
        reply = await runtime.rpc.call(
            kv.VERIFY_MAC,
            kv.VerifyMacRequest(
                rows=[chain.head_mac_row(seq, h) for seq, h, _ in marks],
                tags=[mac for _, _, mac in marks],
            ),
        )
        valid_macs = reply.valid
    checkpoint_at = {seq: (h, ok) for (seq, h, _), ok in zip(marks, valid_macs, strict=True)}

    def bad(seq: int, problem: str, entries: int) -> audit.VerifyReply:
        """The reply naming the first bad entry (entries = how many verified before it)."""
        log.error("audit.chain_broken", seq=seq, problem=problem)
        return audit.VerifyReply(
            ok=False, entries=entries, checkpoints=len(marks), first_bad_seq=seq, problem=problem
        )

    expected, prev, count = 1, chain.GENESIS, 0
    while True:
        rows = await store.chain(db, expected - 1, VERIFY_PAGE)
        for row in rows:
            seq, prev_hash, stored_hash = int(row[0]), bytes(row[16]), bytes(row[17])
            if seq != expected:
                return bad(expected, f"entry {expected} is missing: deleted", count)
            if prev_hash != prev:
                return bad(
                    seq, "its previous-entry hash does not match: inserted or reordered", count
                )
            if chain.entry_hash(prev, seq, store.stored(row).event) != stored_hash:
                return bad(seq, "its content does not match its hash: edited", count)
            if seq in checkpoint_at:
                mark_hash, mac_ok = checkpoint_at[seq]
                if not mac_ok:
                    return bad(seq, "the checkpoint MAC at this entry is invalid: forged", count)
                if mark_hash != stored_hash:
                    return bad(
                        seq, "the chain disagrees with the MAC'd checkpoint: rewritten", count
                    )
            prev, expected, count = stored_hash, expected + 1, count + 1
        if len(rows) < VERIFY_PAGE:
            break
    head_seq, head_hash = await store.head(db)
    if head_seq != count or head_hash != prev:
        if count > head_seq:
            return bad(
                head_seq + 1, f"entry {head_seq + 1} lies beyond the chain head: inserted", count
            )
        return bad(count + 1, f"entries {count + 1}..{head_seq} are missing: deleted", count)
    for seq in checkpoint_at:
        if seq > count:
            return bad(count + 1, f"entries up to checkpoint {seq} are missing: deleted", count)
    return audit.VerifyReply(ok=True, entries=count, checkpoints=len(marks))
