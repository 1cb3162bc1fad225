"""E-prescriptions: cancelling, completing and reading them (writing one: `prescribing`).

A prescription is signed by the prescriber's client (Ed25519 over
`canonical_prescription`, checked against the key of the account that signed the
request), stored with that public key, and the whole row gets a keyvault MAC.
Reading one (a single one, a list, the summary): the MAC is checked in the same keyvault
call as the decryption, and the prescriber's signature over what decrypted; a row that
fails either is never served as sound. `verify` says which check failed: the MAC catches
any edit in the database, the signature catches even an edit re-MAC'd by someone who
took over this service (it cannot sign as the physician).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from contracts import keyvault as kv
from contracts import records as rec
from contracts.audit import AuditAction, AuditType
from mesh import auditing, ed25519, keyvault
from mesh.auditing import audited
from mesh.cache import TtlCache
from mesh.context import CallContext, runtime_of
from mesh.errors import Conflict, IntegrityError, NotFound, RpcError
from mesh.keyvault import Batch, Decrypted
from mesh.parallel import both
from services.records import access, codec, integrity, known, store
from services.records.access import principal_of
from services.records.store import PrescriptionRow

ENTITY = "prescription"
ACTIVE = rec.PrescriptionStatus.active.value


def _now() -> datetime:
    return datetime.now(UTC)


VERIFIED: TtlCache[bytes, bool] = TtlCache(ttl_s=3600.0, limit=100_000)
"""Stored prescriptions whose signature verified over what decrypted, by the SHA-256 of
the stored columns the check depends on (ids, time, medication ciphertext, signature,
key): the same stored row decrypts to the same bytes, so a chart read again need not
verify them again, while any change to any of those columns is verified afresh."""


def signature_valid(public_key_b64: str, core: rec.PrescriptionCore, signature_b64: str) -> bool:
    """Ed25519 over the canonical prescription; False for anything malformed."""
    try:
        key = base64.b64decode(public_key_b64, validate=True)
        signature = base64.b64decode(signature_b64, validate=True)
    except (ValueError, binascii.Error):
        return False
    return ed25519.verify(key, signature, rec.canonical_prescription(core))


def stored_signature_valid(row: PrescriptionRow, prescription: rec.Prescription) -> bool:
    """`signature_valid` for a stored row and what its medication decrypted to."""
    fingerprint = hashlib.sha256(
        "\0".join(
            (
                row.prescription_id,
                row.patient_id,
                row.prescriber_id,
                row.encounter_id,
                row.created_at.isoformat(),
                row.medication_enc,
                row.signature,
                row.signer_public_key,
                row.safety_enc or "",
            )
        ).encode()
    ).digest()
    if VERIFIED.get(fingerprint):
        return True
    valid = signature_valid(row.signer_public_key, prescription.core(), row.signature)
    if valid:
        VERIFIED.put(fingerprint, True)
    return valid


async def _refuse_tampered(ctx: CallContext, row: PrescriptionRow) -> RpcError:
    await integrity.record_failures(runtime_of(ctx), [row])
    return IntegrityError(
        "this prescription's row fails its integrity check (edited outside Medihaven)",
        details={"prescription_id": row.prescription_id},
    )


async def _change_status(
    ctx: CallContext,
    subject: auditing.Subject,
    prescription_id: str,
    status: rec.PrescriptionStatus,
    reason: str | None = None,
) -> rec.PrescriptionWritten:
    """Active -> cancelled or completed, on an intact row, re-MAC'd."""
    runtime, me = runtime_of(ctx), principal_of(ctx)
    row = await store.get_prescription(ctx.tx, prescription_id, lock=True)
    if row is None:
        raise NotFound("unknown prescription", details={"prescription_id": prescription_id})
    subject.patient_id = row.patient_id
    await access.check_patient_access(ctx, row.patient_id)
    batch = Batch()
    if reason is not None:
        fields: dict[str, str | None] = {"cancellation_reason": reason}
        batch.add(codec.PRESCRIPTIONS, prescription_id, fields, patient=row.patient_id)
    (intact,), cipher = await both(
        keyvault.verify_macs(runtime, [integrity.prescription_mac_row(row)], [row.mac]),
        keyvault.encrypt(runtime, batch),
    )
    if not intact:
        raise await _refuse_tampered(ctx, row)
    if row.status != ACTIVE:
        raise Conflict(
            f"the prescription is {row.status}: only an active one can be {status.value}",
            details={"prescription_id": prescription_id, "status": row.status},
        )
    changed = replace(
        row,
        status=status.value,
        status_changed_at=_now(),
        status_changed_by=me.account_id,
        cancellation_reason_enc=cipher[0]["cancellation_reason"] if cipher else None,
    )
    (tag,) = await keyvault.mac(runtime, [integrity.prescription_mac_row(changed)])
    await store.update_status(ctx.tx, replace(changed, mac=tag))
    await auditing.written(ctx, subject, status.value)
    return rec.PrescriptionWritten(
        prescription_id=prescription_id, patient_id=row.patient_id, status=status
    )


