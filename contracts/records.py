"""Wire contracts of the records service: patients, clinical history, e-prescriptions.

Who sees what (minimum necessary, DESIGN §1), enforced by the runtime from `roles` below,
again by the gateway, and by each handler:
- receptionists register, update and search patients and read their demographics;
- physicians read demographics and everything clinical, write encounters and sign,
  cancel and complete e-prescriptions;
- administrators read no patient data: no records method admits them.

Replies of writes carry ids, versions and states only, never patient data: the runtime
keeps each write's reply in the service's own database for idempotent replay, and that
database holds only ciphertext. Read the record back (an audited read) to see it.

Medical record numbers (`MH-` + 8 base32 characters) are patient identifiers: stored
encrypted with a blind index like the other identifiers, so `PatientRef.mrn` is always
None (answering it would mean decrypting for a caller without a user signature).

E-prescriptions are signed by the prescriber's own client: Ed25519 over
`canonical_prescription(core)` with the key that signs their requests. The signature is
stored with the signing public key, so anyone can re-verify it later.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, ClassVar, Literal, Self

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints, model_validator

from contracts.base import EventType, Model, Role, RpcMethod

SERVICE = "records"

DESK = frozenset({Role.receptionist})
CLINICAL = frozenset({Role.physician})
PATIENT_READERS = frozenset({Role.receptionist, Role.physician})

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
MRN_PREFIX = "MH-"
MRN_PATTERN = r"^MH-[A-Z2-7]{8}$"
MIN_BIRTH_DATE = date(1890, 1, 1)
CLOCK_SKEW = timedelta(minutes=5)
MAX_LONG_TEXT = 10_000
MAX_DIAGNOSES = 20
MAX_ALLERGIES = 50
PRESCRIPTION_CONTEXT = "medihaven.prescription.v1"
"""Domain separation: the first member of every canonical prescription."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_ICD10 = re.compile(r"^([A-Z][0-9][0-9A-Z])\.?([0-9A-Z]{1,4})?$")
_PHONE = re.compile(r"^\+?[0-9 ().\-/]{4,30}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")


# ---------------------------------------------------------------------------- value types


def _single_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("control characters (line breaks, tabs, …) are not allowed here")
    return value


def _multiline(value: str) -> str:
    if _CONTROL_BUT_NEWLINE.search(value):
        raise ValueError("control characters other than line breaks are not allowed")
    return value


def _exact(value: str) -> str:
    """Signed text is taken as sent (no silent trimming that the signer did not see)."""
    if value != value.strip():
        raise ValueError("leading or trailing whitespace is not allowed in signed fields")
    return value


def _has_letter(value: str) -> str:
    if not any(c.isalpha() for c in value):
        raise ValueError("must contain a letter")
    return value


def _phone(value: str) -> str:
    if not _PHONE.fullmatch(value):
        raise ValueError("a phone number has digits, an optional leading +, and ( ) . - / spaces")
    digits = sum(c.isdigit() for c in value)
    if not 4 <= digits <= 15:
        raise ValueError("a phone number has 4 to 15 digits")
    return value


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError("not an email address")
    return value


def _icd10(value: str) -> str:
    """ICD-10 / ICD-10-CM code: letter, two characters, optional dot and 1-4 more."""
    match = _ICD10.fullmatch(value.strip().upper())
    if match is None:
        raise ValueError("not an ICD-10 code (e.g. J45.909, E11.9, I10)")
    category, subcategory = match.groups()
    return f"{category}.{subcategory}" if subcategory else category


def _birth_date(value: date) -> date:
    if value < MIN_BIRTH_DATE:
        raise ValueError(f"date of birth before {MIN_BIRTH_DATE.isoformat()}")
    if value > (datetime.now(UTC) + timedelta(days=1)).date():
        raise ValueError("date of birth is in the future")
    return value


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _not_future(value: datetime) -> datetime:
    if value > datetime.now(UTC) + CLOCK_SKEW:
        raise ValueError("is in the future")
    if value.year < MIN_BIRTH_DATE.year:
        raise ValueError("is implausibly old")
    return value


