"""RPC handlers of the key lifecycle: rewrap runs, minimum decryption versions, destroying
keys, rekeying the shares and rotating the root key (issue 18).

Who may call each method is in `contracts.keyvault`: every administrator step is a
routed operation (the runtime has verified the administrator's own signature for that
route, once, before a handler runs); the rewrap itself, its job and its reports are
served only to the services that own keyvault tables, and each table only to its owner.
Every step is audited, refusals too.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from prometheus_client import Counter

from contracts import keyvault as kv
from contracts.audit import AuditOutcome, AuditType
from contracts.rewrap import KEY_USAGE
from mesh.context import CallContext
from mesh.errors import BadRequest, Conflict, RpcError, Sealed
from mesh.logging import get_logger
from services.keyvault import grants, store
from services.keyvault.handlers import (
    audit_action,
    require_usable_recipient,
    router,
    status_reply,
)
from services.keyvault.state import vault_of
from services.keyvault.vault import Vault

log = get_logger("keyvault.lifecycle")

REWRAPPED_FIELDS = Counter(
    "medihaven_keyvault_rewrap_fields_total",
    "Fields the keyvault re-encrypted under an active key, by table.",
    ["table"],
)
REWRAPPED_ROWS = Counter(
    "medihaven_keyvault_rewrap_rows_total",
    "Rows a rewrap call was asked for, by table and outcome (rewrapped, current, refused).",
    ["table", "outcome"],
)
SCAN_TIMEOUT_S = 120.0
SYNC_WINDOW_S = 0.5


def _vault(ctx: CallContext) -> Vault:
    assert ctx.runtime is not None
    return vault_of(ctx.runtime)


def _who(ctx: CallContext) -> str:
    return ctx.principal.account_id if ctx.principal else "?"


async def _sync_replicas(ctx: CallContext) -> list[kv.SyncReply]:
    """Every replica reads the keys and the policy now (instead of at its next sync)."""
    assert ctx.runtime is not None
    try:
        replies = await ctx.runtime.rpc.gather(kv.SYNC, kv.SyncRequest(), window_s=SYNC_WINDOW_S)
    except RpcError as exc:
        log.warning("keyvault.sync_failed", error=exc.message)
        return []
    return [r for r in replies if isinstance(r, kv.SyncReply)]


@router.handler(kv.SYNC)
async def sync(req: kv.SyncRequest, ctx: CallContext) -> kv.SyncReply:
    vault = _vault(ctx)
    await vault.sync_keys()
    return kv.SyncReply(
        instance=vault.instance,
        generation=vault.generation,
        unsealed=vault.state is kv.VaultState.unsealed,
        transport_public_key=vault.transport_public_key(),
    )


# ---------------------------------------------------------------------------- rewrap runs


def _report(text: str) -> kv.TableProgress:
    return kv.TableProgress.model_validate_json(text)


async def rewrap_status(vault: Vault, run: store.RewrapRun | None) -> kv.RewrapStatus:
    if run is None:
        return kv.RewrapStatus()
    reports = await store.reports(vault.db, run.run_id)
    done = await store.services_done(vault.db, run.run_id)
    tables = [
        kv.TableStatus(service=service, updated_at=at, **_report(text).model_dump())
        for service, _, text, at in reports
    ]
    failures: list[kv.RewrapFailure] = []
    for service, text in sorted(done.items()):
        for item in json.loads(text):
            failures.append(kv.RewrapFailure(service=service, **item))
    active = set(vault.active_data_keys) | {
        k for k in (vault.active_key("integrity"), vault.active_key("blind_index")) if k
    }
    retired: dict[int, int] = {}
    for table in tables:
        for key_id, count in table.usage.items():
            if key_id not in active and count:
                retired[key_id] = retired.get(key_id, 0) + count
    total = sum(t.rows_total for t in tables)
    scanned = sum(min(t.rows_scanned, t.rows_total) if not t.done else t.rows_total for t in tables)
    rates = [t.rows_scanned / t.seconds for t in tables if t.seconds > 0 and not t.done]
    rate = sum(rates)
    eta = None
    if run.state == "running" and rate > 0:
        eta = max(total - scanned, 0) / rate
    return kv.RewrapStatus(
        run_id=run.run_id,
        state=kv.RewrapState(run.state),
        reindex=run.reindex,
        started_by=run.started_by,
        started_at=run.started_at,
        finished_at=run.finished_at,
        batch_rows=run.batch_rows,
        rows_per_second=run.rows_per_second,
        lease_seconds=run.lease_seconds,
        tables=tables,
        services_done=sorted(done),
        services_pending=sorted(kv.REWRAP_SERVICES - set(done)),
        rows_total=total,
        rows_done=scanned,
        rate_rows_per_s=rate,
        eta_seconds=eta,
        failures=failures[:200],
        retired_in_use=retired,
    )


async def _needs_reindex(vault: Vault) -> bool:
    """The blind-index key changed since the last complete reindex (tokens do not say
    which key made them, so a retired blind-index key means: recompute them all)."""
    keys = await store.load_keys(vault.db)
    if not any(k.purpose == "blind_index" and k.state == "retired" for k in keys):
        return False
    last = await _last_complete(vault, reindex=True)
    return last is None or last.blind_index_key != vault.active_key("blind_index")


async def _last_complete(vault: Vault, *, reindex: bool = False) -> store.RewrapRun | None:
    return await store.last_complete_run(vault.db, reindex=reindex)


@router.handler(kv.REWRAP_START)
async def rewrap_start(req: kv.RewrapStartRequest, ctx: CallContext) -> kv.RewrapStatus:
    vault = _vault(ctx)
    vault.require_unsealed()
    await _sync_replicas(ctx)  # new encryptions use the active keys everywhere from now
    reindex = req.reindex or await _needs_reindex(vault)
    run_id = await store.start_run(
        vault.db,
        reindex,
        req.batch_rows,
        req.rows_per_second,
        req.lease_seconds,
        _who(ctx),
        vault.active_key("blind_index"),
    )
    if run_id is None:
        running = await store.current_run(vault.db)
        detail = f"a rewrap is running ({running.run_id if running else '?'})"
        await audit_action(ctx, AuditType.vault_rewrap_started, AuditOutcome.refused, detail)
        raise Conflict(detail + ": wait for it or cancel it")
    await audit_action(
        ctx,
        AuditType.vault_rewrap_started,
        AuditOutcome.success,
        f"run {run_id}, reindex {reindex}",
    )
    return await rewrap_status(vault, await store.current_run(vault.db))


@router.handler(kv.REWRAP_STATUS)
async def rewrap_status_handler(req: kv.RewrapStatusRequest, ctx: CallContext) -> kv.RewrapStatus:
    vault = _vault(ctx)
    run = await store.current_run(vault.db) or await store.latest_run(vault.db)
    return await rewrap_status(vault, run)


@router.handler(kv.REWRAP_CANCEL)
async def rewrap_cancel(req: kv.RewrapCancelRequest, ctx: CallContext) -> kv.RewrapStatus:
    vault = _vault(ctx)
    run = await store.current_run(vault.db)
    if run is None or not await store.finish_run(vault.db, run.run_id, "cancelled"):
        raise Conflict("no rewrap is running")
    await audit_action(
        ctx, AuditType.vault_rewrap_cancelled, AuditOutcome.success, f"run {run.run_id}"
    )
    return await rewrap_status(vault, await store.latest_run(vault.db))


def _owner(ctx: CallContext) -> str:
    if ctx.caller is None or ctx.caller not in kv.REWRAP_SERVICES:
        raise BadRequest("only a service that owns keyvault tables takes part in a rewrap")
    return ctx.caller


@router.handler(kv.REWRAP_JOB)
async def rewrap_job(req: kv.RewrapJobRequest, ctx: CallContext) -> kv.RewrapJobReply:
    vault = _vault(ctx)
    service = _owner(ctx)
    if vault.state is not kv.VaultState.unsealed:
        raise Sealed("the keyvault is sealed")
    run = await store.current_run(vault.db)
    if run is None:
        return kv.RewrapJobReply()
    done = service in await store.services_done(vault.db, run.run_id)
    return kv.RewrapJobReply(
        run_id=run.run_id,
        reindex=run.reindex,
        batch_rows=run.batch_rows,
        rows_per_second=run.rows_per_second,
        lease_seconds=run.lease_seconds,
        active_keys=vault.active_data_keys,
        integrity_key=vault.active_key("integrity"),
        destroyed_keys=vault.destroyed_keys,
        done=done,
    )


async def _running(vault: Vault) -> store.RewrapRun | None:
    """The running rewrap (read for every call: a cancelled run stops at once)."""
    return await store.current_run(vault.db)


@router.handler(kv.REWRAP)
async def rewrap(req: kv.RewrapRequest, ctx: CallContext) -> kv.RewrapReply:
    vault = _vault(ctx)
    vault.require_unsealed()
    # Only while an administrator's run is on, and each table only for its owner.
    run = await _running(vault)
    if run is None or run.run_id != req.run_id:
        raise Conflict(f"rewrap run {req.run_id} is not running")
    grants.owned(ctx.caller, sorted({r.table for r in req.rows}))
    rows: Sequence[kv.RewrapRow] = req.rows
    if not run.reindex:
        # Blind indexes are recomputed only in a run an administrator started for it.
        rows = [r.model_copy(update={"reindex": False}) if r.reindex else r for r in rows]
    results = await vault.rewrap(rows)
    for row, result in zip(rows, results, strict=True):
        outcome = "refused" if result.error else "rewrapped" if result.fields else "current"
        REWRAPPED_ROWS.labels(row.table, outcome).inc()
        if result.fields:
            REWRAPPED_FIELDS.labels(row.table).inc(len(result.fields))
    return kv.RewrapReply(
        rows=results,
        active_keys=vault.active_data_keys,
        integrity_key=vault.active_key("integrity"),
    )


@router.handler(kv.REWRAP_REPORT)
async def rewrap_report(req: kv.RewrapReportRequest, ctx: CallContext) -> kv.RewrapReportReply:
    vault = _vault(ctx)
    service = _owner(ctx)
    grants.owned(service, sorted({t.table for t in req.tables}))
    found = await store.run_state(vault.db, req.run_id)
    if found is None:
        raise Conflict(f"there is no rewrap run {req.run_id}")
    state = kv.RewrapState(found)
    if state is not kv.RewrapState.running:
        return kv.RewrapReportReply(state=state)
    await store.save_reports(
        vault.db,
        req.run_id,
        service,
        [(t.table, t.model_dump_json(), t.done) for t in req.tables],
    )
    if req.done:
        failures = [f.model_dump(exclude={"service"}) for f in req.failures]
        await store.mark_service_done(vault.db, req.run_id, service, json.dumps(failures))
        if failures:
            await audit_action(
                ctx,
                AuditType.vault_rewrap_rows_failed,
                AuditOutcome.failure,
                f"{service}: {len(failures)} rows not rewrapped (see the rewrap status)",
            )
        done = await store.services_done(vault.db, req.run_id)
        if kv.REWRAP_SERVICES <= set(done) and await store.finish_run(
            vault.db, req.run_id, "complete"
        ):
            await audit_action(
                ctx, AuditType.vault_rewrap_completed, AuditOutcome.success, f"run {req.run_id}"
            )
            state = kv.RewrapState.complete
    return kv.RewrapReportReply(state=state)


# ---------------------------------------------------------------------------- min versions


async def _proof_of_disuse(vault: Vault, keys: Sequence[store.StoredKey]) -> str | None:
    """Why the last complete rewrap does not prove that no row uses `keys` (None: it
    does): it must have started after they were retired and found none of them."""
    if not keys:
        return None
    blind = [k for k in keys if k.purpose == "blind_index"]
    others = [k for k in keys if k.purpose != "blind_index"]
    for group, reindex in ((blind, True), (others, False)):
        if not group:
            continue
        run = await _last_complete(vault, reindex=reindex)
        what = "reindexing rewrap" if reindex else "rewrap"
        if run is None or run.started_at is None:
            return f"no {what} has completed yet"
        for key in group:
            if key.retired_at is None or key.retired_at > run.started_at:
                return f"key {key.key_id} was retired after the last complete {what}"
        if not reindex:
            ids = {k.key_id for k in group}
            for _, table, text, _ in await store.reports(vault.db, run.run_id):
                usage = _report(text).usage
                used = {k: usage[k] for k in ids if usage.get(k)}
                if used:
                    return f"the last complete rewrap found {table} rows under keys {used}"
    return None


@router.handler(kv.SET_MIN_DECRYPTION)
async def set_min_decryption(
    req: kv.MinDecryptionRequest, ctx: CallContext
) -> kv.MinDecryptionReply:
    vault = _vault(ctx)
    vault.require_unsealed()
    if (req.purpose is None) != (req.min_key_id is None):
        raise BadRequest("give purpose and min_key_id together")
    if req.purpose is None and req.min_field_version is None:
        raise BadRequest("nothing to change")
    refused = [
        k
        for k in await store.load_keys(vault.db)
        if req.purpose is not None
        and req.min_key_id is not None
        and k.purpose == req.purpose.value
        and k.state != "destroyed"
        and vault.minimum(k.purpose) <= k.key_id < req.min_key_id
    ]
    active = [k.key_id for k in refused if k.state == "active"]
    if active:
        raise Conflict(
            f"keys {active} are active: the minimum decryption version cannot be above an "
            "active key (rotate first)"
        )
    if not req.force:
        why = await _proof_of_disuse(vault, refused)
        if why is None and req.min_field_version == 2 and vault.min_field_version < 2:
            why = await _old_envelopes(vault)
        if why is not None:
            await audit_action(ctx, AuditType.vault_min_decryption, AuditOutcome.refused, why)
            raise Conflict(
                f"{why}: rewrap first (or force it; the keys can be allowed again)",
                details={"reason": why},
            )
    meta, refused_ids = await vault.set_min_versions(
        req.purpose.value if req.purpose else None, req.min_key_id, req.min_field_version
    )
    await _sync_replicas(ctx)
    await audit_action(
        ctx,
        AuditType.vault_min_decryption,
        AuditOutcome.success,
        f"minimum {meta.min_keys}, envelope {meta.min_field_version}, force {req.force}",
    )
    return kv.MinDecryptionReply(
        min_decryption={kv.KeyPurpose(p): v for p, v in meta.min_keys.items()},
        min_field_version=meta.min_field_version,
        refused_keys=refused_ids,
    )


async def _old_envelopes(vault: Vault) -> str | None:
    run = await _last_complete(vault)
    if run is None:
        return "no rewrap has completed yet"
    for _, table, text, _ in await store.reports(vault.db, run.run_id):
        old = {v: n for v, n in _report(text).versions.items() if v < 2 and n}
        if old:
            return f"the last complete rewrap found {table} fields in envelope versions {old}"
    return None


# ---------------------------------------------------------------------------- destroy


async def _scan(ctx: CallContext, key_id: int) -> dict[str, int]:
    """Every owning service's fresh scan: fields and tags under `key_id`, per service."""
    assert ctx.runtime is not None
    counts: dict[str, int] = {}
    for service, method in sorted(KEY_USAGE.items()):
        try:
            reply: kv.KeyUsageReply = await ctx.runtime.rpc.call(
                method, kv.KeyUsageRequest(), timeout=SCAN_TIMEOUT_S
            )
        except RpcError as exc:
            raise Conflict(
                f"{service} could not scan its tables ({exc.message}): nothing is destroyed "
                "while any owner cannot prove it no longer uses the key"
            ) from None
        counts[service] = sum(usage.get(key_id, 0) for usage in reply.tables.values())
    return counts


