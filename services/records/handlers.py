"""RPC handlers of the records service: one registration per method of contracts.records.

The handlers themselves live by subject: `patients`, `encounters`, `prescriptions`,
`summary` (ping is answered by the shared runtime).
"""

from __future__ import annotations

from contracts import records as rec
from mesh.rpc import RpcRouter
from services.records import care, catalog, encounters, patients, prescriptions, summary

router = RpcRouter(rec.SERVICE)

router.handler(rec.PATIENT_REF)(patients.patient_ref)
router.handler(rec.CREATE_PATIENT)(patients.create_patient)
router.handler(rec.UPDATE_PATIENT)(patients.update_patient)
router.handler(rec.SET_CLINICAL_FLAGS)(patients.set_clinical_flags)
router.handler(rec.GET_PATIENT)(patients.get_patient)
router.handler(rec.LIST_RECENT_PATIENTS)(patients.list_recent_patients)
router.handler(rec.SEARCH_PATIENTS)(patients.search_patients)

router.handler(rec.ADD_ENCOUNTER)(encounters.add_encounter)
router.handler(rec.AMEND_ENCOUNTER)(encounters.amend_encounter)
router.handler(rec.GET_ENCOUNTER)(encounters.get_encounter)
router.handler(rec.LIST_ENCOUNTERS)(encounters.list_encounters)

router.handler(rec.PRESCRIBE)(prescriptions.prescribe)
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

router.handler(rec.BREAK_GLASS)(care.break_glass)
router.handler(rec.BREAK_GLASS_REPORT)(care.break_glass_report)
router.handler(rec.ACKNOWLEDGE_BREAK_GLASS)(care.acknowledge)