Uuid = Annotated[str, Field(pattern=UUID_PATTERN, description="A lowercase UUID.")]
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime (naive ones are refused), normalised to UTC."""
PastDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc), AfterValidator(_not_future)]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_single_line),
    AfterValidator(_has_letter),
]
ShortText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_single_line),
]
Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=1000),
    AfterValidator(_multiline),
]
LongText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=MAX_LONG_TEXT),
    AfterValidator(_multiline),
]
Phone = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_phone)]
Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=254), AfterValidator(_email)
]
BirthDate = Annotated[date, AfterValidator(_birth_date)]
Icd10Code = Annotated[
    str,
    StringConstraints(max_length=10),
    AfterValidator(_icd10),
    Field(examples=["J45.909", "E11.9", "I10"]),
]
MrnQuery = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=4, max_length=20, pattern=r"^[A-Za-z0-9 -]+$"
    ),
]
SignedText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    AfterValidator(_single_line),
    AfterValidator(_exact),
]
SignedLongText = Annotated[
    str, StringConstraints(max_length=2000), AfterValidator(_multiline), AfterValidator(_exact)
]


# ---------------------------------------------------------------------------- patients


class Sex(StrEnum):
    """Administrative sex (FHIR AdministrativeGender)."""

    female = "female"
    male = "male"
    other = "other"
    unknown = "unknown"


class ClinicalFlag(StrEnum):
    """Alerts a physician sets on a patient; receptionists do not see them."""

    do_not_resuscitate = "do_not_resuscitate"
    fall_risk = "fall_risk"
    infection_control = "infection_control"
    anticoagulated = "anticoagulated"
    pregnant = "pregnant"
    diabetic = "diabetic"
    immunocompromised = "immunocompromised"
    implanted_device = "implanted_device"
    latex_allergy = "latex_allergy"
    difficult_airway = "difficult_airway"
    safeguarding = "safeguarding"


class Address(Model):
    line1: ShortText
    line2: ShortText | None = None
    postal_code: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=1, max_length=20, pattern=r"^[A-Za-z0-9 -]+$"
        ),
    ]
    city: ShortText
    region: ShortText | None = None
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2.")]


class EmergencyContact(Model):
    name: ShortText
    relationship: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
        AfterValidator(_single_line),
    ]
    phone: Phone


class Insurance(Model):
    company: ShortText
    member_id: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
        AfterValidator(_single_line),
    ]
    valid_until: Annotated[date, Field(ge=date(2000, 1, 1), le=date(2200, 12, 31))]


class Demographics(Model):
    given_name: Name
    family_name: Name
    date_of_birth: BirthDate
    sex: Sex
    phone: Phone | None = None
    email: Email | None = None
    address: Address | None = None
    emergency_contact: EmergencyContact | None = None
    insurance: Insurance | None = None


class Patient(Model):
    patient_id: str
    mrn: str
    demographics: Demographics
    clinical_flags: list[ClinicalFlag] | None = Field(
        default=None, description="Physicians only; None for receptionists."
    )
    version: int = Field(description="Demographics version (for update_patient).")
    created_at: datetime
    updated_at: datetime


class PatientBrief(Model):
    """What a list or a search shows: enough to pick the right patient."""

    patient_id: str
    mrn: str
    given_name: str
    family_name: str
    date_of_birth: date
    sex: Sex


class PatientList(Model):
    patients: list[PatientBrief]


class PatientWritten(Model):
    """Reply of a patient write: ids and version only (see the module docstring)."""

    patient_id: str
    version: int
    updated_at: datetime


class CreatePatientRequest(Model):
    demographics: Demographics
    confirm_duplicate: bool = Field(
        default=False,
        description="A patient with the same name and date of birth exists: create anyway.",
    )


class UpdatePatientRequest(Model):
    """Replaces the demographics (all of them: read, edit, write back with the version)."""

    patient_id: Uuid
    expected_version: int = Field(ge=1)
    demographics: Demographics


class SetClinicalFlagsRequest(Model):
    patient_id: Uuid
    flags: list[ClinicalFlag] = Field(max_length=len(ClinicalFlag))

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if len(set(self.flags)) != len(self.flags):
            raise ValueError("a flag is listed twice")
        return self


class GetPatientRequest(Model):
    patient_id: Uuid


class ListRecentPatientsRequest(Model):
    limit: int = Field(default=20, ge=1, le=100)


class SearchPatientsRequest(Model):
    """Exactly one criterion: family name + date of birth, or phone, or MRN (exact match)."""

    family_name: Name | None = None
    date_of_birth: BirthDate | None = None
    phone: Phone | None = None
    mrn: MrnQuery | None = None

    @model_validator(mode="after")
    def _one_criterion(self) -> Self:
        by_name = self.family_name is not None or self.date_of_birth is not None
        if by_name and (self.family_name is None or self.date_of_birth is None):
            raise ValueError("search by name needs both family_name and date_of_birth")
        if by_name + (self.phone is not None) + (self.mrn is not None) != 1:
            raise ValueError(
                "give exactly one criterion: family_name + date_of_birth, phone, or mrn"
            )
        return self


class PatientRefRequest(Model):
    patient_id: str = Field(max_length=64)


class PatientRef(Model):
    """Whether a patient exists, without any patient data (for other services' checks)."""

    patient_id: str
    exists: bool
    mrn: str | None = Field(
        default=None, description="Always None: MRNs are encrypted at rest (module docstring)."
    )


# ---------------------------------------------------------------------------- encounters


class BloodPressure(Model):
    systolic: int = Field(ge=40, le=300)
    diastolic: int = Field(ge=20, le=200)
    unit: Literal["mmHg"] = "mmHg"

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.systolic <= self.diastolic:
            raise ValueError("systolic must be higher than diastolic")
        return self


class HeartRate(Model):
    value: int = Field(ge=20, le=300)
    unit: Literal["/min"] = "/min"


class RespiratoryRate(Model):
    value: int = Field(ge=4, le=80)
    unit: Literal["/min"] = "/min"


class OxygenSaturation(Model):
    value: int = Field(ge=50, le=100)
    unit: Literal["%"] = "%"


class _Ranged(Model):
    """A measurement whose plausible range depends on its (required) unit."""

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {}
    value: float = Field(allow_inf_nan=False)
    unit: str

    @model_validator(mode="after")
    def _in_range(self) -> Self:
        low, high = self.RANGES[self.unit]
        if not low <= self.value <= high:
            raise ValueError(f"{self.value} {self.unit} is outside {low}-{high} {self.unit}")
        return self


class Temperature(_Ranged):
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "Cel": (25.0, 45.0),
        "[degF]": (77.0, 113.0),
    }
    unit: Literal["Cel", "[degF]"] = Field(description="UCUM: Cel or [degF].")


