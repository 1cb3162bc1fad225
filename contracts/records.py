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

from contracts.base import GATEWAY, EventType, HttpRoute, Model, Role, RpcMethod
from contracts.grants import BlindIndex, Decrypt, Grant, Match

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
MAX_VERSION = 10**9
MAX_LIST_ALLERGIES = 200
SUBSTANCE_CODE_PATTERN = r"^(ingredient|class):[a-z0-9][a-z0-9 ()/-]{0,79}$"
ALERT_CODE_PATTERN = r"^[a-z_]{3,30}:[a-z0-9][a-z0-9:. ()/-]{0,119}$"
MAX_ALERTS = 50
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
        raise ValueError("not an ICD-10 code (e.g. J45.9, E11.9, I10)")
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
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=40), AfterValidator(_phone)
]
Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=254), AfterValidator(_email)
]
BirthDate = Annotated[date, AfterValidator(_birth_date)]
Icd10Code = Annotated[
    str,
    StringConstraints(max_length=10),
    AfterValidator(_icd10),
    Field(examples=["J45.9", "E11.9", "I10"]),
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
    expected_version: int = Field(ge=1, le=MAX_VERSION)
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


BRIEFS_MAX = 200
"""The most patients one `records.patient_briefs` read names (a month of a busy calendar)."""


class PatientBriefsRequest(Model):
    """The patients a list shows (a calendar's appointments), read at once: one request,
    one audit event naming them all, one keyvault call, one rate-limit token."""

    patient_ids: list[Uuid] = Field(min_length=1, max_length=BRIEFS_MAX)

    @property
    def count(self) -> int:
        """How many rows the keyvault may decrypt for it (`Decrypt.max_rows`)."""
        return len(set(self.patient_ids))


class PatientBriefs(Model):
    """`patients`: those the caller may see; `withheld`: ids it may not (a physician
    without a care relationship) or that are unknown, shown without a name."""

    patients: list[PatientBrief]
    withheld: list[str]


class ListRecentPatientsRequest(Model):
    limit: int = Field(default=20, ge=1, le=100)


class SearchPatientsRequest(Model):
    """Exactly one criterion: family name + date of birth (the name spelling-tolerant:
    `Schmitt` finds `Schmidt`), or phone (`030 1234567` finds `+49 30 1234567` in the
    clinic's region), or MRN (exact). Never a prefix: that would need the table decrypted."""

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
    value: float = Field(allow_inf_nan=False, ge=-1e6, le=1e6)
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


SubstanceCode = Annotated[
    str,
    Field(
        pattern=SUBSTANCE_CODE_PATTERN,
        examples=["class:penicillins", "ingredient:amoxicillin"],
        description="A substance or drug class of the drug vocabulary "
        "(`records.search_substances`).",
    ),
]


class Allergy(Model):
    """An allergy or intolerance: a substance or class from the drug vocabulary (`code`),
    or free text (`substance` alone), matched against prescriptions by name."""

    substance: ShortText
    code: SubstanceCode | None = Field(
        default=None, description="The vocabulary entry chosen; None for free text."
    )
    reaction: ShortText | None = None
    severity: AllergySeverity = AllergySeverity.unknown
    status: AllergyStatus = AllergyStatus.active

    @property
    def key(self) -> str:
        """What makes two entries the same allergy: the code, else the name (any case)."""
        return self.code or "text:" + " ".join(self.substance.casefold().split())


class AllergyEntry(Allergy):
    """One allergy on the patient's own list, with who recorded and last changed it."""

    allergy_id: str
    recorded_by: str
    recorded_at: datetime
    updated_by: str
    updated_at: datetime
    source_encounter_id: str | None = Field(
        default=None, description="The encounter it was last recorded on, if any."
    )
    observed_at: datetime = Field(
        description="As of when it says what it says: when that encounter occurred, or when "
        "it was recorded or changed on the list. An encounter merges into an entry only if "
        "it occurred later (a visit entered after the fact does not undo newer news)."
    )


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
    expected_version: int = Field(ge=1, le=MAX_VERSION)
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


# ---------------------------------------------------------------------------- summary


class ListAllergiesRequest(Model):
    patient_id: Uuid
    include_inactive: bool = Field(
        default=False, description="Also the resolved and refuted ones (the whole list)."
    )


class AllergyList(Model):
    """The patient's own allergy list (kept up to date; never recomputed from encounters)."""

    patient_id: str
    allergies: list[AllergyEntry]
    version: int = Field(description="Of the whole list (for change_allergy).")


class RecordAllergyRequest(Model):
    patient_id: Uuid
    allergy: Allergy


class ChangeAllergyRequest(Model):
    """Replaces one entry (e.g. its severity; `status` resolved or refuted marks it
    inactive: entries are never deleted)."""

    patient_id: Uuid
    allergy_id: Uuid
    expected_version: int = Field(ge=0, le=MAX_VERSION, description="The list's version.")
    allergy: Allergy


class AllergyWritten(Model):
    patient_id: str
    allergy_id: str
    version: int


class PatientSummaryRequest(Model):
    patient_id: Uuid
    encounters: int = Field(default=10, ge=0, le=50, description="Most recent encounters.")


class PatientSummary(Model):
    """Demographics, recent encounters, active prescriptions and allergies in one call."""

    patient: Patient
    encounters: list[Encounter]
    active_prescriptions: list[Prescription]
    allergies: list[AllergyEntry] = Field(
        description="Active allergies, from the patient's allergy list."
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
    ingredients: list[str] = Field(
        default=[],
        description="Its active ingredients in the drug vocabulary (from `active_ingredient`).",
    )
    classes: list[str] = Field(
        default=[], description="Every drug class of those ingredients (with parent classes)."
    )


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


class SubstanceKind(StrEnum):
    ingredient = "ingredient"
    drug_class = "class"


class Substance(Model):
    """An entry of the drug vocabulary: what allergies are recorded against."""

    code: str = Field(examples=["class:penicillins"])
    kind: SubstanceKind
    name: str = Field(examples=["penicillins"])
    title: str = Field(examples=["penicillins"], description="How it reads in a list.")
    classes: list[str] = Field(default=[], description="Of an ingredient: its classes.")


class SearchSubstancesRequest(Model):
    """Prefix of a word of the name, a synonym or the title (any case)."""

    prefix: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    limit: int = Field(default=20, ge=1, le=100)


class SubstanceList(Model):
    substances: list[Substance]
    notice: str = Field(description="Where the vocabulary comes from (sample data, say so).")


class SearchIcd10Request(Model):
    """Code prefix (`J45`, `e11.9`) or words of the title (`asthma`, `type 2 diab`)."""

    q: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    limit: int = Field(default=20, ge=1, le=50)


class Icd10Entry(Model):
    code: str = Field(examples=["J45.9"])
    title: str = Field(examples=["Asthma, unspecified"])


class Icd10List(Model):
    entries: list[Icd10Entry]
    classification: str = Field(examples=["WHO ICD-10 2019"])


# ---------------------------------------------------------------------------- methods

PATIENTS_TABLE = "patients"
ENCOUNTERS_TABLE = "encounter_versions"
PRESCRIPTIONS_TABLE = "prescriptions"
ALLERGIES_TABLE = "allergy_lists"
BREAK_GLASS_TABLE = "break_glass"
BRIEF_COLUMNS = frozenset({"mrn", "identity"})
"""What a list or search decrypts of a patient: name, birth date, sex and record number."""
PATIENT_FIELDS_AT: tuple[tuple[str, str, str | None], ...] = (
    ("family_name", "identity", "family_name"),
    ("family_sound", "identity", "family_name"),
    ("given_sound", "identity", "given_name"),
    ("given_name", "identity", "given_name"),
    ("date_of_birth", "identity", "date_of_birth"),
    ("phone", "contact", "phone"),
    ("mrn", "mrn", None),
)
"""Where each searchable value is in a patient row's plaintext (column, JSON key), so the
keyvault can check that what it decrypts for a search matches the signed search."""
SEARCH_LIMIT = 50
DUPLICATES_SHOWN = 5
MRN_CANDIDATES = 5
"""Record numbers a registration draws at once (40 random bits each; a clash is rare)."""
_DEMOGRAPHIC_TERMS = (
    ("family_name", "demographics.family_name"),
    ("given_name", "demographics.given_name"),
    ("date_of_birth", "demographics.date_of_birth"),
    ("phone", "demographics.phone"),
    ("family_sound", "demographics.family_name"),
    ("family_sound_alt", "demographics.family_name"),
)
_SIMILAR_TERMS = (
    ("family_sound", "demographics.family_name"),
    ("given_sound", "demographics.given_name"),
    ("date_of_birth", "demographics.date_of_birth"),
)
"""A possible duplicate: family and given names that sound alike (Double Metaphone) and
the same birth date (twins of other names are not flagged)."""
_CHART = frozenset({PATIENTS_TABLE, ENCOUNTERS_TABLE, PRESCRIPTIONS_TABLE, ALLERGIES_TABLE})
ALLERGY_COLUMN = "allergies"
"""The column of an allergy list, and of an encounter version, that holds allergies."""
_ALLERGY_SOURCES = frozenset({ALLERGIES_TABLE, ENCOUNTERS_TABLE})
"""An allergy list, or (once per patient, before the list exists) the encounters it is
built from."""

PATIENT_REF = RpcMethod(
    SERVICE,
    "records.patient_ref",
    PatientRefRequest,
    PatientRef,
    callers=frozenset({"scheduling"}),
)
"""Services check a patient exists; answers without decrypting anything."""

CREATE_PATIENT = RpcMethod(
    SERVICE,
    "records.create_patient",
    CreatePatientRequest,
    PatientWritten,
    write=True,
    roles=DESK,
    route=HttpRoute(
        "POST",
        "/patients",
        status=201,
        summary="Register a patient; a possible duplicate (names that sound alike and the same "
        "birth date) answers 409 with the existing records' names and numbers unless "
        "`confirm_duplicate` is true.",
    ),
    grant=Grant(
        blind_index=BlindIndex(terms=_DEMOGRAPHIC_TERMS, free_mrns=MRN_CANDIDATES),
        # The possible-duplicate check shows the names and numbers of similar records.
        decrypt=Decrypt(
            tables=frozenset({PATIENTS_TABLE}),
            columns=BRIEF_COLUMNS,
            match=Match(terms=_SIMILAR_TERMS, where=PATIENT_FIELDS_AT),
            max_rows=DUPLICATES_SHOWN,
        ),
    ),
)
UPDATE_PATIENT = RpcMethod(
    SERVICE,
    "records.update_patient",
    UpdatePatientRequest,
    PatientWritten,
    write=True,
    roles=DESK,
    route=HttpRoute("PUT", "/patients/{patient_id}"),
    grant=Grant(blind_index=BlindIndex(terms=_DEMOGRAPHIC_TERMS)),
)
SET_CLINICAL_FLAGS = RpcMethod(
    SERVICE,
    "records.set_clinical_flags",
    SetClinicalFlagsRequest,
    PatientWritten,
    write=True,
    roles=CLINICAL,
    route=HttpRoute("PUT", "/patients/{patient_id}/clinical-flags"),
)
GET_PATIENT = RpcMethod(
    SERVICE,
    "records.get_patient",
    GetPatientRequest,
    Patient,
    roles=PATIENT_READERS,
    route=HttpRoute("GET", "/patients/{patient_id}", patient_data=True),
    grant=Grant(decrypt=Decrypt(tables=frozenset({PATIENTS_TABLE}), patient="patient_id")),
)
LIST_RECENT_PATIENTS = RpcMethod(
    SERVICE,
    "records.list_recent_patients",
    ListRecentPatientsRequest,
    PatientList,
    roles=PATIENT_READERS,
    route=HttpRoute("GET", "/patients", query=("limit",), patient_data=True),
    grant=Grant(
        decrypt=Decrypt(tables=frozenset({PATIENTS_TABLE}), columns=BRIEF_COLUMNS, max_rows="limit")
    ),
)
PATIENT_BRIEFS = RpcMethod(
    SERVICE,
    "records.patient_briefs",
    PatientBriefsRequest,
    PatientBriefs,
    roles=PATIENT_READERS,
    route=HttpRoute(
        "POST",
        "/patients/briefs",
        patient_data=True,
        summary="Names, birth dates and record numbers of the patients a list shows (up to "
        f"{BRIEFS_MAX}), in one read: the same rule as reading one patient (a physician: "
        "only patients in their care; the others come back in `withheld`).",
    ),
    grant=Grant(
        decrypt=Decrypt(
            tables=frozenset({PATIENTS_TABLE}),
            patient_in="patient_ids",
            columns=BRIEF_COLUMNS,
            max_rows="count",
        )
    ),
)
SEARCH_PATIENTS = RpcMethod(
    SERVICE,
    "records.search_patients",
    SearchPatientsRequest,
    PatientList,
    roles=PATIENT_READERS,
    route=HttpRoute(
        "GET",
        "/patients/search",
        query=("family_name", "date_of_birth", "phone", "mrn"),
        patient_data=True,
        summary="By family name (spelling-tolerant: names that sound alike, exact ones first) "
        "+ date of birth, by phone (any format of the number), or by record number.",
    ),
    grant=Grant(
        blind_index=BlindIndex(
            terms=(
                ("family_name", "family_name"),
                ("family_sound", "family_name"),
                ("family_sound_alt", "family_name"),
                ("date_of_birth", "date_of_birth"),
                ("phone", "phone"),
                ("phone_digits", "phone"),
                ("mrn", "mrn"),
            )
        ),
        decrypt=Decrypt(
            tables=frozenset({PATIENTS_TABLE}),
            columns=BRIEF_COLUMNS,
            match=Match(
                terms=(
                    ("family_sound", "family_name"),
                    ("date_of_birth", "date_of_birth"),
                    ("phone", "phone"),
                    ("mrn", "mrn"),
                ),
                where=PATIENT_FIELDS_AT,
            ),
            max_rows=SEARCH_LIMIT,
        ),
    ),
)

ADD_ENCOUNTER = RpcMethod(
    SERVICE,
    "records.add_encounter",
    AddEncounterRequest,
    EncounterWritten,
    write=True,
    roles=CLINICAL,
    route=HttpRoute(
        "POST",
        "/patients/{patient_id}/encounters",
        status=201,
        summary="Allergies recorded on it are merged into the patient's allergy list.",
    ),
    # Merging allergies into the list reads the list (or builds it, once).
    grant=Grant(
        decrypt=Decrypt(
            tables=_ALLERGY_SOURCES, patient="patient_id", columns=frozenset({ALLERGY_COLUMN})
        )
    ),
)
AMEND_ENCOUNTER = RpcMethod(
    SERVICE,
    "records.amend_encounter",
    AmendEncounterRequest,
    EncounterWritten,
    write=True,
    roles=CLINICAL,
    route=HttpRoute(
        "POST",
        "/encounters/{encounter_id}/amend",
        summary="A new version; the old one is kept, with who amended it and why.",
    ),
    grant=Grant(
        decrypt=Decrypt(
            tables=_ALLERGY_SOURCES, one_patient=True, columns=frozenset({ALLERGY_COLUMN})
        )
    ),
)
GET_ENCOUNTER = RpcMethod(
    SERVICE,
    "records.get_encounter",
    GetEncounterRequest,
    EncounterHistory,
    roles=CLINICAL,
    route=HttpRoute(
        "GET", "/encounters/{encounter_id}", query=("include_versions",), patient_data=True
    ),
    grant=Grant(
        decrypt=Decrypt(
            tables=frozenset({ENCOUNTERS_TABLE}), row_id="encounter_id", one_patient=True
        )
    ),
)
LIST_ENCOUNTERS = RpcMethod(
    SERVICE,
    "records.list_encounters",
    ListEncountersRequest,
    EncounterList,
    roles=CLINICAL,
    route=HttpRoute(
        "GET", "/patients/{patient_id}/encounters", query=("limit", "before"), patient_data=True
    ),
    grant=Grant(decrypt=Decrypt(tables=frozenset({ENCOUNTERS_TABLE}), patient="patient_id")),
)

_SAFETY_CHECK = Grant(
    decrypt=Decrypt(
        tables=_ALLERGY_SOURCES | {PRESCRIPTIONS_TABLE},
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

PATIENT_SUMMARY = RpcMethod(
    SERVICE,
    "records.patient_summary",
    PatientSummaryRequest,
    PatientSummary,
    roles=CLINICAL,
    route=HttpRoute(
        "GET",
        "/patients/{patient_id}/summary",
        query=("encounters",),
        patient_data=True,
        summary="Demographics, recent encounters, active prescriptions and allergies, in one call.",
    ),
    grant=Grant(decrypt=Decrypt(tables=_CHART, patient="patient_id")),
)

LIST_ALLERGIES = RpcMethod(
    SERVICE,
    "records.list_allergies",
    ListAllergiesRequest,
    AllergyList,
    roles=CLINICAL,
    route=HttpRoute(
        "GET",
        "/patients/{patient_id}/allergies",
        query=("include_inactive",),
        patient_data=True,
    ),
    grant=Grant(
        decrypt=Decrypt(
            tables=_ALLERGY_SOURCES, patient="patient_id", columns=frozenset({ALLERGY_COLUMN})
        )
    ),
)
RECORD_ALLERGY = RpcMethod(
    SERVICE,
    "records.record_allergy",
    RecordAllergyRequest,
    AllergyWritten,
    write=True,
    roles=CLINICAL,
    route=HttpRoute(
        "POST",
        "/patients/{patient_id}/allergies",
        status=201,
        summary="Add an allergy to the list; one already listed (same substance) is a 409.",
    ),
    grant=LIST_ALLERGIES.grant,
)
CHANGE_ALLERGY = RpcMethod(
    SERVICE,
    "records.change_allergy",
    ChangeAllergyRequest,
    AllergyWritten,
    write=True,
    roles=CLINICAL,
    route=HttpRoute(
        "PUT",
        "/patients/{patient_id}/allergies/{allergy_id}",
        summary="Change an entry, or mark it resolved or refuted (entries are never deleted).",
    ),
    grant=LIST_ALLERGIES.grant,
)

PATIENT_DATA_METHODS = (
    CREATE_PATIENT,
    UPDATE_PATIENT,
    SET_CLINICAL_FLAGS,
    GET_PATIENT,
    LIST_RECENT_PATIENTS,
    PATIENT_BRIEFS,
    SEARCH_PATIENTS,
    ADD_ENCOUNTER,
    AMEND_ENCOUNTER,
    GET_ENCOUNTER,
    LIST_ENCOUNTERS,
    CHECK_PRESCRIPTION,
    PRESCRIBE,
    CANCEL_PRESCRIPTION,
    COMPLETE_PRESCRIPTION,
    GET_PRESCRIPTION,
    LIST_PRESCRIPTIONS,
    VERIFY_PRESCRIPTION,
    PATIENT_SUMMARY,
    LIST_ALLERGIES,
    RECORD_ALLERGY,
    CHANGE_ALLERGY,
)
"""Every method that reads or writes patient data (all but PATIENT_REF)."""

CATALOG_ADMIN = frozenset({Role.administrator})
CATALOG_READERS = frozenset({Role.administrator, Role.physician})
ADD_MEDICINE = RpcMethod(
    SERVICE,
    "records.add_medicine",
    AddMedicineRequest,
    Medicine,
    write=True,
    roles=CATALOG_ADMIN,
    route=HttpRoute("POST", "/catalog/medicines", status=201),
)
UPDATE_MEDICINE = RpcMethod(
    SERVICE,
    "records.update_medicine",
    UpdateMedicineRequest,
    Medicine,
    write=True,
    roles=CATALOG_ADMIN,
    route=HttpRoute(
        "PUT",
        "/catalog/medicines/{medicine_id}",
        summary="Edit an entry; prescriptions already signed keep the details they copied.",
    ),
)
RETIRE_MEDICINE = RpcMethod(
    SERVICE,
    "records.retire_medicine",
    RetireMedicineRequest,
    Medicine,
    write=True,
    roles=CATALOG_ADMIN,
    route=HttpRoute(
        "POST",
        "/catalog/medicines/{medicine_id}/retire",
        summary="No new prescriptions of it; existing ones are unaffected.",
    ),
)
GET_MEDICINE = RpcMethod(
    SERVICE,
    "records.get_medicine",
    GetMedicineRequest,
    Medicine,
    roles=CATALOG_READERS,
    route=HttpRoute("GET", "/catalog/medicines/{medicine_id}"),
)
SEARCH_MEDICINES = RpcMethod(
    SERVICE,
    "records.search_medicines",
    SearchMedicinesRequest,
    MedicineList,
    roles=CATALOG_READERS,
    route=HttpRoute(
        "GET",
        "/catalog/medicines",
        query=("prefix", "type", "include_retired", "limit"),
        summary="By prefix of the name or the active ingredient (any case), and/or by type.",
    ),
)
SEARCH_SUBSTANCES = RpcMethod(
    SERVICE,
    "records.search_substances",
    SearchSubstancesRequest,
    SubstanceList,
    roles=CATALOG_READERS,
    route=HttpRoute(
        "GET",
        "/catalog/substances",
        query=("prefix", "limit"),
        summary="The drug vocabulary (ingredients and classes) that allergies are recorded "
        "against, by prefix of any word.",
    ),
)
SEARCH_ICD10 = RpcMethod(
    SERVICE,
    "records.search_icd10",
    SearchIcd10Request,
    Icd10List,
    roles=CLINICAL,
    route=HttpRoute(
        "GET",
        "/icd10",
        query=("q", "limit"),
        summary="Diagnoses of the WHO ICD-10 classification by code prefix or title words; "
        "encounters accept only codes of it.",
    ),
)
CATALOG_METHODS = (
    ADD_MEDICINE,
    UPDATE_MEDICINE,
    RETIRE_MEDICINE,
    GET_MEDICINE,
    SEARCH_MEDICINES,
    SEARCH_SUBSTANCES,
    SEARCH_ICD10,
)
"""Vocabularies, no patient data: the medicine catalog (administrators edit it, physicians
search it), the drug vocabulary and the ICD-10 classification."""


# ---------------------------------------------------------------------------- per-patient access

ACCESS_SERVICE = "recordsaccess"
"""Records' access decisions, on a queue of their own: the keyvault asks while a records
handler is waiting for that very keyvault call, so they must not share records' slots."""
CLINICAL_TABLES = (ENCOUNTERS_TABLE, PRESCRIPTIONS_TABLE, ALLERGIES_TABLE)
"""Keyvault tables holding clinical data: decrypting them needs a care relationship."""


class CareBasis(StrEnum):
    encounter = "encounter"
    appointment = "appointment"
    break_glass = "break_glass"


class MayReadRequest(Model):
    physician_id: str = Field(max_length=64)
    patient_id: str = Field(max_length=64)
    break_glass_only: bool = Field(
        default=False,
        description="Only an open break-glass grant counts (off duty: `contracts.attendance`).",
    )


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


MAY_READ = RpcMethod(
    ACCESS_SERVICE,
    "recordsaccess.may_read",
    MayReadRequest,
    MayReadReply,
    callers=frozenset({"keyvault", GATEWAY}),  # the gateway: break-glass off duty (attendance)
)
BREAK_GLASS = RpcMethod(
    SERVICE,
    "records.break_glass",
    BreakGlassRequest,
    BreakGlassOpened,
    write=True,
    roles=CLINICAL,
    route=HttpRoute(
        "POST",
        "/patients/{patient_id}/break-glass",
        status=201,
        summary="Open a chart without a care relationship, in an emergency: time-limited, "
        "audited (ETREAT) and reported to administrators.",
    ),
)
BREAK_GLASS_REPORT = RpcMethod(
    SERVICE,
    "records.break_glass_report",
    BreakGlassReportRequest,
    BreakGlassReport,
    roles=CATALOG_ADMIN,
    route=HttpRoute("GET", "/break-glass", query=("unacknowledged_only", "limit")),
    grant=Grant(
        decrypt=Decrypt(
            tables=frozenset({BREAK_GLASS_TABLE}), columns=frozenset({"reason"}), max_rows="limit"
        )
    ),
)
ACKNOWLEDGE_BREAK_GLASS = RpcMethod(
    SERVICE,
    "records.acknowledge_break_glass",
    AcknowledgeBreakGlassRequest,
    BreakGlassGrant,
    write=True,
    roles=CATALOG_ADMIN,
    route=HttpRoute("POST", "/break-glass/{grant_id}/acknowledge"),
    grant=Grant(
        decrypt=Decrypt(
            tables=frozenset({BREAK_GLASS_TABLE}), columns=frozenset({"reason"}), row_id="grant_id"
        )
    ),
)
BREAK_GLASS_OPENED = EventType(
    "records.break_glass.opened", BreakGlassNotice, publishers=frozenset({SERVICE})
)