@asynccontextmanager
async def _refusals(
    ctx: CallContext, type: AuditType, what: str | None = None
) -> AsyncIterator[None]:
    """An `RpcError` of the steps inside is audited as refused (`what: message`), then raised."""
    try:
        yield
    except RpcError as exc:
        detail = f"{what}: {exc.message}" if what is not None else exc.message
        await audit_action(ctx, type, AuditOutcome.refused, detail)
        raise


@router.handler(kv.DESTROY_KEY)
async def destroy_key(req: kv.DestroyKeyRequest, ctx: CallContext) -> kv.DestroyKeyReply:
    vault = _vault(ctx)
    vault.require_unsealed()
    async with _refusals(ctx, AuditType.vault_key_destroyed, f"key {req.key_id}"):
        stored = await vault.check_destroyable(req.key_id)
        why = await _proof_of_disuse(vault, [stored])
        if why is not None:
            raise Conflict(f"{why}: rewrap first", details={"reason": why})
        counts = await _scan(ctx, req.key_id)
        if any(counts.values()):
            raise Conflict(f"rows still use key {req.key_id}: {counts}", details={"in_use": counts})
        destroyed = await vault.destroy(req.key_id)
    await _sync_replicas(ctx)
    await audit_action(
        ctx, AuditType.vault_key_destroyed, AuditOutcome.success, f"key {req.key_id}"
    )
    return kv.DestroyKeyReply(
        key_id=destroyed.key_id,
        purpose=kv.KeyPurpose(destroyed.purpose),
        state=kv.KeyState(destroyed.state),
        checked=counts,
    )


