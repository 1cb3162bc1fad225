"""Wire contracts of the records service: patients, clinical history, e-prescriptions."""

from __future__ import annotations

from pydantic import Field

from contracts.base import Model, RpcMethod

SERVICE = "records"


class PatientRefRequest(Model):
    patient_id: str = Field(max_length=64)


class PatientRef(Model):
    """Whether a patient exists, without any patient data (for other services' checks)."""

    patient_id: str
    exists: bool
    mrn: str | None = None


PATIENT_REF = RpcMethod(SERVICE, "records.patient_ref", PatientRefRequest, PatientRef)
