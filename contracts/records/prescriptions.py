"""E-prescriptions: medications, safety checks, the signed core and its verification."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AfterValidator, Field, model_validator

from contracts.base import HttpRoute, Model, RpcMethod
from contracts.grants import Decrypt, Grant
from contracts.records.common import (
    ALERT_CODE_PATTERN,
    CLINICAL,
    MAX_ALERTS,
    PRESCRIPTION_CONTEXT,
    SERVICE,
    Reason,
    SignedLongText,
    SignedText,
    UtcDatetime,
    Uuid,
)
from contracts.records.tables import ALLERGY_COLUMN, ALLERGY_SOURCES, PRESCRIPTIONS_TABLE


class DosageForm(StrEnum):
    tablet = "tablet"
    capsule = "capsule"
    oral_solution = "oral_solution"
    oral_suspension = "oral_suspension"
    syrup = "syrup"
    injection = "injection"
    infusion = "infusion"
    cream = "cream"
    ointment = "ointment"
    gel = "gel"
    patch = "patch"
    inhaler = "inhaler"
    drops = "drops"
    spray = "spray"
    suppository = "suppository"
    powder = "powder"
    lozenge = "lozenge"


class Route(StrEnum):
    oral = "oral"
    sublingual = "sublingual"
    buccal = "buccal"
    topical = "topical"
    transdermal = "transdermal"
    inhalation = "inhalation"
    nasal = "nasal"
    ophthalmic = "ophthalmic"
    otic = "otic"
    intravenous = "intravenous"
    intramuscular = "intramuscular"
    subcutaneous = "subcutaneous"
    rectal = "rectal"
    vaginal = "vaginal"


class PrescriptionStatus(StrEnum):
    active = "active"
    cancelled = "cancelled"
    completed = "completed"


class Medication(Model):
    """The drug and how to take it: exactly what the prescriber signs (with the ids)."""

    drug_name: SignedText
    strength: SignedText = Field(examples=["500 mg", "5 mg/ml"])
    dosage_form: DosageForm
    dose: SignedText = Field(examples=["1 tablet", "10 ml"])
    route: Route
    frequency: SignedText = Field(examples=["twice daily", "every 8 hours"])
    duration_days: int = Field(ge=1, le=365)
    quantity: int = Field(ge=1, le=10_000, description="Units of the dosage form to dispense.")
    refills: int = Field(ge=0, le=12)
    instructions: SignedLongText = Field(default="", description="Instructions to the patient.")
    medicine_id: str = Field(
        default="",
        max_length=36,
        description="The catalog entry this was copied from at signing ('' for free text).",
    )
    free_text: bool = Field(
        default=False, description="Written outside the catalog, deliberately (marked as such)."
    )


class AlertKind(StrEnum):
    allergy = "allergy"
    cross_sensitivity = "cross_sensitivity"
    duplicate_therapy = "duplicate_therapy"
    interaction = "interaction"
    unchecked = "unchecked"
    """The check could not be made in full (a drug outside the vocabulary, a damaged row)."""


class AlertSeverity(StrEnum):
    high = "high"
    moderate = "moderate"


AlertCode = Annotated[
    str,
    Field(
        pattern=ALERT_CODE_PATTERN,
        examples=["allergy:class:penicillins", "interaction:0b6f…"],
        description="What the check found, stably named: `<kind>:<what>`.",
    ),
]


def _sorted_once(codes: list[str]) -> list[str]:
    if codes != sorted(set(codes)):
        raise ValueError("alert codes are listed once each, in sorted order")
    return codes


AlertCodes = Annotated[list[AlertCode], Field(max_length=MAX_ALERTS), AfterValidator(_sorted_once)]


class SafetyAlert(Model):
    """A blocking alert of the prescribing check: prescribing anyway needs a reason."""

    code: AlertCode
    kind: AlertKind
    severity: AlertSeverity
    message: str = Field(description="The reason, in a sentence a clinician reads at a glance.")
    allergy_id: str | None = Field(default=None, description="The allergy it is about.")
    prescription_id: str | None = Field(
        default=None, description="The active prescription it is about."
    )


class CheckPrescriptionRequest(Model):
    """What records checks before signing: the medication, for this patient, now."""

    patient_id: Uuid
    medication: Medication


class SafetyCheck(Model):
    alerts: list[SafetyAlert] = Field(
        description="Sorted by code; sign their codes (and a reason) to prescribe anyway."
    )
    codes: list[str] = Field(description="The alerts' codes, as `PrescribeRequest.alerts`.")


class PrescriptionCore(Model):
    """Everything the prescriber's signature covers."""

    prescription_id: Uuid
    patient_id: Uuid
    prescriber_id: str = Field(min_length=1, max_length=64)
    encounter_id: Uuid
    created_at: UtcDatetime
    medication: Medication
    alerts: AlertCodes = Field(
        default=[], description="The alerts the prescriber saw and overrode (codes, sorted)."
    )
    override_reason: SignedLongText = Field(
        default="", description="Why the prescriber prescribes despite the alerts."
    )

    @model_validator(mode="after")
    def _override(self) -> Self:
        if self.alerts and not self.override_reason:
            raise ValueError(
                "prescribing despite a safety alert needs a written reason (override_reason)"
            )
        if self.override_reason and not self.alerts:
            raise ValueError("an override reason is given, but there is no alert to override")
        return self


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_prescription(core: PrescriptionCore) -> bytes:
    """The exact bytes a prescriber signs: JSON, keys sorted, no spaces, UTF-8.

    Flat object: `context` (domain separation), the ids, `created_at` as
    `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, microseconds) and every `Medication` field;
    integers as JSON integers. A prescription made despite safety alerts also has
    `alerts` (the overridden alerts' codes, sorted, as a JSON array) and `override_reason`;
    one without alerts has neither member. Signed text may hold no control characters
    (except line breaks in the instructions and the reason) and no outer whitespace, so
    any JSON encoder with sorted keys and no extra whitespace, e.g. a browser's, produces
    the same bytes.
    """
    document: dict[str, object] = {
        "context": PRESCRIPTION_CONTEXT,
        "prescription_id": core.prescription_id,
        "patient_id": core.patient_id,
        "prescriber_id": core.prescriber_id,
        "encounter_id": core.encounter_id,
        "created_at": _timestamp(core.created_at),
        **core.medication.model_dump(mode="json"),
    }
    if core.alerts:
        document["alerts"] = core.alerts
        document["override_reason"] = core.override_reason
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


