"""Patients, clinical history and e-prescriptions.

Receptionists register, search and read demographics; physicians read and write
everything clinical; administrators see no patient data. Reads of patient data draw from
the stricter per-account bucket. Identifiers in paths and queries are checked by the
contract's own models (`rpc_request`), so a bad one is a 422 naming the field.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from contracts import records as rec
from gateway.deps import relay, rpc_request, signed
from gateway.security import Caller

router = APIRouter(tags=["records"])
caller = Depends(signed())
reader = Depends(signed(patient_data=True))


# ------------------------------------------------------------------ patients


@router.post("/patients", response_model=rec.PatientWritten, status_code=201)
async def create_patient(
    body: rec.CreatePatientRequest, request: Request, who: Caller = caller
) -> Response:
    """Register a patient; a possible duplicate (same name and birth date) answers 409 with
    the existing record's number unless `confirm_duplicate` is true."""
    return await relay(request, who, rec.CREATE_PATIENT, body)


@router.get("/patients", response_model=rec.PatientList)
async def recent_patients(
    request: Request, limit: int = Query(default=20, ge=1, le=100), who: Caller = reader
) -> Response:
    return await relay(
        request, who, rec.LIST_RECENT_PATIENTS, rec.ListRecentPatientsRequest(limit=limit)
    )


@router.get("/patients/search", response_model=rec.PatientList)
async def search_patients(
    request: Request,
    family_name: str | None = Query(default=None, max_length=200),
    date_of_birth: str | None = Query(default=None, max_length=10),
    phone: str | None = Query(default=None, max_length=40),
    mrn: str | None = Query(default=None, max_length=40),
    who: Caller = reader,
) -> Response:
    """Exact match by family name + date of birth, by phone, or by record number."""
    query = rpc_request(
        rec.SearchPatientsRequest,
        family_name=family_name,
        date_of_birth=date_of_birth,
        phone=phone,
        mrn=mrn,
    )
    return await relay(request, who, rec.SEARCH_PATIENTS, query)


@router.get("/patients/{patient_id}", response_model=rec.Patient)
async def get_patient(patient_id: str, request: Request, who: Caller = reader) -> Response:
    return await relay(
        request, who, rec.GET_PATIENT, rpc_request(rec.GetPatientRequest, patient_id=patient_id)
    )


class DemographicsUpdate(BaseModel):
    expected_version: int
    demographics: rec.Demographics


@router.put("/patients/{patient_id}", response_model=rec.PatientWritten)
async def update_patient(
    patient_id: str, body: DemographicsUpdate, request: Request, who: Caller = caller
) -> Response:
    return await relay(
        request,
        who,
        rec.UPDATE_PATIENT,
        rpc_request(rec.UpdatePatientRequest, patient_id=patient_id, **_fields(body)),
    )


class Flags(BaseModel):
    flags: list[rec.ClinicalFlag]


@router.put("/patients/{patient_id}/clinical-flags", response_model=rec.PatientWritten)
async def set_flags(
    patient_id: str, body: Flags, request: Request, who: Caller = caller
) -> Response:
    return await relay(
        request,
        who,
        rec.SET_CLINICAL_FLAGS,
        rpc_request(rec.SetClinicalFlagsRequest, patient_id=patient_id, flags=body.flags),
    )


@router.get("/patients/{patient_id}/summary", response_model=rec.PatientSummary)
async def summary(
    patient_id: str,
    request: Request,
    encounters: int = Query(default=10, ge=0, le=50),
    who: Caller = reader,
) -> Response:
    """Demographics, recent encounters, active prescriptions and allergies, in one call."""
    return await relay(
        request,
        who,
        rec.PATIENT_SUMMARY,
        rpc_request(rec.PatientSummaryRequest, patient_id=patient_id, encounters=encounters),
    )


# ------------------------------------------------------------------ encounters


class NewEncounter(BaseModel):
    content: rec.EncounterContent


@router.post(
    "/patients/{patient_id}/encounters", response_model=rec.EncounterWritten, status_code=201
)
async def add_encounter(
    patient_id: str, body: NewEncounter, request: Request, who: Caller = caller
) -> Response:
    return await relay(
        request,
        who,
        rec.ADD_ENCOUNTER,
        rpc_request(rec.AddEncounterRequest, patient_id=patient_id, content=body.content),
    )


@router.get("/patients/{patient_id}/encounters", response_model=rec.EncounterList)
async def list_encounters(
    patient_id: str,
    request: Request,
    limit: int = Query(default=20, ge=1, le=100),
    before: str | None = Query(default=None, max_length=40),
    who: Caller = reader,
) -> Response:
    return await relay(
        request,
        who,
        rec.LIST_ENCOUNTERS,
        rpc_request(rec.ListEncountersRequest, patient_id=patient_id, limit=limit, before=before),
    )


class Amendment(BaseModel):
    expected_version: int
    reason: str
    content: rec.EncounterContent


