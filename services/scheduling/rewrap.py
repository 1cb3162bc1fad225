"""Scheduling's tables for the online rewrap (`mesh.rewrap`): appointments, bound to their
patient and physician (as `steps.binding` binds them)."""

from __future__ import annotations

from contracts.scheduling import SERVICE
from mesh.rewrap import RewrapJob, Table
from services.scheduling.handlers import router as handlers_router

TABLES = (
    Table(
        "appointments",
        pk=("appointment_id",),
        encrypted=("reason_enc", "cancel_reason_enc"),
        binding={"patient": "patient_id", "physician": "physician_id"},
    ),
)

JOB = RewrapJob(SERVICE, TABLES)
router = JOB.serve(handlers_router)
"""Scheduling's handlers, with its `key_usage` scan and the rewrap worker."""