class PrescribeRequest(Model):
    """A prescription signed by its prescriber's client (the acting physician)."""

    prescription_id: Uuid = Field(description="Chosen by the client (a fresh UUID), signed.")
    patient_id: Uuid
    encounter_id: Uuid = Field(description="The encounter (of this patient) it belongs to.")
    created_at: UtcDatetime = Field(description="Signing time; must be fresh.")
    medication: Medication
    alerts: AlertCodes = Field(
        default=[],
        description="The codes of every alert `records.check_prescription` gave (sorted): "
        "records checks again and refuses a prescription whose alerts differ.",
    )
    override_reason: SignedLongText = Field(
        default="", description="Required with alerts: why the prescriber prescribes anyway."
    )
    signature: str = Field(
        min_length=86,
        max_length=90,
        description="Ed25519 signature (base64) over canonical_prescription of this "
        "request with prescriber_id = the acting physician's account id.",
    )

    def core(self, prescriber_id: str) -> PrescriptionCore:
        return PrescriptionCore(
            prescription_id=self.prescription_id,
            patient_id=self.patient_id,
            prescriber_id=prescriber_id,
            encounter_id=self.encounter_id,
            created_at=self.created_at,
            medication=self.medication,
            alerts=self.alerts,
            override_reason=self.override_reason,
        )


class Prescription(Model):
    prescription_id: str
    patient_id: str
    prescriber_id: str
    encounter_id: str
    created_at: datetime
    medication: Medication
    alerts: list[str] = Field(default=[], description="Alerts overridden at signing (codes).")
    override_reason: str = ""
    signature: str
    signer_public_key: str = Field(description="The Ed25519 key (base64) that signed it.")
    status: PrescriptionStatus
    status_changed_at: datetime | None = None
    status_changed_by: str | None = None
    cancellation_reason: str | None = None

    def core(self) -> PrescriptionCore:
        return PrescriptionCore.model_construct(
            prescription_id=self.prescription_id,
            patient_id=self.patient_id,
            prescriber_id=self.prescriber_id,
            encounter_id=self.encounter_id,
            created_at=self.created_at,
            medication=self.medication,
            alerts=self.alerts,
            override_reason=self.override_reason,
        )


class PrescriptionWritten(Model):
    prescription_id: str
    patient_id: str
    status: PrescriptionStatus


class CancelPrescriptionRequest(Model):
    prescription_id: Uuid
    reason: Reason


class CompletePrescriptionRequest(Model):
    prescription_id: Uuid


class GetPrescriptionRequest(Model):
    prescription_id: Uuid