@router.post("/encounters/{encounter_id}/amend", response_model=rec.EncounterWritten)
async def amend_encounter(
    encounter_id: str, body: Amendment, request: Request, who: Caller = caller
) -> Response:
    """A new version; the old one is kept, with who amended it and why."""
    return await relay(
        request,
        who,
        rec.AMEND_ENCOUNTER,
        rpc_request(rec.AmendEncounterRequest, encounter_id=encounter_id, **_fields(body)),
    )


@router.get("/encounters/{encounter_id}", response_model=rec.EncounterHistory)
async def get_encounter(
    encounter_id: str,
    request: Request,
    include_versions: bool = Query(default=False),
    who: Caller = reader,
) -> Response:
    return await relay(
        request,
        who,
        rec.GET_ENCOUNTER,
        rpc_request(
            rec.GetEncounterRequest, encounter_id=encounter_id, include_versions=include_versions
        ),
    )


# ------------------------------------------------------------------ prescriptions


@router.post("/prescriptions", response_model=rec.PrescriptionWritten, status_code=201)
async def prescribe(body: rec.PrescribeRequest, request: Request, who: Caller = caller) -> Response:
    """An e-prescription signed by the physician's client (see `canonical_prescription`)."""
    return await relay(request, who, rec.PRESCRIBE, body)


@router.get("/patients/{patient_id}/prescriptions", response_model=rec.PrescriptionList)
async def list_prescriptions(
    patient_id: str,
    request: Request,
    status: rec.PrescriptionStatus | None = Query(default=None),
    who: Caller = reader,
) -> Response:
    return await relay(
        request,
        who,
        rec.LIST_PRESCRIPTIONS,
        rpc_request(rec.ListPrescriptionsRequest, patient_id=patient_id, status=status),
    )


@router.get("/prescriptions/{prescription_id}", response_model=rec.Prescription)
async def get_prescription(
    prescription_id: str, request: Request, who: Caller = reader
) -> Response:
    return await relay(
        request,
        who,
        rec.GET_PRESCRIPTION,
        rpc_request(rec.GetPrescriptionRequest, prescription_id=prescription_id),
    )


@router.get("/prescriptions/{prescription_id}/verify", response_model=rec.PrescriptionVerification)
async def verify_prescription(
    prescription_id: str, request: Request, who: Caller = reader
) -> Response:
    """Check the stored row's MAC and the prescriber's signature again."""
    return await relay(
        request,
        who,
        rec.VERIFY_PRESCRIPTION,
        rpc_request(rec.VerifyPrescriptionRequest, prescription_id=prescription_id),
    )


class CancelReason(BaseModel):
    reason: str


@router.post("/prescriptions/{prescription_id}/cancel", response_model=rec.PrescriptionWritten)
async def cancel_prescription(
    prescription_id: str, body: CancelReason, request: Request, who: Caller = caller
) -> Response:
    return await relay(
        request,
        who,
        rec.CANCEL_PRESCRIPTION,
        rpc_request(
            rec.CancelPrescriptionRequest, prescription_id=prescription_id, reason=body.reason
        ),
    )


@router.post("/prescriptions/{prescription_id}/complete", response_model=rec.PrescriptionWritten)
async def complete_prescription(
    prescription_id: str, request: Request, who: Caller = caller
) -> Response:
    return await relay(
        request,
        who,
        rec.COMPLETE_PRESCRIPTION,
        rpc_request(rec.CompletePrescriptionRequest, prescription_id=prescription_id),
    )


def _fields(body: BaseModel) -> dict[str, Any]:
    return {name: getattr(body, name) for name in type(body).model_fields}


# ------------------------------------------------------------------ break-glass


class Emergency(BaseModel):
    reason: str


@router.post(
    "/patients/{patient_id}/break-glass", response_model=rec.BreakGlassOpened, status_code=201
)
async def break_glass(
    patient_id: str, body: Emergency, request: Request, who: Caller = caller
) -> Response:
    """Open a chart without a care relationship, in an emergency: time-limited, audited
    (ETREAT) and reported to administrators."""
    return await relay(
        request,
        who,
        rec.BREAK_GLASS,
        rpc_request(rec.BreakGlassRequest, patient_id=patient_id, reason=body.reason),
    )


@router.get("/break-glass", response_model=rec.BreakGlassReport)
async def break_glass_report(
    request: Request,
    unacknowledged_only: bool = Query(default=False),
    limit: int = Query(default=100, ge=1, le=500),
    who: Caller = caller,
) -> Response:
    query = rec.BreakGlassReportRequest(unacknowledged_only=unacknowledged_only, limit=limit)
    return await relay(request, who, rec.BREAK_GLASS_REPORT, query)


class Acknowledgement(BaseModel):
    note: str = ""


@router.post("/break-glass/{grant_id}/acknowledge", response_model=rec.BreakGlassGrant)
async def acknowledge(
    grant_id: str, body: Acknowledgement, request: Request, who: Caller = caller
) -> Response:
    return await relay(
        request,
        who,
        rec.ACKNOWLEDGE_BREAK_GLASS,
        rpc_request(rec.AcknowledgeBreakGlassRequest, grant_id=grant_id, note=body.note),
    )