# ---------------------------------------------------------------------------- ceremonies


async def ceremony_status(
    vault: Vault,
    ceremony: store.Ceremony | None,
    message: str | None = None,
    sealed: Sequence[str] = (),
) -> kv.CeremonyStatus:
    meta = await store.load_meta(vault.db)
    if ceremony is None:
        return kv.CeremonyStatus(generation=meta.generation if meta else 0, message=message)
    return kv.CeremonyStatus(
        ceremony_id=ceremony.ceremony_id,
        kind=kv.CeremonyKind(ceremony.kind),
        state=kv.CeremonyState(ceremony.state),
        threshold=ceremony.threshold,
        shares=ceremony.shares,
        required=meta.threshold if meta else None,
        progress=ceremony.progress,
        coordinator=ceremony.coordinator,
        transport_public_key=ceremony.coordinator_key,
        started_by=ceremony.started_by,
        started_at=ceremony.started_at,
        sealed_shares=list(sealed) or ceremony.sealed_shares,
        generation=meta.generation if meta else 0,
        message=message,
    )


@router.handler(kv.CEREMONY_START)
async def ceremony_start(req: kv.CeremonyStartRequest, ctx: CallContext) -> kv.CeremonyStatus:
    vault = _vault(ctx)
    require_usable_recipient(req.recipient_public_key)
    what = f"{req.kind.value} to {req.threshold} of {req.shares}"
    async with _refusals(ctx, AuditType.vault_ceremony_started, what):
        ceremony_id = await vault.start_ceremony(
            req.kind.value, req.threshold, req.shares, req.recipient_public_key, _who(ctx)
        )
    await audit_action(
        ctx, AuditType.vault_ceremony_started, AuditOutcome.success, f"{what} ({ceremony_id})"
    )
    ceremony = await store.get_ceremony(vault.db, ceremony_id)
    return await ceremony_status(vault, ceremony, "submit current shares to the coordinator")


