"""Prescriptions: signed rows, their status and MAC."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mesh import db
from mesh.db import Sql
from services.records.store.common import aware, naive, opt_aware, opt_str


@dataclass(frozen=True)
class PrescriptionRow:
    prescription_id: str
    patient_id: str
    prescriber_id: str
    encounter_id: str
    created_at: datetime
    medication_enc: str
    signature: str
    signer_public_key: str
    status: str
    status_changed_at: datetime | None
    status_changed_by: str | None
    cancellation_reason_enc: str | None
    mac: str
    safety_enc: str | None = None
    """Alerts overridden at signing and the reason (None: there were none)."""


PRESCRIPTION_COLUMNS = (
    "prescription_id, patient_id, prescriber_id, encounter_id, created_at, medication_enc, "
    "signature, signer_public_key, status, status_changed_at, status_changed_by, "
    "cancellation_reason_enc, mac, safety_enc"
)


def _prescription(r: Sequence[Any]) -> PrescriptionRow:
    return PrescriptionRow(
        str(r[0]),
        str(r[1]),
        str(r[2]),
        str(r[3]),
        aware(r[4]),
        str(r[5]),
        str(r[6]),
        str(r[7]),
        str(r[8]),
        opt_aware(r[9]),
        opt_str(r[10]),
        opt_str(r[11]),
        str(r[12]),
        opt_str(r[13]),
    )


async def insert_prescription(conn: Sql, row: PrescriptionRow) -> None:
    await db.execute(
        conn,
        f"INSERT INTO prescriptions ({PRESCRIPTION_COLUMNS}) "  # noqa: S608
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            row.prescription_id,
            row.patient_id,
            row.prescriber_id,
            row.encounter_id,
            naive(row.created_at),
            row.medication_enc,
            row.signature,
            row.signer_public_key,
            row.status,
            None if row.status_changed_at is None else naive(row.status_changed_at),
            row.status_changed_by,
            row.cancellation_reason_enc,
            row.mac,
            row.safety_enc,
        ),
    )


async def update_status(conn: Sql, row: PrescriptionRow) -> None:
    await db.execute(
        conn,
        "UPDATE prescriptions SET status = %s, status_changed_at = %s, status_changed_by = %s, "
        "cancellation_reason_enc = %s, mac = %s WHERE prescription_id = %s",
        (
            row.status,
            None if row.status_changed_at is None else naive(row.status_changed_at),
            row.status_changed_by,
            row.cancellation_reason_enc,
            row.mac,
            row.prescription_id,
        ),
    )


async def get_prescription(
    target: Any, prescription_id: str, *, lock: bool = False
) -> PrescriptionRow | None:
    sql = f"SELECT {PRESCRIPTION_COLUMNS} FROM prescriptions WHERE prescription_id = %s"  # noqa: S608
    row = await db.fetchone(target, sql + (" FOR UPDATE" if lock else ""), (prescription_id,))
    return None if row is None else _prescription(row)


async def prescriptions_of(target: Any, patient_id: str) -> list[PrescriptionRow]:
    """Every prescription of the patient, newest first, whatever its stored status (a
    status edited in the database must not hide a row from its integrity check)."""
    sql = (
        f"SELECT {PRESCRIPTION_COLUMNS} FROM prescriptions WHERE patient_id = %s "  # noqa: S608
        "ORDER BY created_at DESC, prescription_id"
    )
    return [_prescription(r) for r in await db.fetchall(target, sql, (patient_id,))]