async def _audited_change(
    ctx: CallContext,
    audit_type: AuditType,
    prescription_id: str,
    status: rec.PrescriptionStatus,
    reason: str | None = None,
) -> rec.PrescriptionWritten:
    """`_change_status` in its audited block."""
    async with audited(
        ctx, audit_type, AuditAction.update, ENTITY, entity_id=prescription_id
    ) as subject:
        return await _change_status(ctx, subject, prescription_id, status, reason)


async def cancel_prescription(
    req: rec.CancelPrescriptionRequest, ctx: CallContext
) -> rec.PrescriptionWritten:
    return await _audited_change(
        ctx,
        AuditType.prescription_cancel,
        req.prescription_id,
        rec.PrescriptionStatus.cancelled,
        req.reason,
    )


async def complete_prescription(
    req: rec.CompletePrescriptionRequest, ctx: CallContext
) -> rec.PrescriptionWritten:
    return await _audited_change(
        ctx, AuditType.prescription_complete, req.prescription_id, rec.PrescriptionStatus.completed
    )


@dataclass
class Checked:
    """Prescriptions that passed their MAC, and the ids of those that did not."""

    prescriptions: list[rec.Prescription]
    failures: list[str]


async def decrypt_with_prescriptions(
    ctx: CallContext,
    batch: Batch,
    every: Sequence[PrescriptionRow],
    wanted: Sequence[PrescriptionRow],
    *,
    countersigned: kv.Countersigned | None = None,
    export_page: tuple[str, str] | None = None,
) -> tuple[Decrypted, Checked]:
    """One DECRYPT batch for `batch` plus the `wanted` prescriptions, with the MACs of
    `every` prescription checked in the same keyvault call (a status edited in the
    database must not hide a row from the check). Returns the decryption of `batch`'s own
    rows (and MACs) and the checked prescriptions: each shown one passed its MAC, decrypted, and
    carries its prescriber's valid signature over what decrypted."""
    runtime = runtime_of(ctx)
    own, own_macs = len(batch.rows), len(batch.mac_rows)
    combined = batch.copy()
    for row in wanted:
        combined.add(
            codec.PRESCRIPTIONS,
            row.prescription_id,
            codec.prescription_stored_fields(row),
            patient=row.patient_id,
        )
    for row in every:
        combined.check(integrity.prescription_mac_row(row), row.mac)
    plain = await keyvault.decrypt(
        runtime, combined, countersigned=countersigned, export_page=export_page
    )
    valid = plain.mac_valid[own_macs:]
    failed = [r for r, ok in zip(every, valid, strict=True) if not ok]
    spoiled = {r.prescription_id for r in failed}
    prescriptions: list[rec.Prescription] = []
    for offset, row in enumerate(wanted, start=own):
        if row.prescription_id in spoiled:
            continue
        if offset in plain.failed:
            failed.append(row)
            continue
        prescription = codec.prescription(row, plain.rows[offset])
        if not stored_signature_valid(row, prescription):
            failed.append(row)
            continue
        prescriptions.append(prescription)
    if failed:
        await integrity.record_failures(runtime, failed)
    own_rows = Decrypted(
        plain.rows[:own],
        frozenset(i for i in plain.failed if i < own),
        plain.mac_valid[:own_macs],
    )
    return own_rows, Checked(prescriptions, [r.prescription_id for r in failed])


