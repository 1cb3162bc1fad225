"""Records' tables for the online rewrap (`mesh.rewrap`): what is encrypted, how each row's
keyvault context and binding are made, the MAC'd columns, the blind indexes.

The MAC layouts are those of `services/records/integrity.py` (a test rewraps and then
reads through records, whose own MAC check must pass); the blind indexes are those
records stores at registration (`contracts.keyvault.BLIND_INDEXES`).
"""

from __future__ import annotations

from contracts import records as rec
from mesh.rewrap import Col, Mac, RewrapJob, SideTable, Table
from services.records.handlers import router as handlers_router

PATIENT = {"patient": "patient_id"}

TABLES = (
    Table(
        "patients",
        pk=("patient_id",),
        encrypted=("mrn_enc", "identity_enc", "contact_enc", "insurance_enc", "clinical_flags_enc"),
        binding=PATIENT,
        indexes={
            "mrn": "mrn_bidx",
            "identity": "identity_bidx",
            "name_dob": "name_dob_bidx",
            "phone": "phone_bidx",
            "sounds": SideTable("patient_sounds", key="patient_id"),
        },
    ),
    Table(
        rec.ENCOUNTERS_TABLE,
        pk=("encounter_id", "version"),
        row_id="{encounter_id}.v{version}",
        encrypted=("note_enc", "allergies_enc", "amendment_reason_enc"),
        binding=PATIENT,
    ),
    Table(
        rec.PRESCRIPTIONS_TABLE,
        pk=("prescription_id",),
        encrypted=("medication_enc", "cancellation_reason_enc", "safety_enc"),
        binding=PATIENT,
        mac=Mac(
            "mac",
            (
                Col("patient_id"),
                Col("prescriber_id"),
                Col("encounter_id"),
                Col("created_at", "iso"),
                Col("medication_enc"),
                Col("signature"),
                Col("signer_public_key"),
                Col("status"),
                Col("status_changed_at", "iso"),
                Col("status_changed_by"),
                Col("cancellation_reason_enc"),
                Col("safety_enc", omit_null=True),
            ),
        ),
    ),
    Table(
        rec.ALLERGIES_TABLE,
        pk=("patient_id",),
        encrypted={"allergies_enc": rec.ALLERGY_COLUMN},
        binding=PATIENT,
        mac=Mac(
            "mac",
            (
                Col("allergies_enc"),
                Col("version", "str"),
                Col("updated_by"),
                Col("updated_at", "iso"),
            ),
        ),
    ),
    Table(rec.BREAK_GLASS_TABLE, pk=("grant_id",), encrypted=("reason_enc",), binding=PATIENT),
)

JOB = RewrapJob(rec.SERVICE, TABLES)
router = JOB.serve(handlers_router)
"""Records' handlers, with its `key_usage` scan and the rewrap worker."""
