"""The FHIR reads (`contracts.fhir`), served by the reads records already has.

Each FHIR interaction is its own signed operation (the user signed the FHIR URL), so it
is its own method; its handler is the existing read, given the request that read takes.
Access rule, decryption (under the FHIR method's own grant), integrity checks and audit
are therefore exactly those of the API; the reply is the API's model, which the gateway
maps to FHIR resources (`mesh.fhirmap`, the one mapping).
"""

from __future__ import annotations

from contracts import fhir
from contracts import records as rec
from mesh.context import CallContext
from services.records import allergies, encounters, patients, prescriptions, summary


async def patient(req: fhir.PatientRead, ctx: CallContext) -> rec.Patient:
    request = rec.GetPatientRequest(patient_id=req.patient_id)
    return await patients.get_patient(request, ctx, columns=fhir.PATIENT_COLUMNS)


async def patient_search(req: fhir.PatientSearch, ctx: CallContext) -> rec.PatientList:
    """Exact: the keyvault returns only patients whose family name is the signed one (a
    name that merely sounds alike does not decrypt for this search)."""
    search = rec.SearchPatientsRequest(
        family_name=req.family,
        date_of_birth=req.birthdate,
        phone=req.phone,
        mrn=req.identifier,
    )
    return await patients.search_patients(search, ctx)


async def encounter_search(req: fhir.ClinicalSearch, ctx: CallContext) -> rec.EncounterList:
    """Encounters, and the Conditions and Observations made of them (latest first)."""
    request = rec.ListEncountersRequest(patient_id=req.patient, limit=fhir.ENCOUNTERS_SEARCHED)
    return await encounters.list_encounters(request, ctx)


async def encounter(req: fhir.EncounterRead, ctx: CallContext) -> rec.EncounterHistory:
    request = rec.GetEncounterRequest(encounter_id=req.encounter_id)
    return await encounters.get_encounter(request, ctx)


async def condition(req: fhir.ConditionRead, ctx: CallContext) -> rec.EncounterHistory:
    """The encounter the Condition is a diagnosis of (the gateway picks the diagnosis)."""
    return await encounters.get_encounter(
        rec.GetEncounterRequest(encounter_id=req.encounter_id), ctx
    )


async def observation(req: fhir.ObservationRead, ctx: CallContext) -> rec.EncounterHistory:
    return await encounters.get_encounter(
        rec.GetEncounterRequest(encounter_id=req.encounter_id), ctx
    )


async def allergy_search(req: fhir.ClinicalSearch, ctx: CallContext) -> rec.AllergyList:
    """Every entry of the list, resolved and refuted ones too (with their status)."""
    request = rec.ListAllergiesRequest(patient_id=req.patient, include_inactive=True)
    return await allergies.list_allergies(request, ctx)


async def medication_request_search(
    req: fhir.ClinicalSearch, ctx: CallContext
) -> rec.PrescriptionList:
    request = rec.ListPrescriptionsRequest(patient_id=req.patient)
    return await prescriptions.list_prescriptions(request, ctx)


async def medication_request(req: fhir.MedicationRequestRead, ctx: CallContext) -> rec.Prescription:
    request = rec.GetPrescriptionRequest(prescription_id=req.prescription_id)
    return await prescriptions.get_prescription(request, ctx)


async def provenance(req: fhir.ProvenanceRead, ctx: CallContext) -> rec.Prescription:
    request = rec.GetPrescriptionRequest(prescription_id=req.prescription_id)
    return await prescriptions.get_prescription(request, ctx)


async def everything(req: fhir.Everything, ctx: CallContext) -> rec.PatientSummary:
    request = rec.PatientSummaryRequest(
        patient_id=req.patient_id, encounters=fhir.EVERYTHING_ENCOUNTERS
    )
    return await summary.patient_summary(request, ctx)