class Weight(_Ranged):
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "kg": (0.2, 500.0),
        "[lb_av]": (0.45, 1100.0),
    }
    unit: Literal["kg", "[lb_av]"] = Field(description="UCUM: kg or [lb_av].")


class Height(_Ranged):
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {"cm": (20.0, 275.0), "[in_i]": (8.0, 108.0)}
    unit: Literal["cm", "[in_i]"] = Field(description="UCUM: cm or [in_i].")


class VitalSigns(Model):
    """Each measurement optional; units are UCUM codes; values within plausible ranges."""

    blood_pressure: BloodPressure | None = None
    heart_rate: HeartRate | None = None
    temperature: Temperature | None = None
    respiratory_rate: RespiratoryRate | None = None
    oxygen_saturation: OxygenSaturation | None = None
    weight: Weight | None = None
    height: Height | None = None


class Diagnosis(Model):
    code: Icd10Code
    description: ShortText | None = None


class AllergySeverity(StrEnum):
    mild = "mild"
    moderate = "moderate"
    severe = "severe"
    unknown = "unknown"


class AllergyStatus(StrEnum):
    active = "active"
    resolved = "resolved"
    refuted = "refuted"


class Allergy(Model):
    substance: ShortText
    reaction: ShortText | None = None
    severity: AllergySeverity = AllergySeverity.unknown
    status: AllergyStatus = AllergyStatus.active


class EncounterContent(Model):
    """What a physician records about one encounter (all of it, in each version)."""

    occurred_at: PastDatetime
    chief_complaint: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
        AfterValidator(_multiline),
    ]
    history_of_present_illness: LongText = ""
    examination: LongText = ""
    assessment: LongText = ""
    plan: LongText = ""
    diagnoses: list[Diagnosis] = Field(default=[], max_length=MAX_DIAGNOSES)
    vital_signs: VitalSigns | None = None
    allergies: list[Allergy] = Field(default=[], max_length=MAX_ALLERGIES)


class Encounter(Model):
    """One version of an encounter; reads show the latest unless versions are asked for."""

    encounter_id: str
    patient_id: str
    version: int
    physician_id: str = Field(description="The physician who recorded the encounter.")
    content: EncounterContent
    recorded_by: str = Field(description="Who wrote this version (the amending physician).")
    recorded_at: datetime
    supersedes: int | None = Field(default=None, description="The version this one amends.")
    amendment_reason: str | None = None


class EncounterWritten(Model):
    encounter_id: str
    patient_id: str
    version: int


