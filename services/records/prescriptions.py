"""E-prescriptions: signed by the prescriber's client, MAC-protected at rest.

Writing one: the prescriber's Ed25519 signature over `canonical_prescription` is checked
against the key auth holds for the acting physician (who must also have signed the
request), then stored with that public key, and the whole row gets a keyvault MAC.
Reading one: the MAC is checked (in parallel with the decryption); a row that fails is
never served as sound. `verify` re-checks both the MAC and the signature and says which
failed: the MAC catches any edit in the database, the signature catches even an edit
re-MAC'd by someone who took over this service (it cannot sign as the physician).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts import records as rec
from contracts.audit import AuditAction
from mesh import db
from mesh.context import CallContext
from mesh.errors import Conflict, IntegrityError, InvalidRequest, NotFound, RpcError
from services.records import access, auditing, catalog, codec, integrity, store, vault
from services.records.access import principal_of, runtime_of
from services.records.auditing import audited
from services.records.parallel import both, three
from services.records.store import PrescriptionRow
from services.records.vault import Batch

ENTITY = "prescription"
ACTIVE = rec.PrescriptionStatus.active.value


def _now() -> datetime:
    return datetime.now(UTC)


def _invalid(loc: str, msg: str, kind: str) -> RpcError:
    return InvalidRequest(msg, details=[{"loc": [loc], "msg": msg, "type": kind}])


def signature_valid(public_key_b64: str, core: rec.PrescriptionCore, signature_b64: str) -> bool:
    """Ed25519 over the canonical prescription; False for anything malformed."""
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64, validate=True))
        key.verify(base64.b64decode(signature_b64, validate=True), rec.canonical_prescription(core))
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def _check_fresh(ctx: CallContext, created_at: datetime) -> None:
    settings = runtime_of(ctx).settings
    now = _now()
    if created_at < now - timedelta(seconds=settings.signature_window_s):
        raise _invalid(
            "created_at", "the prescription was signed too long ago: sign it again", "stale"
        )
    if created_at > now + timedelta(seconds=settings.signature_skew_s):
        raise _invalid("created_at", "the prescription is signed in the future", "future")


async def check_catalog(ctx: CallContext, medication: rec.Medication) -> None:
    """A prescription names an active catalog entry whose details it copies, or is marked
    free text on purpose."""
    if medication.free_text:
        if medication.medicine_id:
            raise _invalid(
                "medication.medicine_id",
                "a free-text prescription names no catalog medicine",
                "free_text_with_catalog_entry",
            )
        return
    if not medication.medicine_id:
        raise _invalid(
            "medication.medicine_id",
            "choose a catalog medicine, or set free_text to prescribe outside the catalog",
            "missing",
        )
    medicine = await catalog.fetch(runtime_of(ctx).db, medication.medicine_id)
    if medicine is None:
        raise _invalid("medication.medicine_id", "no such medicine in the catalog", "unknown")
    if not medicine.active:
        raise _invalid(
            "medication.medicine_id",
            f"{medicine.details.name} is retired from the catalog: it cannot be newly prescribed",
            "retired",
        )
    details = medicine.details
    copied = {
        "drug_name": details.name,
        "strength": details.strength,
        "dosage_form": details.dosage_form,
        "route": details.route,
    }
    for field, expected in copied.items():
        if getattr(medication, field) != expected:
            raise _invalid(
                f"medication.{field}",
                f"{field} does not match the catalog entry ({expected!s}): copy its details",
                "catalog_mismatch",
            )


async def prescribe(req: rec.PrescribeRequest, ctx: CallContext) -> rec.PrescriptionWritten:
    runtime, me = runtime_of(ctx), principal_of(ctx)
    async with audited(
        ctx,
        "prescription.create",
        AuditAction.create,
        ENTITY,
        patient_id=req.patient_id,
        entity_id=req.prescription_id,
    ) as subject:
        await access.check_patient_access(ctx, req.patient_id)
        _check_fresh(ctx, req.created_at)
        await check_catalog(ctx, req.medication)
        batch = Batch()
        batch.add(
            codec.PRESCRIPTIONS,
            req.prescription_id,
            {"medication": req.medication.model_dump_json()},
        )
        record, (cipher,) = await both(access.require_signed(ctx), vault.encrypt(runtime, batch))
        public_key = record.account.public_key
        if not signature_valid(public_key, req.core(me.account_id), req.signature):
            raise _invalid(
                "signature",
                "the signature does not verify over the canonical prescription with the "
                "prescriber's registered key",
                "bad_signature",
            )
        if not await store.patient_exists(ctx.tx, req.patient_id):
            raise NotFound("unknown patient", details={"patient_id": req.patient_id})
        head = await store.get_head(ctx.tx, req.encounter_id)
        if head is None or head.patient_id != req.patient_id:
            raise _invalid("encounter_id", "no such encounter of this patient", "unknown_encounter")
        row = PrescriptionRow(
            prescription_id=req.prescription_id,
            patient_id=req.patient_id,
            prescriber_id=me.account_id,
            encounter_id=req.encounter_id,
            created_at=req.created_at,
            medication_enc=cipher["medication"],
            signature=req.signature,
            signer_public_key=public_key,
            status=ACTIVE,
            status_changed_at=None,
            status_changed_by=None,
            cancellation_reason_enc=None,
            mac="",
        )
        (tag,) = await vault.mac(runtime, [integrity.prescription_mac_row(row)])
        try:
            await store.insert_prescription(ctx.tx, replace(row, mac=tag))
        except Exception as exc:
            if db.is_duplicate_key(exc):
                raise Conflict(
                    "this prescription id is already used",
                    details={"prescription_id": req.prescription_id},
                ) from None
            raise
        await auditing.written(ctx, subject)
    return rec.PrescriptionWritten(
        prescription_id=req.prescription_id,
        patient_id=req.patient_id,
        status=rec.PrescriptionStatus.active,
    )


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
        batch.add(codec.PRESCRIPTIONS, prescription_id, {"cancellation_reason": reason})
    _, (intact,), cipher = await three(
        access.require_signed(ctx),
        vault.verify_macs(runtime, [integrity.prescription_mac_row(row)], [row.mac]),
        vault.encrypt(runtime, batch),
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
    (tag,) = await vault.mac(runtime, [integrity.prescription_mac_row(changed)])
    await store.update_status(ctx.tx, replace(changed, mac=tag))
    await auditing.written(ctx, subject, status.value)
    return rec.PrescriptionWritten(
        prescription_id=prescription_id, patient_id=row.patient_id, status=status
    )


async def cancel_prescription(
    req: rec.CancelPrescriptionRequest, ctx: CallContext
) -> rec.PrescriptionWritten:
    async with audited(
        ctx, "prescription.cancel", AuditAction.update, ENTITY, entity_id=req.prescription_id
    ) as subject:
        return await _change_status(
            ctx, subject, req.prescription_id, rec.PrescriptionStatus.cancelled, req.reason
        )


async def complete_prescription(
    req: rec.CompletePrescriptionRequest, ctx: CallContext
) -> rec.PrescriptionWritten:
    async with audited(
        ctx, "prescription.complete", AuditAction.update, ENTITY, entity_id=req.prescription_id
    ) as subject:
        return await _change_status(
            ctx, subject, req.prescription_id, rec.PrescriptionStatus.completed
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
    patient_id: str,
) -> tuple[list[dict[str, str]], Checked]:
    """One DECRYPT batch for `batch` plus the `wanted` prescriptions, with the MACs of
    `every` prescription checked in the same keyvault call (a status edited in the
    database must not hide a row from the check). Returns the plaintexts of `batch`'s own
    rows and the checked prescriptions. Only if a tampered ciphertext spoils the batch is
    it asked again without the rows whose MAC failed."""
    runtime = runtime_of(ctx)
    own = len(batch.rows)

    def full(rows: Sequence[PrescriptionRow]) -> Batch:
        combined = Batch(list(batch.rows))
        for row in rows:
            combined.add(
                codec.PRESCRIPTIONS, row.prescription_id, codec.prescription_stored_fields(row)
            )
        return combined

    mac_rows = [integrity.prescription_mac_row(r) for r in every]
    tags = [r.mac for r in every]
    try:
        plain, valid = await vault.decrypt_verified(
            runtime, full(wanted), patient_id, mac_rows, tags
        )
        failed = [r for r, ok in zip(every, valid, strict=True) if not ok]
    except IntegrityError:
        # A tampered ciphertext spoils the whole batch: find the rows whose MAC fails and
        # ask again without them (never served, see below).
        valid = await vault.verify_macs(runtime, mac_rows, tags)
        failed = [r for r, ok in zip(every, valid, strict=True) if not ok]
        if not failed:
            raise IntegrityError(
                "a ciphertext of this record does not decrypt (edited or moved)"
            ) from None
        spoiled = {r.prescription_id for r in failed}
        wanted = [r for r in wanted if r.prescription_id not in spoiled]
        plain = await vault.decrypt(runtime, full(wanted), patient_id)
    failed_ids = {r.prescription_id for r in failed}
    if failed:
        await integrity.record_failures(runtime, failed)
    prescriptions = [
        codec.prescription(r, p)
        for r, p in zip(wanted, plain[own:], strict=True)
        if r.prescription_id not in failed_ids
    ]
    return plain[:own], Checked(prescriptions, [r.prescription_id for r in failed])


async def get_prescription(req: rec.GetPrescriptionRequest, ctx: CallContext) -> rec.Prescription:
    database = runtime_of(ctx).db
    async with audited(
        ctx, "prescription.read", AuditAction.read, ENTITY, entity_id=req.prescription_id
    ) as subject:
        row = await store.get_prescription(database, req.prescription_id)
        if row is None:
            raise NotFound("unknown prescription", details={"prescription_id": req.prescription_id})
        subject.patient_id = row.patient_id
        await access.check_patient_access(ctx, row.patient_id)
        _, checked = await decrypt_with_prescriptions(ctx, Batch(), [row], [row], row.patient_id)
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
    async with audited(
        ctx, "prescription.list", AuditAction.read, ENTITY, patient_id=req.patient_id
    ) as subject:
        await access.check_patient_access(ctx, req.patient_id)
        every = await store.prescriptions_of(database, req.patient_id)
        if not every and not await store.patient_exists(database, req.patient_id):
            raise NotFound("unknown patient", details={"patient_id": req.patient_id})
        wanted = [r for r in every if req.status is None or r.status == req.status.value]
        _, checked = await decrypt_with_prescriptions(ctx, Batch(), every, wanted, req.patient_id)
        await auditing.read(ctx, subject, [req.patient_id])
    return rec.PrescriptionList(
        prescriptions=checked.prescriptions, integrity_failures=checked.failures
    )


async def verify_prescription(
    req: rec.VerifyPrescriptionRequest, ctx: CallContext
) -> rec.PrescriptionVerification:
    runtime = runtime_of(ctx)
    async with audited(
        ctx, "prescription.verify", AuditAction.read, ENTITY, entity_id=req.prescription_id
    ) as subject:
        row = await store.get_prescription(runtime.db, req.prescription_id)
        if row is None:
            raise NotFound("unknown prescription", details={"prescription_id": req.prescription_id})
        subject.patient_id = row.patient_id
        await access.check_patient_access(ctx, row.patient_id)
        batch = Batch()
        batch.add(codec.PRESCRIPTIONS, row.prescription_id, codec.prescription_stored_fields(row))

        async def plaintext() -> dict[str, str] | None:
            try:
                return (await vault.decrypt(runtime, batch, row.patient_id))[0]
            except IntegrityError:
                return None

        async def prescriber_key() -> str | None:
            try:
                record = await access.resolve_account(runtime, row.prescriber_id)
            except RpcError:
                return None
            return None if record is None else record.account.public_key

        plain, (mac_ok,), current_key = await three(
            plaintext(),
            vault.verify_macs(runtime, [integrity.prescription_mac_row(row)], [row.mac]),
            prescriber_key(),
        )
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
