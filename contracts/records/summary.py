"""The allergy list and the patient summary (a physician's first look at a chart)."""

from __future__ import annotations

from pydantic import Field

from contracts.base import HttpRoute, Model, RpcMethod
from contracts.grants import Decrypt, Grant
from contracts.records.common import CLINICAL, MAX_VERSION, SERVICE, Uuid
from contracts.records.encounters import Allergy, AllergyEntry, Encounter
from contracts.records.patients import Patient
from contracts.records.prescriptions import Prescription
from contracts.records.tables import ALLERGY_COLUMN, ALLERGY_SOURCES, CHART


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
    grant=Grant(decrypt=Decrypt(tables=CHART, patient="patient_id")),
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
            tables=ALLERGY_SOURCES, patient="patient_id", columns=frozenset({ALLERGY_COLUMN})
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