@router.handler(kv.CEREMONY_STATUS)
async def ceremony_status_handler(
    req: kv.CeremonyStatusRequest, ctx: CallContext
) -> kv.CeremonyStatus:
    vault = _vault(ctx)
    ceremony = await store.pending_ceremony(vault.db) or await store.latest_ceremony(vault.db)
    return await ceremony_status(vault, ceremony)


def _addressed(ctx: CallContext, instance: str) -> Vault:
    """The vault of this replica, which the request must name."""
    vault = _vault(ctx)
    if instance != vault.instance:
        raise BadRequest(f"this is replica {vault.instance}, not {instance}")
    return vault


@router.handler(kv.CEREMONY_SHARE)
async def ceremony_share(req: kv.CeremonyShareRequest, ctx: CallContext) -> kv.CeremonyStatus:
    vault = _addressed(ctx, req.instance)
    async with _refusals(ctx, AuditType.vault_ceremony_share, req.ceremony_id):
        sealed = await vault.ceremony_share(req.ceremony_id, req.sealed_share)
    ceremony = await store.get_ceremony(vault.db, req.ceremony_id)
    if sealed:
        await audit_action(
            ctx, AuditType.vault_ceremony_prepared, AuditOutcome.success, req.ceremony_id
        )
        message = "prepared: open the new shares, then commit with their digest"
        return await ceremony_status(vault, ceremony, message, sealed)
    await audit_action(ctx, AuditType.vault_ceremony_share, AuditOutcome.success, req.ceremony_id)
    return await ceremony_status(vault, ceremony, "share accepted")


