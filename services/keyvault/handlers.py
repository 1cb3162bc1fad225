"""RPC handlers of the keyvault: lifecycle, encryption, MACs and blind indexes.

Who may call each method, and which need a user's signed operation, is in
`contracts.keyvault`; the runtime has checked both (and that each proof is used once, by
the keyvault's ledger) before a handler runs. What is left here: each table is served
only to the service that owns it, and what a signed operation allows (`grants`).
"""

from __future__ import annotations

from contracts import fhirexport as fx
from contracts import keyvault as kv
from contracts.audit import AuditAction, AuditOutcome, AuditType
from contracts.base import Role
from contracts.records import CLINICAL_TABLES, MAY_READ, MayReadRequest
from mesh import audit
from mesh.cache import TtlCache
from mesh.context import CallContext
from mesh.errors import BadRequest, Forbidden, RpcError, Unavailable, unreachable
from mesh.proofs import Operation
from mesh.rpc import RpcRouter
from mesh.runtime import Runtime
from services.keyvault import accounts, exports, grants
from services.keyvault.attendance import require_duty
from services.keyvault.gate import AccountKeys
from services.keyvault.sealedbox import SealedShareError, public_key_b64, seal_share
from services.keyvault.state import state_of, vault_of
from services.keyvault.vault import Vault

router = RpcRouter(kv.SERVICE)


def _vault(ctx: CallContext) -> Vault:
    assert ctx.runtime is not None
    return vault_of(ctx.runtime)


def _accounts(ctx: CallContext) -> AccountKeys:
    assert ctx.runtime is not None and isinstance(ctx.runtime.accounts, AccountKeys)
    return ctx.runtime.accounts


def _operation(ctx: CallContext) -> Operation:
    assert ctx.operation is not None  # the runtime verified it (on_behalf methods)
    return ctx.operation


async def audit_action(
    ctx: CallContext, type: AuditType, outcome: AuditOutcome, detail: str | None = None
) -> None:
    assert ctx.runtime is not None
    event = audit.make_event(kv.SERVICE, type, AuditAction.execute, outcome, detail=detail)
    await audit.record(ctx.runtime, event)


def require_usable_recipient(public_key: str) -> None:
    """Shares can be sealed to `public_key` (checked before any share is made), else 400."""
    try:
        seal_share(public_key, "probe")
    except SealedShareError as exc:
        raise BadRequest(f"recipient_public_key is not usable: {exc}") from None


async def status_reply(vault: Vault, message: str | None = None) -> kv.StatusReply:
    meta = vault.meta
    return kv.StatusReply(
        state=vault.state,
        threshold=meta.threshold if meta else None,
        shares=meta.shares if meta else None,
        progress=vault.progress,
        transport_public_key=_public_key(vault),
        instance=vault.instance,
        keys=await vault.key_infos() if meta else [],
        message=message,
        generation=meta.generation if meta else 0,
        min_decryption={kv.KeyPurpose(p): v for p, v in meta.min_keys.items()} if meta else {},
        min_field_version=meta.min_field_version if meta else 1,
    )


def _public_key(vault: Vault) -> str:
    return public_key_b64(vault.transport.public_key)


@router.handler(kv.STATUS)
async def status(req: kv.StatusRequest, ctx: CallContext) -> kv.StatusReply:
    vault = _vault(ctx)
    await vault.load()
    return await status_reply(vault)


@router.handler(kv.INIT)
async def init(req: kv.InitRequest, ctx: CallContext) -> kv.InitReply:
    vault = _vault(ctx)
    # Refuse a bad recipient key before any key is made, so no share is ever lost.
    require_usable_recipient(req.recipient_public_key)
    try:
        shares = await vault.initialise(req.threshold, req.shares)
    except RpcError as exc:
        await audit_action(ctx, AuditType.vault_initialise, AuditOutcome.refused, exc.message)
        raise
    sealed = [seal_share(req.recipient_public_key, share) for share in shares]
    shares.clear()
    await audit_action(
        ctx, AuditType.vault_initialise, AuditOutcome.success, f"{req.threshold} of {req.shares}"
    )
    return kv.InitReply(sealed_shares=sealed, threshold=req.threshold, shares=req.shares)