class ListPrescriptionsRequest(Model):
    patient_id: Uuid
    status: PrescriptionStatus | None = None


class PrescriptionList(Model):
    prescriptions: list[Prescription]
    integrity_failures: list[str] = Field(
        default=[], description="Prescription ids whose row failed its integrity check."
    )


class VerifyPrescriptionRequest(Model):
    prescription_id: Uuid


class PrescriptionVerification(Model):
    """`rx verify`: the stored row's MAC and the prescriber's signature, checked again."""

    prescription_id: str
    valid: bool = Field(description="Both checks passed.")
    mac_valid: bool
    signature_valid: bool
    signer_key_current: bool | None = Field(
        description="The signing key is the prescriber's registered key today (None: unknown "
        "prescriber); False after a key rotation does not invalidate the signature."
    )
    problems: list[str]
    prescription: Prescription | None = Field(
        description="The prescription as stored, if it could be decrypted."
    )


_SAFETY_CHECK = Grant(
    decrypt=Decrypt(
        tables=ALLERGY_SOURCES | {PRESCRIPTIONS_TABLE},
        patient="patient_id",
        columns=frozenset({ALLERGY_COLUMN, "medication", "safety", "cancellation_reason"}),
    )
)
"""The prescribing check reads the patient's allergies and their prescriptions (the drugs,
and what their signatures cover)."""
CHECK_PRESCRIPTION = RpcMethod(
    SERVICE,
    "records.check_prescription",
    CheckPrescriptionRequest,
    SafetyCheck,
    roles=CLINICAL,
    route=HttpRoute(
        "POST",
        "/prescriptions/check",
        patient_data=True,
        summary="Allergies (and cross-sensitive classes), duplicate therapy and interactions "
        "with the patient's active prescriptions, for a medication about to be signed.",
    ),
    grant=_SAFETY_CHECK,
)
PRESCRIBE = RpcMethod(
    SERVICE,
    "records.prescribe",
    PrescribeRequest,
    PrescriptionWritten,
    write=True,
    roles=CLINICAL,
    route=HttpRoute(
        "POST",
        "/prescriptions",
        status=201,
        summary="An e-prescription signed by the physician's client (see "
        "`canonical_prescription`). Records runs the safety check again: the signed `alerts` "
        "must be exactly what it finds (409 otherwise), overridden with a written reason.",
    ),
    grant=_SAFETY_CHECK,
)
CANCEL_PRESCRIPTION = RpcMethod(
    SERVICE,
    "records.cancel_prescription",
    CancelPrescriptionRequest,
    PrescriptionWritten,
    write=True,
    roles=CLINICAL,
    route=HttpRoute("POST", "/prescriptions/{prescription_id}/cancel"),
)
COMPLETE_PRESCRIPTION = RpcMethod(
    SERVICE,
    "records.complete_prescription",
    CompletePrescriptionRequest,
    PrescriptionWritten,
    write=True,
    roles=CLINICAL,
    route=HttpRoute("POST", "/prescriptions/{prescription_id}/complete"),
)
_ONE_PRESCRIPTION = Grant(
    decrypt=Decrypt(
        tables=frozenset({PRESCRIPTIONS_TABLE}), row_id="prescription_id", one_patient=True
    )
)
GET_PRESCRIPTION = RpcMethod(
    SERVICE,
    "records.get_prescription",
    GetPrescriptionRequest,
    Prescription,
    roles=CLINICAL,
    route=HttpRoute("GET", "/prescriptions/{prescription_id}", patient_data=True),
    grant=_ONE_PRESCRIPTION,
)
LIST_PRESCRIPTIONS = RpcMethod(
    SERVICE,
    "records.list_prescriptions",
    ListPrescriptionsRequest,
    PrescriptionList,
    roles=CLINICAL,
    route=HttpRoute(
        "GET", "/patients/{patient_id}/prescriptions", query=("status",), patient_data=True
    ),
    grant=Grant(decrypt=Decrypt(tables=frozenset({PRESCRIPTIONS_TABLE}), patient="patient_id")),
)
VERIFY_PRESCRIPTION = RpcMethod(
    SERVICE,
    "records.verify_prescription",
    VerifyPrescriptionRequest,
    PrescriptionVerification,
    roles=CLINICAL,
    route=HttpRoute(
        "GET",
        "/prescriptions/{prescription_id}/verify",
        patient_data=True,
        summary="Check the stored row's MAC and the prescriber's signature again.",
    ),
    grant=_ONE_PRESCRIPTION,
)