@router.handler(kv.CEREMONY_COMMIT)
async def ceremony_commit(req: kv.CeremonyCommitRequest, ctx: CallContext) -> kv.CeremonyStatus:
    vault = _addressed(ctx, req.instance)
    async with _refusals(ctx, AuditType.vault_ceremony_committed, req.ceremony_id):
        handover = await vault.commit_ceremony(req.ceremony_id, req.shares_digest)
    kind = "root rotated" if handover else "shares rekeyed"
    detail = f"{kind} ({req.ceremony_id})"
    await audit_action(ctx, AuditType.vault_ceremony_committed, AuditOutcome.success, detail)
    message = f"{kind}: only the new shares unseal from now on"
    if handover is not None:
        adopted = await _hand_over(ctx, vault, handover)
        message += f"; new root key handed over to {adopted or 'no other replica'}"
    await _sync_replicas(ctx)
    ceremony = await store.get_ceremony(vault.db, req.ceremony_id)
    return await ceremony_status(vault, ceremony, message)


async def _hand_over(ctx: CallContext, vault: Vault, handover: bytes) -> list[str]:
    """Each other unsealed replica gets the new root key (wrapped under the old root key it
    holds, sealed to its own key); one that does not take it seals itself in time."""
    assert ctx.runtime is not None
    adopted: list[str] = []
    for replica in await _sync_replicas(ctx):
        if replica.instance == vault.instance or not replica.unsealed:
            continue
        if replica.generation >= vault.generation:
            continue
        request = kv.AdoptRootRequest(
            generation=vault.generation,
            sealed_root=vault.sealed_handover(handover, replica.transport_public_key),
        )
        try:
            reply = await ctx.runtime.rpc.call(kv.ADOPT_ROOT, request, instance=replica.instance)
        except RpcError as exc:
            log.error("keyvault.handover_failed", replica=replica.instance, error=exc.message)
            continue
        if reply.adopted:
            adopted.append(replica.instance)
    return adopted