@router.handler(kv.UNSEAL)
async def unseal(req: kv.UnsealRequest, ctx: CallContext) -> kv.StatusReply:
    vault = _vault(ctx)
    was_sealed = vault.state is kv.VaultState.sealed
    try:
        await vault.submit_share(req.sealed_share)
    except RpcError as exc:
        await audit_action(ctx, AuditType.vault_unseal, AuditOutcome.refused, exc.message)
        raise
    if was_sealed and vault.state is kv.VaultState.unsealed:
        await audit_action(ctx, AuditType.vault_unseal, AuditOutcome.success, "unsealed")
        return await status_reply(vault, "unsealed")
    meta = vault.meta
    assert meta is not None
    message = (
        "already unsealed"
        if vault.state is kv.VaultState.unsealed
        else f"share accepted: {vault.progress} of {meta.threshold}"
    )
    return await status_reply(vault, message)


@router.handler(kv.SEAL)
async def seal(req: kv.SealRequest, ctx: CallContext) -> kv.StatusReply:
    vault = _vault(ctx)
    await vault.seal()
    _accounts(ctx).clear()
    await audit_action(ctx, AuditType.vault_seal, AuditOutcome.success)
    return await status_reply(vault, "sealed: every key was wiped from this replica's memory")


@router.handler(kv.ROTATE)
async def rotate(req: kv.RotateRequest, ctx: CallContext) -> kv.RotateReply:
    vault = _vault(ctx)
    added, retired = await vault.rotate(req.add, req.retire_existing, req.purpose.value)
    assert ctx.runtime is not None
    # Every replica encrypts under the new keys at once (not at its next sync).
    await ctx.runtime.rpc.gather(kv.SYNC, kv.SyncRequest(), window_s=0.5)
    await audit_action(
        ctx,
        AuditType.vault_rotate,
        AuditOutcome.success,
        f"{req.purpose.value}: added {added}, retired {retired}",
    )
    return kv.RotateReply(added=added, retired=retired)


@router.handler(kv.ENCRYPT)
async def encrypt(req: kv.EncryptRequest, ctx: CallContext) -> kv.EncryptReply:
    grants.owned(ctx.caller, sorted({r.table for r in req.rows}))
    return kv.EncryptReply(rows=await _vault(ctx).encrypt(req.rows))


@router.handler(kv.DECRYPT)
async def decrypt(req: kv.DecryptRequest, ctx: CallContext) -> kv.DecryptReply:
    vault = _vault(ctx)
    vault.require_unsealed()
    operation = _operation(ctx)
    kickoff: Operation | None = None
    try:
        plan = grants.plan_decrypt(operation, ctx.caller, req.rows)
        grants.owned(ctx.caller, sorted({r.table for r in req.mac_rows}))
        if plan.grant.countersigned:
            kickoff = await exports.kickoff_of(ctx, operation, req.countersigned)
            assert ctx.runtime is not None and ctx.runtime.db is not None
            await exports.open_session(ctx.runtime.db, operation, kickoff)
    except Forbidden as exc:
        await audit_action(ctx, AuditType.vault_grant_refused, AuditOutcome.refused, exc.message)
        raise
    await require_duty(ctx, operation)
    group = exports.group_of(kickoff) if kickoff is not None else None
    if group is not None:  # a Group export: that physician's patients in care only
        for member in sorted(plan.patients):
            await require_care(ctx, group, member)
    principal = operation.principal
    if (
        principal is not None
        and principal.role is Role.physician
        and any(r.table in CLINICAL_TABLES for r in req.rows)
    ):
        patients: list[str | None] = [*sorted(plan.patients)] or [None]
        for patient_id in patients:
            await require_care(ctx, principal.account_id, patient_id)
    valid = await vault.verify_macs(req.mac_rows, req.mac_tags) if req.mac_rows else []
    rows, failed = await vault.decrypt(req.rows)
    return kv.DecryptReply(rows=plan.finish(rows, failed), failed=failed, mac_valid=valid)


@router.handler(fx.EXPORT_DECRYPT)
async def export_decrypt(req: fx.ExportDecryptRequest, ctx: CallContext) -> kv.DecryptReply:
    """A page of an export two administrators approved (`exports.page_of`), of the
    caller's own tables; for a Group export, patients in that physician's care only."""
    vault = _vault(ctx)
    vault.require_unsealed()
    assert ctx.runtime is not None and ctx.runtime.db is not None
    try:
        grants.owned(ctx.caller, sorted({r.table for r in req.rows}))
        grants.owned(ctx.caller, sorted({r.table for r in req.mac_rows}))
        session, patients = await exports.page_of(ctx.runtime.db, req)
    except Forbidden as exc:
        await audit_action(ctx, AuditType.vault_grant_refused, AuditOutcome.refused, exc.message)
        raise
    if session.group_id is not None:
        for member in sorted(patients):
            await require_care(ctx, session.group_id, member)
    valid = await vault.verify_macs(req.mac_rows, req.mac_tags) if req.mac_rows else []
    rows, failed = await vault.decrypt(req.rows)
    return kv.DecryptReply(rows=rows, failed=failed, mac_valid=valid)


