"""The prescriptions table's row MAC: which columns, in which order, and what a failure does.

The MAC covers the row as stored (ciphertexts included), so it is checked without
decrypting anything and in parallel with the decryption. A row that fails is never
served as if it were sound: it is reported by id, audited, and left out (lists) or
refused with an integrity error (single reads).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from contracts import keyvault as kv
from contracts.audit import AuditAction, AuditOutcome
from contracts.records import SERVICE
from mesh import audit
from mesh.logging import get_logger
from mesh.runtime import Runtime
from services.records.store import PrescriptionRow

log = get_logger("records.integrity")

PRESCRIPTIONS = "prescriptions"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds")


def prescription_mac_row(row: PrescriptionRow) -> kv.MacRow:
    """Every column but `mac`, in a fixed order (changing it invalidates every stored MAC)."""
    return kv.MacRow(
        table=PRESCRIPTIONS,
        pk=row.prescription_id,
        columns=[
            ("patient_id", row.patient_id),
            ("prescriber_id", row.prescriber_id),
            ("encounter_id", row.encounter_id),
            ("created_at", _iso(row.created_at)),
            ("medication_enc", row.medication_enc),
            ("signature", row.signature),
            ("signer_public_key", row.signer_public_key),
            ("status", row.status),
            ("status_changed_at", _iso(row.status_changed_at)),
            ("status_changed_by", row.status_changed_by),
            ("cancellation_reason_enc", row.cancellation_reason_enc),
        ],
    )


async def record_failures(runtime: Runtime, rows: Sequence[PrescriptionRow]) -> None:
    """Audit every row that failed its MAC (an edit outside Medihaven)."""
    for row in rows:
        log.error("records.integrity_failure", table=PRESCRIPTIONS, pk=row.prescription_id)
        await audit.record(
            runtime,
            audit.make_event(
                SERVICE,
                "integrity.row_rejected",
                AuditAction.read,
                AuditOutcome.failure,
                patient_id=row.patient_id,
                entity_type=PRESCRIPTIONS,
                entity_id=row.prescription_id,
                detail=f"{PRESCRIPTIONS} row {row.prescription_id} fails its MAC: edited "
                "outside Medihaven",
            ),
        )
