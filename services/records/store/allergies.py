"""Allergies: those recorded on encounters, and each patient's allergy list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mesh import db
from mesh.db import Sql
from services.records.store.common import aware, naive
from services.records.store.encounters import version_row_id


@dataclass(frozen=True)
class AllergyRow:
    """The allergies recorded on the latest version of one encounter."""

    encounter_id: str
    version: int
    occurred_at: datetime
    recorded_by: str
    recorded_at: datetime
    allergies_enc: str

    @property
    def row_id(self) -> str:
        return version_row_id(self.encounter_id, self.version)


async def encounter_allergies(target: Any, patient_id: str) -> list[AllergyRow]:
    """The allergies of the latest version of every encounter, newest first (all of them:
    this builds a patient's allergy list, once)."""
    sql = (
        "SELECT v.encounter_id, v.version, v.occurred_at, v.recorded_by, v.recorded_at, "
        "v.allergies_enc FROM encounters e "
        "JOIN encounter_versions v ON v.encounter_id = e.encounter_id "
        "AND v.version = e.current_version WHERE e.patient_id = %s "
        "ORDER BY e.occurred_at DESC, e.encounter_id"
    )
    rows = await db.fetchall(target, sql, (patient_id,))
    return [
        AllergyRow(str(r[0]), int(r[1]), aware(r[2]), str(r[3]), aware(r[4]), str(r[5]))
        for r in rows
    ]


@dataclass(frozen=True)
class AllergyListRow:
    patient_id: str
    allergies_enc: str
    version: int
    updated_by: str
    updated_at: datetime
    mac: str


async def get_allergy_list(target: Any, patient_id: str) -> AllergyListRow | None:
    row = await db.fetchone(
        target,
        "SELECT patient_id, allergies_enc, version, updated_by, updated_at, mac "
        "FROM allergy_lists WHERE patient_id = %s",
        (patient_id,),
    )
    if row is None:
        return None
    return AllergyListRow(
        str(row[0]), str(row[1]), int(row[2]), str(row[3]), aware(row[4]), str(row[5])
    )


async def put_allergy_list(conn: Sql, row: AllergyListRow) -> None:
    """Insert the list, or replace it (the caller holds the patient's row lock)."""
    await db.execute(
        conn,
        "INSERT INTO allergy_lists (patient_id, allergies_enc, version, updated_by, updated_at, "
        "mac) VALUES (%s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE "
        "allergies_enc = VALUES(allergies_enc), version = VALUES(version), "
        "updated_by = VALUES(updated_by), updated_at = VALUES(updated_at), mac = VALUES(mac)",
        (
            row.patient_id,
            row.allergies_enc,
            row.version,
            row.updated_by,
            naive(row.updated_at),
            row.mac,
        ),
    )
