"""Per-patient access (minimum necessary): a physician reads a patient's clinical data
only while a care relationship exists — an encounter they recorded, an appointment with
the patient (from `care_window_before_days` before it to `care_window_after_days` after),
or a break-glass grant they opened, for `break_glass_hours`, with a reason, audited as
emergency access (purpose of use ETREAT) and reported to administrators live.

`decide` is the one rule; records enforces it in every handler (`access.check_patient_access`)
and the keyvault asks it again (`recordsaccess.may_read`, on its own queue) before it
decrypts clinical rows for a physician.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from contracts import records as rec
from contracts import scheduling as sched
from contracts.audit import AuditAction, AuditOutcome, AuditType
from mesh import audit, db, keyvault, outbox
from mesh.context import CallContext, runtime_of
from mesh.errors import NotFound, RpcError, Unavailable, unreachable
from mesh.keyvault import Batch
from mesh.logging import get_logger
from mesh.rpc import RpcRouter, RpcServer
from mesh.runtime import Runtime
from services.records import known, store
from services.records.access import lookups, principal_of, state_of

log = get_logger("records.care")
TABLE = "break_glass"


async def decide(
    runtime: Runtime, physician_id: str, patient_id: str, *, break_glass_only: bool = False
) -> rec.MayReadReply:
    """Read from the lookup pool (`access.lookups`), inside a write too: a care
    relationship is committed state, not part of the write. `break_glass_only`: only an
    open break-glass grant counts (what opens a chart off duty)."""
    target = lookups(runtime)
    now = datetime.now(UTC)
    recorded = not break_glass_only and await store.recorded_encounter(
        target, patient_id, physician_id
    )
    if recorded:
        return rec.MayReadReply(allowed=True, basis=rec.CareBasis.encounter)
    if await store.open_break_glass(target, physician_id, patient_id, now):
        return rec.MayReadReply(allowed=True, basis=rec.CareBasis.break_glass)
    if break_glass_only:
        return rec.MayReadReply(allowed=False)
    settings = runtime.settings
    try:
        relation = await runtime.rpc.call(
            sched.CARE_RELATIONSHIP,
            sched.CareRelationshipRequest(
                physician_id=physician_id,
                patient_id=patient_id,
                before_days=settings.care_window_before_days,
                after_days=settings.care_window_after_days,
            ),
        )
    except RpcError as exc:  # closed either way; a 503 when scheduling cannot be asked
        log.warning("records.care_check_unavailable", error=exc.message)
        if unreachable(exc):
            raise Unavailable(
                "the appointment book cannot be checked just now, so access to this "
                "patient's clinical record cannot be confirmed; try again in a moment"
            ) from None
        return rec.MayReadReply(allowed=False)
    if relation.exists:
        return rec.MayReadReply(allowed=True, basis=rec.CareBasis.appointment)
    return rec.MayReadReply(allowed=False)


# ---------------------------------------------------------------- the keyvault's question

access_router = RpcRouter(rec.ACCESS_SERVICE)


@access_router.handler(rec.MAY_READ)
async def may_read(req: rec.MayReadRequest, ctx: CallContext) -> rec.MayReadReply:
    """Asked by the keyvault while records' own writes may hold every connection of
    records' pool (waiting for that very keyvault call): answered from the lookup pool."""
    return await decide(
        runtime_of(ctx), req.physician_id, req.patient_id, break_glass_only=req.break_glass_only
    )


LOOKUP_POOL_SIZE = 4


async def start_access_server(runtime: Runtime) -> None:
    """Serve `recordsaccess.may_read` on its own queue and channel (see ACCESS_SERVICE).
    What records answers other services (this, `records.patient_ref`) is read from a pool
    of its own (`lookup_db`): records' writes may hold every connection of the main pool
    while they wait for those very services, which would then wait for records."""
    assert runtime.db is not None
    settings = runtime.settings.model_copy(update={"db_pool_size": LOOKUP_POOL_SIZE})
    state = state_of(runtime)
    state.lookup_db = await db.Database.connect(settings, runtime.db.name)
    server = RpcServer(runtime, access_router, runtime.settings.rpc_prefetch)
    await server.start()
    state.access_server = server