class AddEncounterRequest(Model):
    patient_id: Uuid
    content: EncounterContent


class AmendEncounterRequest(Model):
    """A new version replacing `expected_version` (which must be the latest); kept apart."""

    encounter_id: Uuid
    expected_version: int = Field(ge=1)
    reason: Reason
    content: EncounterContent


class GetEncounterRequest(Model):
    encounter_id: Uuid
    include_versions: bool = False


class EncounterHistory(Model):
    current: Encounter
    versions: list[Encounter] = Field(
        default=[], description="Every version, oldest first (if asked for)."
    )


class ListEncountersRequest(Model):
    patient_id: Uuid
    limit: int = Field(default=20, ge=1, le=100)
    before: UtcDatetime | None = Field(
        default=None, description="Only encounters that occurred before this (paging)."
    )


class EncounterList(Model):
    encounters: list[Encounter]


# ---------------------------------------------------------------------------- prescriptions


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


class PrescriptionCore(Model):
    """Everything the prescriber's signature covers."""

    prescription_id: Uuid
    patient_id: Uuid
    prescriber_id: str = Field(min_length=1, max_length=64)
    encounter_id: Uuid
    created_at: UtcDatetime
    medication: Medication


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_prescription(core: PrescriptionCore) -> bytes:
    """The exact bytes a prescriber signs: JSON, keys sorted, no spaces, UTF-8.

    Flat object: `context` (domain separation), the ids, `created_at` as
    `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, microseconds) and every `Medication` field;
    integers as JSON integers. Signed text may hold no control characters (except line
    breaks in the instructions) and no outer whitespace, so any JSON encoder with sorted
    keys and no extra whitespace, e.g. a browser's, produces the same bytes.
    """
    document: dict[str, str | int] = {
        "context": PRESCRIPTION_CONTEXT,
        "prescription_id": core.prescription_id,
        "patient_id": core.patient_id,
        "prescriber_id": core.prescriber_id,
        "encounter_id": core.encounter_id,
        "created_at": _timestamp(core.created_at),
        **core.medication.model_dump(mode="json"),
    }
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
        )


