"""Encounters: the head of each and its append-only versions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mesh import db
from mesh.db import Sql
from services.records.store.common import aware, naive, opt_str


@dataclass(frozen=True)
class EncounterRow:
    """One version of an encounter (with the encounter's original physician)."""

    encounter_id: str
    version: int
    patient_id: str
    physician_id: str
    occurred_at: datetime
    recorded_by: str
    recorded_at: datetime
    supersedes: int | None
    note_enc: str
    allergies_enc: str
    amendment_reason_enc: str | None

    @property
    def row_id(self) -> str:
        return version_row_id(self.encounter_id, self.version)


@dataclass(frozen=True)
class EncounterHead:
    encounter_id: str
    patient_id: str
    physician_id: str
    current_version: int


def version_row_id(encounter_id: str, version: int) -> str:
    """The keyvault row id of one version: its ciphertexts cannot move to another."""
    return f"{encounter_id}.v{version}"


VERSION_COLUMNS = (
    "v.encounter_id, v.version, v.patient_id, e.physician_id, v.occurred_at, v.recorded_by, "
    "v.recorded_at, v.supersedes, v.note_enc, v.allergies_enc, v.amendment_reason_enc"
)


def _version(r: Sequence[Any]) -> EncounterRow:
    return EncounterRow(
        str(r[0]),
        int(r[1]),
        str(r[2]),
        str(r[3]),
        aware(r[4]),
        str(r[5]),
        aware(r[6]),
        None if r[7] is None else int(r[7]),
        str(r[8]),
        str(r[9]),
        opt_str(r[10]),
    )


async def insert_encounter(conn: Sql, row: EncounterRow, at: datetime) -> None:
    """A new encounter: its head and its first version."""
    await db.execute(
        conn,
        "INSERT INTO encounters (encounter_id, patient_id, physician_id, current_version, "
        "occurred_at, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            row.encounter_id,
            row.patient_id,
            row.physician_id,
            row.version,
            naive(row.occurred_at),
            naive(at),
            naive(at),
        ),
    )
    await insert_version(conn, row)


async def insert_version(conn: Sql, row: EncounterRow) -> None:
    await db.execute(
        conn,
        "INSERT INTO encounter_versions (encounter_id, version, patient_id, occurred_at, "
        "recorded_by, recorded_at, supersedes, note_enc, allergies_enc, amendment_reason_enc) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            row.encounter_id,
            row.version,
            row.patient_id,
            naive(row.occurred_at),
            row.recorded_by,
            naive(row.recorded_at),
            row.supersedes,
            row.note_enc,
            row.allergies_enc,
            row.amendment_reason_enc,
        ),
    )


async def advance_head(conn: Sql, row: EncounterRow) -> None:
    """Point the encounter at its new latest version (the old versions stay as they are)."""
    await db.execute(
        conn,
        "UPDATE encounters SET current_version = %s, occurred_at = %s, updated_at = %s "
        "WHERE encounter_id = %s",
        (row.version, naive(row.occurred_at), naive(row.recorded_at), row.encounter_id),
    )


async def get_head(target: Any, encounter_id: str, *, lock: bool = False) -> EncounterHead | None:
    sql = (
        "SELECT encounter_id, patient_id, physician_id, current_version FROM encounters "
        "WHERE encounter_id = %s"
    )
    row = await db.fetchone(target, sql + (" FOR UPDATE" if lock else ""), (encounter_id,))
    if row is None:
        return None
    return EncounterHead(str(row[0]), str(row[1]), str(row[2]), int(row[3]))


async def versions(target: Any, encounter_id: str, only: int | None = None) -> list[EncounterRow]:
    """Every version of an encounter, oldest first (or just version `only`)."""
    sql = (
        f"SELECT {VERSION_COLUMNS} FROM encounter_versions v "  # noqa: S608
        "JOIN encounters e ON e.encounter_id = v.encounter_id WHERE v.encounter_id = %s"
    )
    args: tuple[Any, ...] = (encounter_id,)
    if only is not None:
        sql += " AND v.version = %s"
        args += (only,)
    return [_version(r) for r in await db.fetchall(target, sql + " ORDER BY v.version", args)]


async def current_encounters(
    target: Any, patient_id: str, limit: int, before: datetime | None = None
) -> list[EncounterRow]:
    """The latest version of the patient's most recent encounters, newest first."""
    sql, args = current_encounters_query(patient_id, limit, before)
    return [_version(r) for r in await db.fetchall(target, sql, args)]


def current_encounters_query(
    patient_id: str, limit: int, before: datetime | None = None
) -> tuple[str, tuple[Any, ...]]:
    """The SQL of `current_encounters` and its arguments (a test reads its plan)."""
    sql = (
        f"SELECT {VERSION_COLUMNS} FROM encounters e "  # noqa: S608
        "JOIN encounter_versions v ON v.encounter_id = e.encounter_id "
        "AND v.version = e.current_version WHERE e.patient_id = %s"
    )
    args: tuple[Any, ...] = (patient_id,)
    if before is not None:
        sql += " AND e.occurred_at < %s"
        args += (naive(before),)
    # Both keys descending: MariaDB reads `by_patient` (patient_id, occurred_at, and the
    # primary key after them) backwards and stops after `limit` rows. A mixed order
    # (occurred_at DESC, encounter_id ASC) is a filesort of every encounter on file, so
    # the summary's cost grew with the history (bench.records: MariaDB's CPU per summary
    # 1.8 ms at 100 encounters, 6.8 ms at 2,000).
    sql += " ORDER BY e.occurred_at DESC, e.encounter_id DESC LIMIT %s"
    return sql, (*args, limit)