async def stop_access_server(runtime: Runtime) -> None:
    state = state_of(runtime)
    server, state.access_server = state.access_server, None
    if server is not None:
        await server.stop(runtime.settings.shutdown_grace_s)
    pool, state.lookup_db = state.lookup_db, None
    if pool is not None:
        await pool.close()


# ---------------------------------------------------------------- break-glass


async def break_glass(req: rec.BreakGlassRequest, ctx: CallContext) -> rec.BreakGlassOpened:
    runtime, me = runtime_of(ctx), principal_of(ctx)
    await known.require_patient(ctx.tx, req.patient_id)
    grant_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    expires = now + timedelta(hours=runtime.settings.break_glass_hours)
    batch = Batch()
    batch.add(TABLE, grant_id, {"reason": req.reason}, patient=req.patient_id)
    (cipher,) = await keyvault.encrypt(runtime, batch)
    await store.insert_break_glass(
        ctx.tx, grant_id, me.account_id, req.patient_id, cipher["reason"], now, expires
    )
    await audit.record(
        runtime,
        audit.make_event(
            rec.SERVICE,
            AuditType.patient_break_glass,
            AuditAction.execute,
            AuditOutcome.success,
            patient_id=req.patient_id,
            entity_type=TABLE,
            entity_id=grant_id,
            purpose_of_use="ETREAT",
            detail=f"emergency access until {expires.isoformat()}",
        ),
        conn=ctx.tx,
    )
    await outbox.add_event(
        ctx.tx,
        rec.BREAK_GLASS_OPENED,
        rec.BreakGlassNotice(
            grant_id=grant_id,
            physician_id=me.account_id,
            patient_id=req.patient_id,
            expires_at=expires,
        ),
    )
    return rec.BreakGlassOpened(grant_id=grant_id, patient_id=req.patient_id, expires_at=expires)


async def _grants(runtime: Runtime, rows: list[store.BreakGlassRow]) -> list[rec.BreakGlassGrant]:
    if not rows:
        return []
    batch = Batch()
    for row in rows:
        batch.add(TABLE, row.grant_id, {"reason": row.reason_enc}, patient=row.patient_id)
    # Reasons are decrypted for the reviewing administrator (the report's grant: reasons
    # only, at most the page the administrator signed for).
    decrypted = await keyvault.decrypt(runtime, batch)
    plain = [p if "reason" in p else {"reason": "(does not decrypt)"} for p in decrypted.rows]
    return [
        rec.BreakGlassGrant(
            grant_id=r.grant_id,
            patient_id=r.patient_id,
            physician_id=r.physician_id,
            opened_at=r.opened_at,
            expires_at=r.expires_at,
            reason=p["reason"],
            acknowledged_by=r.acknowledged_by,
            acknowledged_at=r.acknowledged_at,
            note=r.note,
        )
        for r, p in zip(rows, plain, strict=True)
    ]


async def break_glass_report(
    req: rec.BreakGlassReportRequest, ctx: CallContext
) -> rec.BreakGlassReport:
    runtime = runtime_of(ctx)
    rows = await store.break_glass_grants(
        runtime.database, req.limit, unacknowledged_only=req.unacknowledged_only
    )
    return rec.BreakGlassReport(grants=await _grants(runtime, rows))


async def acknowledge(
    req: rec.AcknowledgeBreakGlassRequest, ctx: CallContext
) -> rec.BreakGlassGrant:
    runtime, me = runtime_of(ctx), principal_of(ctx)
    changed = await store.acknowledge_break_glass(
        ctx.tx, req.grant_id, me.account_id, datetime.now(UTC), req.note
    )
    if not changed:
        raise NotFound("no such break-glass grant")
    rows = await store.break_glass_by_id(ctx.tx, req.grant_id)
    (grant,) = await _grants(runtime, rows)
    return grant