class Prescription(Model):
    prescription_id: str
    patient_id: str
    prescriber_id: str
    encounter_id: str
    created_at: datetime
    medication: Medication
    signature: str
    signer_public_key: str = Field(description="The Ed25519 key (base64) that signed it.")
    status: PrescriptionStatus
    status_changed_at: datetime | None = None
    status_changed_by: str | None = None
    cancellation_reason: str | None = None

    def core(self) -> PrescriptionCore:
        return PrescriptionCore(
            prescription_id=self.prescription_id,
            patient_id=self.patient_id,
            prescriber_id=self.prescriber_id,
            encounter_id=self.encounter_id,
            created_at=self.created_at,
            medication=self.medication,
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


# ---------------------------------------------------------------------------- summary


class PatientSummaryRequest(Model):
    patient_id: Uuid
    encounters: int = Field(default=10, ge=0, le=50, description="Most recent encounters.")


class PatientSummary(Model):
    """Demographics, recent encounters, active prescriptions and allergies in one call."""

    patient: Patient
    encounters: list[Encounter]
    active_prescriptions: list[Prescription]
    allergies: list[Allergy] = Field(
        description="Active allergies: the latest entry per substance over every encounter."
    )
    integrity_failures: list[str] = Field(
        default=[], description="Prescription ids left out because their row was tampered with."
    )


# ---------------------------------------------------------------------------- medicine catalog

MEDICINE_TABLE = "medicines"


class MedicineType(StrEnum):
    analgesic = "analgesic"
    antibiotic = "antibiotic"
    antiviral = "antiviral"
    antifungal = "antifungal"
    antihypertensive = "antihypertensive"
    antidiabetic = "antidiabetic"
    anticoagulant = "anticoagulant"
    antihistamine = "antihistamine"
    bronchodilator = "bronchodilator"
    corticosteroid = "corticosteroid"
    lipid_lowering = "lipid_lowering"
    antidepressant = "antidepressant"
    gastrointestinal = "gastrointestinal"
    other = "other"


class MedicineDetails(Model):
    """A catalog entry's content; prescriptions copy name, strength, form and route."""

    name: SignedText
    active_ingredient: SignedText
    strength: SignedText
    dosage_form: DosageForm
    route: Route
    type: MedicineType
    default_instructions: SignedLongText = ""


class Medicine(Model):
    medicine_id: str
    details: MedicineDetails
    active: bool
    updated_at: datetime


class AddMedicineRequest(Model):
    details: MedicineDetails


class UpdateMedicineRequest(Model):
    medicine_id: Uuid
    details: MedicineDetails


class RetireMedicineRequest(Model):
    medicine_id: Uuid


class GetMedicineRequest(Model):
    medicine_id: Uuid


class SearchMedicinesRequest(Model):
    """Prefix of the name or the active ingredient (case-insensitive), and/or a type."""

    prefix: str = Field(default="", max_length=100)
    type: MedicineType | None = None
    include_retired: bool = False
    limit: int = Field(default=20, ge=1, le=100)


class MedicineList(Model):
    medicines: list[Medicine]


# ---------------------------------------------------------------------------- methods

PATIENT_REF = RpcMethod(SERVICE, "records.patient_ref", PatientRefRequest, PatientRef)
"""Any caller (services check a patient exists); answers without decrypting anything."""

CREATE_PATIENT = RpcMethod(
    SERVICE, "records.create_patient", CreatePatientRequest, PatientWritten, write=True, roles=DESK
)
UPDATE_PATIENT = RpcMethod(
    SERVICE, "records.update_patient", UpdatePatientRequest, PatientWritten, write=True, roles=DESK
)
SET_CLINICAL_FLAGS = RpcMethod(
    SERVICE,
    "records.set_clinical_flags",
    SetClinicalFlagsRequest,
    PatientWritten,
    write=True,
    roles=CLINICAL,
)
GET_PATIENT = RpcMethod(
    SERVICE, "records.get_patient", GetPatientRequest, Patient, roles=PATIENT_READERS
)
LIST_RECENT_PATIENTS = RpcMethod(
    SERVICE,
    "records.list_recent_patients",
    ListRecentPatientsRequest,
    PatientList,
    roles=PATIENT_READERS,
)
SEARCH_PATIENTS = RpcMethod(
    SERVICE, "records.search_patients", SearchPatientsRequest, PatientList, roles=PATIENT_READERS
)

ADD_ENCOUNTER = RpcMethod(
    SERVICE,
    "records.add_encounter",
    AddEncounterRequest,
    EncounterWritten,
    write=True,
    roles=CLINICAL,
)
AMEND_ENCOUNTER = RpcMethod(
    SERVICE,
    "records.amend_encounter",
    AmendEncounterRequest,
    EncounterWritten,
    write=True,
    roles=CLINICAL,
)
GET_ENCOUNTER = RpcMethod(
    SERVICE, "records.get_encounter", GetEncounterRequest, EncounterHistory, roles=CLINICAL
)
LIST_ENCOUNTERS = RpcMethod(
    SERVICE, "records.list_encounters", ListEncountersRequest, EncounterList, roles=CLINICAL
)

PRESCRIBE = RpcMethod(
    SERVICE,
    "records.prescribe",
    PrescribeRequest,
    PrescriptionWritten,
    write=True,
    roles=CLINICAL,
)
CANCEL_PRESCRIPTION = RpcMethod(
    SERVICE,
    "records.cancel_prescription",
    CancelPrescriptionRequest,
    PrescriptionWritten,
    write=True,
    roles=CLINICAL,
)
COMPLETE_PRESCRIPTION = RpcMethod(
    SERVICE,
    "records.complete_prescription",
    CompletePrescriptionRequest,
    PrescriptionWritten,
    write=True,
    roles=CLINICAL,
)
GET_PRESCRIPTION = RpcMethod(
    SERVICE, "records.get_prescription", GetPrescriptionRequest, Prescription, roles=CLINICAL
)
LIST_PRESCRIPTIONS = RpcMethod(
    SERVICE,
    "records.list_prescriptions",
    ListPrescriptionsRequest,
    PrescriptionList,
    roles=CLINICAL,
)
VERIFY_PRESCRIPTION = RpcMethod(
    SERVICE,
    "records.verify_prescription",
    VerifyPrescriptionRequest,
    PrescriptionVerification,
    roles=CLINICAL,
)

PATIENT_SUMMARY = RpcMethod(
    SERVICE, "records.patient_summary", PatientSummaryRequest, PatientSummary, roles=CLINICAL
)

PATIENT_DATA_METHODS = (
    CREATE_PATIENT,
    UPDATE_PATIENT,
    SET_CLINICAL_FLAGS,
    GET_PATIENT,
    LIST_RECENT_PATIENTS,
    SEARCH_PATIENTS,
    ADD_ENCOUNTER,
    AMEND_ENCOUNTER,
    GET_ENCOUNTER,
    LIST_ENCOUNTERS,
    PRESCRIBE,
    CANCEL_PRESCRIPTION,
    COMPLETE_PRESCRIPTION,
    GET_PRESCRIPTION,
    LIST_PRESCRIPTIONS,
    VERIFY_PRESCRIPTION,
    PATIENT_SUMMARY,
)
"""Every method that reads or writes patient data (all but PATIENT_REF)."""

CATALOG_ADMIN = frozenset({Role.administrator})
CATALOG_READERS = frozenset({Role.administrator, Role.physician})
ADD_MEDICINE = RpcMethod(
    SERVICE, "records.add_medicine", AddMedicineRequest, Medicine, write=True, roles=CATALOG_ADMIN
)
UPDATE_MEDICINE = RpcMethod(
    SERVICE,
    "records.update_medicine",
    UpdateMedicineRequest,
    Medicine,
    write=True,
    roles=CATALOG_ADMIN,
)
RETIRE_MEDICINE = RpcMethod(
    SERVICE,
    "records.retire_medicine",
    RetireMedicineRequest,
    Medicine,
    write=True,
    roles=CATALOG_ADMIN,
)
GET_MEDICINE = RpcMethod(
    SERVICE, "records.get_medicine", GetMedicineRequest, Medicine, roles=CATALOG_READERS
)
SEARCH_MEDICINES = RpcMethod(
    SERVICE,
    "records.search_medicines",
    SearchMedicinesRequest,
    MedicineList,
    roles=CATALOG_READERS,
)
CATALOG_METHODS = (ADD_MEDICINE, UPDATE_MEDICINE, RETIRE_MEDICINE, GET_MEDICINE, SEARCH_MEDICINES)
"""The medicine catalog: no patient data (administrators edit it, physicians search it)."""


# ---------------------------------------------------------------------------- per-patient access

ACCESS_SERVICE = "recordsaccess"
"""Records' access decisions, on a queue of their own: the keyvault asks while a records
handler is waiting for that very keyvault call, so they must not share records' slots."""
CLINICAL_TABLES = ("encounter_versions", "prescriptions")
"""Keyvault tables holding clinical data: decrypting them needs a care relationship."""


class CareBasis(StrEnum):
    encounter = "encounter"
    appointment = "appointment"
    break_glass = "break_glass"


class MayReadRequest(Model):
    physician_id: str = Field(max_length=64)
    patient_id: str = Field(max_length=64)


class MayReadReply(Model):
    allowed: bool
    basis: CareBasis | None = None


class BreakGlassRequest(Model):
    patient_id: Uuid
    reason: Reason


class BreakGlassOpened(Model):
    grant_id: str
    patient_id: str
    expires_at: datetime


class BreakGlassGrant(Model):
    grant_id: str
    patient_id: str
    physician_id: str
    opened_at: datetime
    expires_at: datetime
    reason: str
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    note: str | None = None


class BreakGlassReportRequest(Model):
    unacknowledged_only: bool = False
    limit: int = Field(default=100, ge=1, le=500)


class BreakGlassReport(Model):
    grants: list[BreakGlassGrant]


class AcknowledgeBreakGlassRequest(Model):
    grant_id: Uuid
    note: str = Field(default="", max_length=1000)


class BreakGlassNotice(Model):
    """Published when a physician opens a chart in an emergency (ids and times only)."""

    grant_id: str
    physician_id: str
    patient_id: str
    expires_at: datetime


MAY_READ = RpcMethod(ACCESS_SERVICE, "recordsaccess.may_read", MayReadRequest, MayReadReply)
BREAK_GLASS = RpcMethod(
    SERVICE, "records.break_glass", BreakGlassRequest, BreakGlassOpened, write=True, roles=CLINICAL
)
BREAK_GLASS_REPORT = RpcMethod(
    SERVICE,
    "records.break_glass_report",
    BreakGlassReportRequest,
    BreakGlassReport,
    roles=CATALOG_ADMIN,
)
ACKNOWLEDGE_BREAK_GLASS = RpcMethod(
    SERVICE,
    "records.acknowledge_break_glass",
    AcknowledgeBreakGlassRequest,
    BreakGlassGrant,
    write=True,
    roles=CATALOG_ADMIN,
)
BREAK_GLASS_OPENED = EventType("records.break_glass.opened", BreakGlassNotice)
