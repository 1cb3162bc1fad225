"""Encounters: vital signs, diagnoses, allergies noted in a visit, and their versions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Literal, Self

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from contracts.base import HttpRoute, Model, RpcMethod
from contracts.grants import Decrypt, Grant
from contracts.records.common import (
    CLINICAL,
    MAX_ALLERGIES,
    MAX_DIAGNOSES,
    MAX_VERSION,
    SERVICE,
    SUBSTANCE_CODE_PATTERN,
    Icd10Code,
    LongText,
    PastDatetime,
    Reason,
    ShortText,
    UtcDatetime,
    Uuid,
    multiline,
)
from contracts.records.tables import ALLERGY_COLUMN, ALLERGY_SOURCES, ENCOUNTERS_TABLE


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
        AfterValidator(multiline),
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
            tables=ALLERGY_SOURCES, patient="patient_id", columns=frozenset({ALLERGY_COLUMN})
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
            tables=ALLERGY_SOURCES, one_patient=True, columns=frozenset({ALLERGY_COLUMN})
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