async def get_prescription(req: rec.GetPrescriptionRequest, ctx: CallContext) -> rec.Prescription:
    database = runtime_of(ctx).db
    async with audited(
        ctx, AuditType.prescription_read, AuditAction.read, ENTITY, entity_id=req.prescription_id
    ) as subject:
        row = await store.get_prescription(database, req.prescription_id)
        if row is None:
            raise NotFound("unknown prescription", details={"prescription_id": req.prescription_id})
        subject.patient_id = row.patient_id
        await access.check_patient_access(ctx, row.patient_id)
        _, checked = await decrypt_with_prescriptions(ctx, Batch(), [row], [row])
        if checked.failures:
            raise IntegrityError(
                "this prescription's row fails its integrity check (edited outside Medihaven)",
                details={"prescription_id": row.prescription_id},
            )
        await auditing.read(ctx, subject, [row.patient_id])
    return checked.prescriptions[0]


async def list_prescriptions(
    req: rec.ListPrescriptionsRequest, ctx: CallContext
) -> rec.PrescriptionList:
    database = runtime_of(ctx).db
    async with access.audited_patient(
        ctx, AuditType.prescription_list, AuditAction.read, ENTITY, req.patient_id
    ) as subject:
        every = await store.prescriptions_of(database, req.patient_id)
        if not every and not await store.patient_exists(database, req.patient_id):
            raise known.unknown_patient(req.patient_id)
        wanted = [r for r in every if req.status is None or r.status == req.status.value]
        _, checked = await decrypt_with_prescriptions(ctx, Batch(), every, wanted)
        await auditing.read(ctx, subject, [req.patient_id])
    return rec.PrescriptionList(
        prescriptions=checked.prescriptions, integrity_failures=checked.failures
    )


async def verify_prescription(
    req: rec.VerifyPrescriptionRequest, ctx: CallContext
) -> rec.PrescriptionVerification:
    runtime = runtime_of(ctx)
    async with audited(
        ctx, AuditType.prescription_verify, AuditAction.read, ENTITY, entity_id=req.prescription_id
    ) as subject:
        row = await store.get_prescription(runtime.db, req.prescription_id)
        if row is None:
            raise NotFound("unknown prescription", details={"prescription_id": req.prescription_id})
        subject.patient_id = row.patient_id
        await access.check_patient_access(ctx, row.patient_id)
        batch = Batch()
        fields = codec.prescription_stored_fields(row)
        batch.add(codec.PRESCRIPTIONS, row.prescription_id, fields, patient=row.patient_id)
        batch.check(integrity.prescription_mac_row(row), row.mac)

        async def prescriber_key() -> str | None:
            try:
                record = await runtime.accounts.get(row.prescriber_id) if runtime.accounts else None
            except RpcError:
                return None
            return None if record is None else record.account.public_key

        decrypted, current_key = await both(
            keyvault.decrypt(runtime, batch),
            prescriber_key(),
        )
        mac_ok = decrypted.mac_valid[0]
        plain = None if decrypted.failed else decrypted.rows[0]
        problems: list[str] = []
        if not mac_ok:
            problems.append("the row's MAC does not verify: the row was edited outside Medihaven")
            await integrity.record_failures(runtime, [row])
        prescription = None if plain is None else codec.prescription(row, plain)
        if prescription is None:
            problems.append("the medication ciphertext does not decrypt (edited or moved)")
            sig_ok = False
        else:
            sig_ok = signature_valid(row.signer_public_key, prescription.core(), row.signature)
            if not sig_ok:
                problems.append(
                    "the prescriber's signature does not verify over the prescription as stored"
                )
        verdict = "valid" if mac_ok and sig_ok else "INVALID: " + "; ".join(problems)
        await auditing.read(ctx, subject, [row.patient_id], detail=verdict[:200])
    return rec.PrescriptionVerification(
        prescription_id=row.prescription_id,
        valid=mac_ok and sig_ok,
        mac_valid=mac_ok,
        signature_valid=sig_ok,
        signer_key_current=None if current_key is None else current_key == row.signer_public_key,
        problems=problems,
        prescription=prescription,
    )
