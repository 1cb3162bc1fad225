"""RPC handlers of the records service: one registration per method of contracts.records.

The handlers themselves live by subject: `patients`, `encounters`, `allergies`,
`prescribing` (the safety check, new prescriptions), `prescriptions` (the rest of their
life), `summary`, `catalog`, `vocabulary` (drugs, ICD-10), `care` (break-glass), `fhir` (the
FHIR reads, served by the reads above); ping is answered by the shared runtime.
"""

from __future__ import annotations

from contracts import fhir
from contracts import fhirexport as fx
from contracts import records as rec
from mesh.rpc import RpcRouter
from services.records import (
    allergies,
    care,
    catalog,
    encounters,
    export,
    patients,
    prescribing,
    prescriptions,
    summary,
    vocabulary,
)
from services.records import fhir as fhir_views

router = RpcRouter(rec.SERVICE)

router.handler(rec.PATIENT_REF)(patients.patient_ref)
router.handler(rec.CREATE_PATIENT)(patients.create_patient)
router.handler(rec.UPDATE_PATIENT)(patients.update_patient)
router.handler(rec.SET_CLINICAL_FLAGS)(patients.set_clinical_flags)
router.handler(rec.GET_PATIENT)(patients.get_patient)
router.handler(rec.LIST_RECENT_PATIENTS)(patients.list_recent_patients)
router.handler(rec.PATIENT_BRIEFS)(patients.patient_briefs)
router.handler(rec.SEARCH_PATIENTS)(patients.search_patients)

router.handler(rec.ADD_ENCOUNTER)(encounters.add_encounter)
router.handler(rec.AMEND_ENCOUNTER)(encounters.amend_encounter)
router.handler(rec.GET_ENCOUNTER)(encounters.get_encounter)
router.handler(rec.LIST_ENCOUNTERS)(encounters.list_encounters)

router.handler(rec.LIST_ALLERGIES)(allergies.list_allergies)
router.handler(rec.RECORD_ALLERGY)(allergies.record_allergy)
router.handler(rec.CHANGE_ALLERGY)(allergies.change_allergy)

router.handler(rec.CHECK_PRESCRIPTION)(prescribing.check_prescription)
router.handler(rec.PRESCRIBE)(prescribing.prescribe)
router.handler(rec.CANCEL_PRESCRIPTION)(prescriptions.cancel_prescription)
router.handler(rec.COMPLETE_PRESCRIPTION)(prescriptions.complete_prescription)
router.handler(rec.GET_PRESCRIPTION)(prescriptions.get_prescription)
router.handler(rec.LIST_PRESCRIPTIONS)(prescriptions.list_prescriptions)
router.handler(rec.VERIFY_PRESCRIPTION)(prescriptions.verify_prescription)

router.handler(rec.PATIENT_SUMMARY)(summary.patient_summary)

router.handler(rec.ADD_MEDICINE)(catalog.add_medicine)
router.handler(rec.UPDATE_MEDICINE)(catalog.update_medicine)
router.handler(rec.RETIRE_MEDICINE)(catalog.retire_medicine)
router.handler(rec.GET_MEDICINE)(catalog.get_medicine)
router.handler(rec.SEARCH_MEDICINES)(catalog.search_medicines)
router.handler(rec.SEARCH_SUBSTANCES)(vocabulary.search_substances)
router.handler(rec.SEARCH_ICD10)(vocabulary.search_icd10)

router.handler(rec.BREAK_GLASS)(care.break_glass)
router.handler(rec.BREAK_GLASS_REPORT)(care.break_glass_report)
router.handler(rec.ACKNOWLEDGE_BREAK_GLASS)(care.acknowledge)

router.handler(fhir.PATIENT_READ)(fhir_views.patient)
router.handler(fhir.PATIENT_SEARCH)(fhir_views.patient_search)
router.handler(fhir.EVERYTHING)(fhir_views.everything)
router.handler(fhir.ENCOUNTER_READ)(fhir_views.encounter)
router.handler(fhir.ENCOUNTER_SEARCH)(fhir_views.encounter_search)
router.handler(fhir.CONDITION_SEARCH)(fhir_views.encounter_search)
router.handler(fhir.CONDITION_READ)(fhir_views.condition)
router.handler(fhir.OBSERVATION_SEARCH)(fhir_views.encounter_search)
router.handler(fhir.OBSERVATION_READ)(fhir_views.observation)
router.handler(fhir.PROVENANCE_READ)(fhir_views.provenance)
router.handler(fhir.ALLERGY_SEARCH)(fhir_views.allergy_search)
router.handler(fhir.MEDICATION_REQUEST_READ)(fhir_views.medication_request)
router.handler(fhir.MEDICATION_REQUEST_SEARCH)(fhir_views.medication_request_search)

router.handler(fx.PATIENT_EXPORT)(export.patient_export)
router.handler(fx.GROUP_EXPORT)(export.group_export)
router.handler(fx.APPROVE_EXPORT)(export.approve)
router.handler(fx.EXPORT_STATUS)(export.status)
router.handler(fx.EXPORT_FILE)(export.file)
