"""RPC handlers of the keyvault: lifecycle, encryption, MACs and blind indexes."""

from __future__ import annotations

import time

from contracts import keyvault as kv
from contracts.audit import AuditAction, AuditOutcome
from contracts.base import Role
from contracts.records import CLINICAL_TABLES, MAY_READ, MayReadRequest
from mesh import audit
from mesh.context import CallContext
from mesh.errors import BadRequest, Forbidden, RpcError
from mesh.rpc import RpcRouter
from mesh.runtime import Runtime
from services.keyvault.gate import AccountKeys, require_user_signature
from services.keyvault.sealedbox import SealedShareError, public_key_b64, seal_share
from services.keyvault.vault import Vault

router = RpcRouter(kv.SERVICE)


def _vault(ctx: CallContext) -> Vault:
    assert ctx.runtime is not None
    vault: Vault = ctx.runtime.state["vault"]
    return vault


def _accounts(ctx: CallContext) -> AccountKeys:
    assert ctx.runtime is not None
    accounts: AccountKeys = ctx.runtime.state["accounts"]
    return accounts


async def _audit(
    ctx: CallContext, type: str, outcome: AuditOutcome, detail: str | None = None
) -> None:
    assert ctx.runtime is not None
    event = audit.make_event(kv.SERVICE, type, AuditAction.execute, outcome, detail=detail)
    await audit.record(ctx.runtime, event)


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
    try:
        seal_share(req.recipient_public_key, "probe")
    except SealedShareError as exc:
        raise BadRequest(f"recipient_public_key is not usable: {exc}") from None
    try:
        shares = await vault.initialise(req.threshold, req.shares)
    except RpcError as exc:
        await _audit(ctx, "vault.initialise", AuditOutcome.refused, exc.message)
        raise
    sealed = [seal_share(req.recipient_public_key, share) for share in shares]
    shares.clear()
    await _audit(ctx, "vault.initialise", AuditOutcome.success, f"{req.threshold} of {req.shares}")
    return kv.InitReply(sealed_shares=sealed, threshold=req.threshold, shares=req.shares)


@router.handler(kv.UNSEAL)
async def unseal(req: kv.UnsealRequest, ctx: CallContext) -> kv.StatusReply:
    vault = _vault(ctx)
    was_sealed = vault.state is kv.VaultState.sealed
    try:
        await vault.submit_share(req.sealed_share)
    except RpcError as exc:
        await _audit(ctx, "vault.unseal", AuditOutcome.refused, exc.message)
        raise
    if was_sealed and vault.state is kv.VaultState.unsealed:
        await _audit(ctx, "vault.unseal", AuditOutcome.success, "unsealed")
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
    await _audit(ctx, "vault.seal", AuditOutcome.success)
    return await status_reply(vault, "sealed: every key was wiped from this replica's memory")


@router.handler(kv.ROTATE)
async def rotate(req: kv.RotateRequest, ctx: CallContext) -> kv.RotateReply:
    added, retired = await _vault(ctx).rotate(req.add, req.retire_existing)
    await _audit(ctx, "vault.rotate", AuditOutcome.success, f"added {added}, retired {retired}")
    return kv.RotateReply(added=added, retired=retired)


@router.handler(kv.ENCRYPT)
async def encrypt(req: kv.EncryptRequest, ctx: CallContext) -> kv.EncryptReply:
    return kv.EncryptReply(rows=await _vault(ctx).encrypt(req.rows))


@router.handler(kv.DECRYPT)
async def decrypt(req: kv.DecryptRequest, ctx: CallContext) -> kv.DecryptReply:
    vault = _vault(ctx)
    vault.require_unsealed()
    principal = await require_user_signature(ctx, vault, _accounts(ctx), patient_id=req.patient_id)
    if principal.role is Role.physician and any(r.table in CLINICAL_TABLES for r in req.rows):
        await require_care(ctx, principal.account_id, req.patient_id)
    valid = await vault.verify_macs(req.mac_rows, req.mac_tags) if req.mac_rows else []
    return kv.DecryptReply(rows=await vault.decrypt(req.rows), mac_valid=valid)


async def require_care(ctx: CallContext, physician_id: str, patient_id: str | None) -> None:
    """Clinical rows are decrypted for a physician only with a care relationship to the
    patient they belong to, decided by records' access rule (asked on its own queue)."""
    assert ctx.runtime is not None
    allowed = False
    if patient_id is not None:
        cache: CareCache = ctx.runtime.state.setdefault("care", CareCache())
        allowed = await cache.allowed(ctx.runtime, physician_id, patient_id)
    if allowed:
        return
    await _audit(
        ctx, "vault.care_refused", AuditOutcome.refused, f"patient {patient_id or 'unnamed'}"
    )
    raise Forbidden(
        "the keyvault decrypts clinical data only for a physician with a care relationship "
        "to the patient named in the request"
    )


class CareCache:
    """Recent positive answers of records' access rule (a refusal is always asked again)."""

    def __init__(self, ttl_s: float = 5.0) -> None:
        self.ttl_s = ttl_s
        self._until: dict[tuple[str, str], float] = {}

    async def allowed(self, runtime: Runtime, physician_id: str, patient_id: str) -> bool:
        key = (physician_id, patient_id)
        if self._until.get(key, 0.0) > time.monotonic():
            return True
        try:
            reply = await runtime.rpc.call(
                MAY_READ, MayReadRequest(physician_id=physician_id, patient_id=patient_id)
            )
        except RpcError:
            return False  # the rule cannot be asked: closed
        if reply.allowed:
            self._until[key] = time.monotonic() + self.ttl_s
        return reply.allowed


@router.handler(kv.MAC)
async def mac(req: kv.MacRequest, ctx: CallContext) -> kv.MacReply:
    return kv.MacReply(tags=await _vault(ctx).mac(req.rows))


@router.handler(kv.VERIFY_MAC)
async def verify_mac(req: kv.VerifyMacRequest, ctx: CallContext) -> kv.VerifyMacReply:
    return kv.VerifyMacReply(valid=await _vault(ctx).verify_macs(req.rows, req.tags))


@router.handler(kv.BLIND_INDEX)
async def blind_index(req: kv.BlindIndexRequest, ctx: CallContext) -> kv.BlindIndexReply:
    vault = _vault(ctx)
    vault.require_unsealed()
    await require_user_signature(ctx, vault, _accounts(ctx))
    return kv.BlindIndexReply(tokens=vault.blind_indexes(req.queries))
