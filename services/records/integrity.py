"""Row MACs of the records tables that decide care (prescriptions, allergy lists): which
columns, in which order, and what a failure does.

The MAC covers the row as stored (ciphertexts included), so it is checked without
decrypting anything and in parallel with the decryption. A row that fails is never
served as if it were sound: it is reported by id, audited, and left out (lists) or
refused with an integrity error (single reads).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from contracts import keyvault as kv
from contracts.records import SERVICE
from mesh import audit
from mesh.runtime import Runtime
from services.records.store import AllergyListRow, PrescriptionRow

PRESCRIPTIONS = "prescriptions"
ALLERGY_LISTS = "allergy_lists"


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
            # Only on rows that have it, so the MACs of older rows still verify.
            *([("safety_enc", row.safety_enc)] if row.safety_enc is not None else []),
        ],
    )


def allergy_list_mac_row(row: AllergyListRow) -> kv.MacRow:
    """Every column but `mac`: an edited severity or status, or a list moved to another
    patient, fails the check."""
    return kv.MacRow(
        table=ALLERGY_LISTS,
        pk=row.patient_id,
        columns=[
            ("allergies_enc", row.allergies_enc),
            ("version", str(row.version)),
            ("updated_by", row.updated_by),
            ("updated_at", _iso(row.updated_at)),
        ],
    )


async def rejected(runtime: Runtime, table: str, pk: str, patient_id: str | None, why: str) -> None:
    """Audit one row that is not served: it fails its MAC, or does not decrypt."""
    await audit.record_rejected_row(
        runtime,
        SERVICE,
        table=table,
        pk=pk,
        patient_id=patient_id,
        why=f"{why}: edited outside Medihaven",
    )


async def record_failures(runtime: Runtime, rows: Sequence[PrescriptionRow]) -> None:
    """Audit every prescription row that failed its MAC (an edit outside Medihaven)."""
    for row in rows:
        await rejected(runtime, PRESCRIPTIONS, row.prescription_id, row.patient_id, "fails its MAC")
