"""Every records method that reads or writes patient data, in one tuple."""

from __future__ import annotations

from contracts.records.encounters import (
    ADD_ENCOUNTER,
    AMEND_ENCOUNTER,
    GET_ENCOUNTER,
    LIST_ENCOUNTERS,
)
from contracts.records.patients import (
    CREATE_PATIENT,
    GET_PATIENT,
    LIST_RECENT_PATIENTS,
    PATIENT_BRIEFS,
    SEARCH_PATIENTS,
    SET_CLINICAL_FLAGS,
    UPDATE_PATIENT,
)
from contracts.records.prescriptions import (
    CANCEL_PRESCRIPTION,
    CHECK_PRESCRIPTION,
    COMPLETE_PRESCRIPTION,
    GET_PRESCRIPTION,
    LIST_PRESCRIPTIONS,
    PRESCRIBE,
    VERIFY_PRESCRIPTION,
)
from contracts.records.summary import (
    CHANGE_ALLERGY,
    LIST_ALLERGIES,
    PATIENT_SUMMARY,
    RECORD_ALLERGY,
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
