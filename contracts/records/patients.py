"""Patients: demographics, registration, search and record numbers."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from contracts.base import HttpRoute, Model, RpcMethod
from contracts.grants import BlindIndex, Decrypt, Grant, Match
from contracts.records.common import (
    CLINICAL,
    DESK,
    MAX_VERSION,
    PATIENT_READERS,
    SERVICE,
    BirthDate,
    Email,
    MrnQuery,
    Name,
    Phone,
    ShortText,
    Uuid,
    single_line,
)
from contracts.records.tables import (
    BRIEF_COLUMNS,
    DEMOGRAPHIC_TERMS,
    DUPLICATES_SHOWN,
    MRN_CANDIDATES,
    PATIENT_FIELDS_AT,
    PATIENTS_TABLE,
    SEARCH_LIMIT,
    SIMILAR_TERMS,
)


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
        AfterValidator(single_line),
    ]
    phone: Phone


class Insurance(Model):
    company: ShortText
    member_id: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
        AfterValidator(single_line),
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
        blind_index=BlindIndex(terms=DEMOGRAPHIC_TERMS, free_mrns=MRN_CANDIDATES),
        # The possible-duplicate check shows the names and numbers of similar records.
        decrypt=Decrypt(
            tables=frozenset({PATIENTS_TABLE}),
            columns=BRIEF_COLUMNS,
            match=Match(terms=SIMILAR_TERMS, where=PATIENT_FIELDS_AT),
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
    grant=Grant(blind_index=BlindIndex(terms=DEMOGRAPHIC_TERMS)),
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