@router.handler(kv.CEREMONY_CANCEL)
async def ceremony_cancel(req: kv.CeremonyCancelRequest, ctx: CallContext) -> kv.CeremonyStatus:
    vault = _vault(ctx)
    if not await vault.cancel_ceremony(req.ceremony_id):
        raise Conflict(f"ceremony {req.ceremony_id} is not pending")
    await audit_action(
        ctx, AuditType.vault_ceremony_cancelled, AuditOutcome.success, req.ceremony_id
    )
    ceremony = await store.get_ceremony(vault.db, req.ceremony_id)
    return await ceremony_status(vault, ceremony, "cancelled: nothing changed")


@router.handler(kv.ADOPT_ROOT)
async def adopt_root(req: kv.AdoptRootRequest, ctx: CallContext) -> kv.AdoptRootReply:
    vault = _vault(ctx)
    async with _refusals(ctx, AuditType.vault_root_adopted):
        adopted = await vault.adopt_root(req.generation, req.sealed_root)
    if adopted:
        detail = f"generation {req.generation}"
        await audit_action(ctx, AuditType.vault_root_adopted, AuditOutcome.success, detail)
    return kv.AdoptRootReply(instance=vault.instance, adopted=adopted)


__all__ = ["ceremony_status", "rewrap_status", "status_reply"]
