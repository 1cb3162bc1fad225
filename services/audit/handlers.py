"""The audit service's RPC handlers: administrators' queries, export and verification
(ingestion: `ingest`; the walks of the chain: `verify`)."""

from __future__ import annotations

import json

from contracts import audit, fhir
from contracts.audit import StoredAuditEvent
from mesh import fhirmap, keyvault
from mesh.context import CallContext, runtime_of
from mesh.errors import NotFound
from mesh.logging import get_logger
from mesh.rpc import RpcRouter
from mesh.runtime import Runtime
from services.audit import chain, store
from services.audit.verify import latest_walk, start_full, state_of, verify_since_mark

router = RpcRouter(audit.SERVICE)
log = get_logger("audit")


async def checkpoint(runtime: Runtime) -> int | None:
    """MAC the current chain head through the keyvault; returns its seq (None: nothing new)."""
    assert runtime.db is not None
    seq, head_hash = await store.head(runtime.db)
    if seq == 0 or seq <= await store.last_checkpoint_seq(runtime.db):
        return None
    (tag,) = await keyvault.mac(runtime, [chain.head_mac_row(seq, head_hash)])
    await store.add_checkpoint(runtime.db, seq, head_hash, tag)
    return seq


def _page(entries: list[StoredAuditEvent], total: int, offset: int) -> audit.AuditPage:
    end = offset + len(entries)
    return audit.AuditPage(entries=entries, total=total, next_offset=end if end < total else None)


@router.handler(audit.QUERY)
async def query(req: audit.AuditQuery, ctx: CallContext) -> audit.AuditPage:
    db = runtime_of(ctx).db
    assert db is not None
    entries, total = await store.search(db, req)
    return _page(entries, total, req.offset)


async def _newest_first(
    ctx: CallContext, patient_id: str | None, offset: int, limit: int
) -> audit.AuditPage:
    """A page of one patient's events, newest first."""
    return await query(
        audit.AuditQuery(
            patient_id=patient_id,
            sort=audit.SortField.recorded,
            descending=True,
            offset=offset,
            limit=limit,
        ),
        ctx,
    )


@router.handler(audit.PATIENT_HISTORY)
async def patient_history(req: audit.PatientHistoryRequest, ctx: CallContext) -> audit.AuditPage:
    """Who read or changed this patient's record, and when (newest first)."""
    return await _newest_first(ctx, req.patient_id, req.offset, req.limit)


@router.handler(audit.EXPORT)
async def export(req: audit.AuditQuery, ctx: CallContext) -> audit.ExportReply:
    page = await query(req, ctx)
    lines = [
        json.dumps(fhirmap.audit_event(entry), separators=(",", ":")) for entry in page.entries
    ]
    return audit.ExportReply(
        ndjson="".join(line + "\n" for line in lines),
        count=len(lines),
        next_offset=page.next_offset,
    )


@router.handler(fhir.AUDIT_EVENT_SEARCH)
async def fhir_audit_events(req: fhir.AuditEventSearch, ctx: CallContext) -> audit.AuditPage:
    """FHIR `AuditEvent?patient=`: newest first, a page (the gateway maps the entries)."""
    return await _newest_first(ctx, req.patient, req.offset, req.count)


@router.handler(audit.VERIFY)
async def verify(req: audit.VerifyRequest, ctx: CallContext) -> audit.VerifyReply:
    """The chain since the last verified mark (seconds, whatever its size)."""
    return await verify_since_mark(runtime_of(ctx))


@router.handler(audit.VERIFY_FULL)
async def verify_full(
    req: audit.StartFullVerificationRequest, ctx: CallContext
) -> audit.FullVerification:
    """Start the walk of the whole chain (a background job), or join the one running."""
    started = await start_full(ctx.tx, ctx.principal.account_id if ctx.principal else None)
    state_of(runtime_of(ctx)).verify_wake.set()
    return started


@router.handler(audit.FULL_VERIFICATION)
async def full_verification(
    req: audit.FullVerificationRequest, ctx: CallContext
) -> audit.FullVerification:
    latest = await latest_walk(runtime_of(ctx))
    if latest is None:
        raise NotFound("no full verification was started yet: POST /api/v1/audit/verify/full")
    return latest
