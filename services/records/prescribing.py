"""Writing an e-prescription, safely: the check, then the signed prescription.

`check_prescription` runs the safety check (`safety`) for a medication about to be signed
against the patient's allergy list and active prescriptions. `prescribe` runs it again,
inside the write, with the patient's row locked (two prescriptions for one patient are
checked one after the other): the prescriber signs the codes of the alerts they saw and a
reason to override them, and records refuses a prescription whose signed alerts are not
exactly what it finds now, so a client that skips the check, or checked before something
changed, cannot prescribe past an alert. The alerts and the reason are in the signature
and in the row (encrypted, MAC'd), and audited by code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts import records as rec
from contracts.audit import AuditAction, AuditType
from mesh import auditing, db, keyvault
from mesh.context import CallContext, runtime_of
from mesh.errors import Conflict, invalid_field
from mesh.keyvault import Batch
from services.records import (
    access,
    allergies,
    catalog,
    codec,
    integrity,
    knowledge,
    known,
    safety,
    store,
)
from services.records.access import lookups, principal_of
from services.records.knowledge import Drug, Knowledge
from services.records.prescriptions import (
    ACTIVE,
    ENTITY,
    decrypt_with_prescriptions,
    signature_valid,
)
from services.records.store import PrescriptionRow


def _now() -> datetime:
    return datetime.now(UTC)


def check_fresh(ctx: CallContext, created_at: datetime) -> None:
    settings = runtime_of(ctx).settings
    now = _now()
    if created_at < now - timedelta(seconds=settings.signature_window_s):
        raise invalid_field(
            "created_at", "the prescription was signed too long ago: sign it again", "stale"
        )
    if created_at > now + timedelta(seconds=settings.signature_skew_s):
        raise invalid_field("created_at", "the prescription is signed in the future", "future")


async def check_catalog(ctx: CallContext, medication: rec.Medication) -> None:
    """A prescription names an active catalog entry whose details it copies, or is marked
    free text on purpose."""
    if medication.free_text:
        if medication.medicine_id:
            raise invalid_field(
                "medication.medicine_id",
                "a free-text prescription names no catalog medicine",
                "free_text_with_catalog_entry",
            )
        return
    if not medication.medicine_id:
        raise invalid_field(
            "medication.medicine_id",
            "choose a catalog medicine, or set free_text to prescribe outside the catalog",
            "missing",
        )
    medicine = await catalog.fetch(lookups(runtime_of(ctx)), medication.medicine_id)
    if medicine is None:
        raise invalid_field("medication.medicine_id", "no such medicine in the catalog", "unknown")
    if not medicine.active:
        raise invalid_field(
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
            raise invalid_field(
                f"medication.{field}",
                f"{field} does not match the catalog entry ({expected!s}): copy its details",
                "catalog_mismatch",
            )


def drug_of(vocabulary: Knowledge, medication: rec.Medication, texts: dict[str, str]) -> Drug:
    """What a medication is made of: its catalog entry's active ingredients, or (free
    text) whatever of its name the vocabulary recognises."""
    text = texts.get(medication.medicine_id) if medication.medicine_id else None
    return vocabulary.drug(text or medication.drug_name)


@dataclass
class Assessment:
    alerts: list[rec.SafetyAlert]
    allergies: allergies.Loaded

    @property
    def codes(self) -> list[str]:
        return [a.code for a in self.alerts]


async def assess(
    ctx: CallContext, target: Any, patient_id: str, medication: rec.Medication
) -> Assessment:
    """The safety check of `medication` for the patient, on what `target` (the pool, or
    the write's transaction) holds: one DECRYPT for the allergy list and the active
    prescriptions, with every prescription's MAC checked in it."""
    src = await allergies.source(target, patient_id)
    every = await store.prescriptions_of(target, patient_id)
    batch = Batch()
    src.add_to(batch)
    active_rows = [r for r in every if r.status == ACTIVE]
    decrypted, checked = await decrypt_with_prescriptions(ctx, batch, every, active_rows)
    loaded = await allergies.read(ctx, src, decrypted)
    ids = {medication.medicine_id, *(p.medication.medicine_id for p in checked.prescriptions)}
    texts = await catalog.ingredient_texts(target, ids - {""})
    vocabulary = knowledge.of(ctx)
    active = [
        safety.Active(p, drug_of(vocabulary, p.medication, texts)) for p in checked.prescriptions
    ]
    alerts = safety.check(
        vocabulary,
        medication,
        drug_of(vocabulary, medication, texts),
        loaded.active,
        active,
        checked.failures,
    )
    return Assessment(alerts, loaded)


def _detail(alerts: list[rec.SafetyAlert]) -> str:
    kinds = sorted({a.kind.value for a in alerts})
    return f"{len(alerts)} alerts: {', '.join(kinds)}" if alerts else "no alerts"


async def check_prescription(
    req: rec.CheckPrescriptionRequest, ctx: CallContext
) -> rec.SafetyCheck:
    database = runtime_of(ctx).db
    async with access.audited_patient(
        ctx, AuditType.prescription_check, AuditAction.read, ENTITY, req.patient_id
    ) as subject:
        await known.require_patient(database, req.patient_id)
        await check_catalog(ctx, req.medication)
        assessment = await assess(ctx, database, req.patient_id, req.medication)
        await auditing.read(ctx, subject, [req.patient_id], detail=_detail(assessment.alerts))
    await allergies.keep_built(ctx, req.patient_id, assessment.allergies)
    return rec.SafetyCheck(alerts=assessment.alerts, codes=assessment.codes)


def _same_alerts(req: rec.PrescribeRequest, found: list[str]) -> None:
    if req.alerts == found:
        return
    if found and not req.alerts:
        msg = (
            "this prescription has safety alerts that were not acknowledged: run the check, "
            "review the alerts and sign again with a reason to override them"
        )
    else:
        msg = (
            "the safety alerts have changed since the check: check again, review the alerts "
            "and sign again"
        )
    raise Conflict(msg, details={"alerts": found, "signed": req.alerts})


async def prescribe(req: rec.PrescribeRequest, ctx: CallContext) -> rec.PrescriptionWritten:
    runtime, me = runtime_of(ctx), principal_of(ctx)
    async with access.audited_patient(
        ctx,
        AuditType.prescription_create,
        AuditAction.create,
        ENTITY,
        req.patient_id,
        entity_id=req.prescription_id,
    ) as subject:
        check_fresh(ctx, req.created_at)
        await check_catalog(ctx, req.medication)
        assert ctx.operation is not None and ctx.operation.account is not None
        public_key = ctx.operation.account.public_key
        if not signature_valid(public_key, req.core(me.account_id), req.signature):
            raise invalid_field(
                "signature",
                "the signature does not verify over the canonical prescription with the "
                "prescriber's registered key",
                "bad_signature",
            )
        await known.lock_patient(ctx.tx, req.patient_id)
        head = await store.get_head(ctx.tx, req.encounter_id)
        if head is None or head.patient_id != req.patient_id:
            raise invalid_field(
                "encounter_id", "no such encounter of this patient", "unknown_encounter"
            )
        assessment = await assess(ctx, ctx.tx, req.patient_id, req.medication)
        _same_alerts(req, assessment.codes)
        built = assessment.allergies.built
        batch = Batch()
        fields = {
            "medication": req.medication.model_dump_json(),
            "safety": codec.safety_text(req.alerts, req.override_reason),
        }
        batch.add(codec.PRESCRIPTIONS, req.prescription_id, fields, patient=req.patient_id)
        if built:
            allergies.add_list(batch, req.patient_id, assessment.allergies.entries)
        cipher = await keyvault.encrypt(runtime, batch)
        row = PrescriptionRow(
            prescription_id=req.prescription_id,
            patient_id=req.patient_id,
            prescriber_id=me.account_id,
            encounter_id=req.encounter_id,
            created_at=req.created_at,
            medication_enc=cipher[0]["medication"],
            signature=req.signature,
            signer_public_key=public_key,
            status=ACTIVE,
            status_changed_at=None,
            status_changed_by=None,
            cancellation_reason_enc=None,
            mac="",
            safety_enc=cipher[0].get("safety"),
        )
        mac_rows = [integrity.prescription_mac_row(row)]
        if built:
            listed = allergies.list_row(
                req.patient_id, cipher[1][allergies.COLUMN], 1, me.account_id
            )
            mac_rows.append(integrity.allergy_list_mac_row(listed))
        tags = await keyvault.mac(runtime, mac_rows)
        if built:
            await store.put_allergy_list(ctx.tx, replace(listed, mac=tags[1]))
        try:
            await store.insert_prescription(ctx.tx, replace(row, mac=tags[0]))
        except Exception as exc:
            if db.is_duplicate_key(exc):
                raise Conflict(
                    "this prescription id is already used",
                    details={"prescription_id": req.prescription_id},
                ) from None
            raise
        detail = f"overrode {_detail(assessment.alerts)} ({' '.join(req.alerts)})"
        await auditing.written(ctx, subject, detail[:1000] if req.alerts else "no alerts")
    return rec.PrescriptionWritten(
        prescription_id=req.prescription_id,
        patient_id=req.patient_id,
        status=rec.PrescriptionStatus.active,
    )