async def require_care(ctx: CallContext, physician_id: str, patient_id: str | None) -> None:
    """Clinical rows are decrypted for a physician only with a care relationship to the
    patient they are bound to (as the signed request names it), decided by records'
    access rule (asked on its own queue)."""
    assert ctx.runtime is not None
    allowed = False
    if patient_id is not None:
        allowed = await _care(ctx.runtime).allowed(ctx.runtime, physician_id, patient_id)
    if allowed:
        return
    await audit_action(
        ctx,
        AuditType.vault_care_refused,
        AuditOutcome.refused,
        f"patient {patient_id or 'unnamed'}",
    )
    raise Forbidden(
        "the keyvault decrypts clinical data only for a physician with a care relationship "
        "to the patient named in the request"
    )


class CareCache:
    """Recent positive answers of records' access rule (a refusal is always asked again)."""

    def __init__(self, ttl_s: float = 5.0) -> None:
        self._allowed: TtlCache[tuple[str, str], bool] = TtlCache(ttl_s)

    async def allowed(self, runtime: Runtime, physician_id: str, patient_id: str) -> bool:
        key = (physician_id, patient_id)
        if self._allowed.get(key):
            return True
        try:
            reply = await runtime.rpc.call(
                MAY_READ, MayReadRequest(physician_id=physician_id, patient_id=patient_id)
            )
        except RpcError as exc:  # closed either way; a 503 when the rule cannot be asked
            if unreachable(exc):
                raise Unavailable(
                    "the care relationship cannot be checked just now, so nothing clinical "
                    "is decrypted; try again in a moment"
                ) from None
            return False
        if reply.allowed:
            self._allowed.put(key, True)
        return reply.allowed


def _care(runtime: Runtime) -> CareCache:
    state = state_of(runtime)
    if state.care is None:
        state.care = CareCache(runtime.settings.care_cache_s)
    return state.care


@router.handler(kv.MAC)
async def mac(req: kv.MacRequest, ctx: CallContext) -> kv.MacReply:
    tables = sorted({r.table for r in req.rows})
    grants.owned(ctx.caller, tables)
    if kv.ACCOUNT_TABLES & set(tables):
        raise Forbidden("staff and token rows are MAC'd only for a signed operation")
    return kv.MacReply(tags=await _vault(ctx).mac(req.rows))


@router.handler(kv.VERIFY_MAC)
async def verify_mac(req: kv.VerifyMacRequest, ctx: CallContext) -> kv.VerifyMacReply:
    grants.owned(ctx.caller, sorted({r.table for r in req.rows}))
    return kv.VerifyMacReply(valid=await _vault(ctx).verify_macs(req.rows, req.tags))


@router.handler(kv.BLIND_INDEX)
async def blind_index(req: kv.BlindIndexRequest, ctx: CallContext) -> kv.BlindIndexReply:
    vault = _vault(ctx)
    vault.require_unsealed()
    try:
        grants.check_blind_index(_operation(ctx), req.queries)
    except Forbidden as exc:
        await audit_action(ctx, AuditType.vault_grant_refused, AuditOutcome.refused, exc.message)
        raise
    await require_duty(ctx, _operation(ctx))
    return kv.BlindIndexReply(tokens=vault.blind_indexes(req.queries))


@router.handler(kv.MAC_TOKEN)
async def mac_token(req: kv.MacTokenRequest, ctx: CallContext) -> kv.MacReply:
    return await accounts.mac_token(_vault(ctx), _operation(ctx), req)


@router.handler(kv.MAC_BOOTSTRAP_TOKEN)
async def mac_bootstrap_token(req: kv.MacTokenRequest, ctx: CallContext) -> kv.MacReply:
    return await accounts.mac_bootstrap_token(_vault(ctx), req)


@router.handler(kv.MAC_ACCOUNT)
async def mac_account(req: kv.MacAccountRequest, ctx: CallContext) -> kv.MacAccountReply:
    return await accounts.mac_account(_vault(ctx), _operation(ctx), req)


# The key lifecycle's handlers (rewrap, destroy, rekey, root rotation) join this router.
from services.keyvault import lifecycle as _lifecycle  # noqa: E402

__all__ = ["_lifecycle", "router", "status_reply"]
