"""Patients: their rows (blind indexes beside the ciphertext), sound tokens, row locks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mesh import db
from mesh.db import Sql
from services.records.store.common import aware, naive, opt_str


@dataclass(frozen=True)
class PatientTokens:
    """Blind indexes stored beside a patient row (mrn only when it is set), and the
    tokens of the family name's sound (`patient_sounds`)."""

    identity: str
    name_dob: str
    phone: str | None
    mrn: str | None = None
    sounds: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PatientRow:
    patient_id: str
    mrn_enc: str
    identity_enc: str
    contact_enc: str
    insurance_enc: str | None
    clinical_flags_enc: str | None
    version: int
    created_at: datetime
    updated_at: datetime


PATIENT_COLUMNS = (
    "patient_id, mrn_enc, identity_enc, contact_enc, insurance_enc, clinical_flags_enc, "
    "version, created_at, updated_at"
)


def _patient(r: Sequence[Any]) -> PatientRow:
    return PatientRow(
        str(r[0]),
        str(r[1]),
        str(r[2]),
        str(r[3]),
        opt_str(r[4]),
        opt_str(r[5]),
        int(r[6]),
        aware(r[7]),
        aware(r[8]),
    )


async def patient_exists(target: Any, patient_id: str) -> bool:
    row = await db.fetchone(target, "SELECT 1 FROM patients WHERE patient_id = %s", (patient_id,))
    return row is not None


async def count_patients(target: Any) -> int | None:
    row = await db.fetchone(target, "SELECT COUNT(*) FROM patients")
    return None if row is None else int(row[0])


async def get_patient(target: Any, patient_id: str, *, lock: bool = False) -> PatientRow | None:
    sql = f"SELECT {PATIENT_COLUMNS} FROM patients WHERE patient_id = %s"  # noqa: S608
    row = await db.fetchone(target, sql + (" FOR UPDATE" if lock else ""), (patient_id,))
    return None if row is None else _patient(row)


SEARCH_COLUMNS = {"name_dob": "name_dob_bidx", "phone": "phone_bidx", "mrn": "mrn_bidx"}


async def patients_by_token(
    target: Any, kind: str, tokens: Sequence[str], limit: int
) -> list[PatientRow]:
    """Exact match on one blind index, any of `tokens` (an indexed lookup: no table scan,
    no decryption)."""
    column = SEARCH_COLUMNS[kind]
    marks = ", ".join(["%s"] * len(tokens))
    sql = (
        f"SELECT {PATIENT_COLUMNS} FROM patients WHERE {column} IN ({marks}) "  # noqa: S608
        "ORDER BY updated_at DESC, patient_id LIMIT %s"
    )
    return [_patient(r) for r in await db.fetchall(target, sql, (*tokens, limit))]


async def patients_by_sound(target: Any, tokens: Sequence[str], limit: int) -> list[PatientRow]:
    """Patients with any of the sound tokens (an indexed lookup, no decryption)."""
    if not tokens:
        return []
    marks = ", ".join(["%s"] * len(tokens))
    sql = (
        f"SELECT {PATIENT_COLUMNS} FROM patients WHERE patient_id IN "  # noqa: S608
        f"(SELECT patient_id FROM patient_sounds WHERE token IN ({marks})) "
        "ORDER BY updated_at DESC, patient_id LIMIT %s"
    )
    return [_patient(r) for r in await db.fetchall(target, sql, (*tokens, limit))]


async def replace_sounds(
    conn: Sql, patient_id: str, tokens: frozenset[str], *, new: bool = False
) -> None:
    """The patient's sound tokens, now `tokens` (the caller holds the patient's row lock).

    Rows go by primary key only: a DELETE by patient of rows that are not there (a new
    patient) would lock index gaps, and concurrent registrations would deadlock on them."""
    old: set[str] = set()
    if not new:
        rows = await db.fetchall(
            conn, "SELECT token FROM patient_sounds WHERE patient_id = %s", (patient_id,)
        )
        old = {str(r[0]) for r in rows}
    for token in sorted(old - tokens):
        await db.execute(
            conn,
            "DELETE FROM patient_sounds WHERE token = %s AND patient_id = %s",
            (token, patient_id),
        )
    for token in sorted(tokens - old):
        await db.execute(
            conn,
            "INSERT INTO patient_sounds (token, patient_id) VALUES (%s, %s)",
            (token, patient_id),
        )


async def patients_by_id(target: Any, patient_ids: Sequence[str]) -> list[PatientRow]:
    """The rows of these patients (primary-key lookups, in one statement)."""
    if not patient_ids:
        return []
    marks = ", ".join(["%s"] * len(patient_ids))
    sql = f"SELECT {PATIENT_COLUMNS} FROM patients WHERE patient_id IN ({marks})"  # noqa: S608
    return [_patient(r) for r in await db.fetchall(target, sql, tuple(patient_ids))]


async def recent_patients(target: Any, limit: int) -> list[PatientRow]:
    sql = (
        f"SELECT {PATIENT_COLUMNS} FROM patients "  # noqa: S608
        "ORDER BY updated_at DESC, patient_id LIMIT %s"
    )
    return [_patient(r) for r in await db.fetchall(target, sql, (limit,))]


async def lock_similar(conn: Sql, tokens: PatientTokens, limit: int) -> list[PatientRow]:
    """Patients whose family name sounds alike with the same birth date (or, registered
    before sound tokens, with the same name and birth date), locked with the index gaps,
    so a concurrent registration of the same person waits for this transaction. Indexed
    lookups only (a lock on every row scanned would lock the table)."""
    sounds = sorted(tokens.sounds)
    ids: list[str] = []
    if sounds:
        marks = ", ".join(["%s"] * len(sounds))
        found = await db.fetchall(
            conn,
            f"SELECT patient_id FROM patient_sounds WHERE token IN ({marks}) FOR UPDATE",  # noqa: S608
            sounds,
        )
        ids = sorted({str(r[0]) for r in found})
    sql = (
        f"SELECT {PATIENT_COLUMNS} FROM patients WHERE identity_bidx = %s "  # noqa: S608
        "ORDER BY created_at LIMIT %s FOR UPDATE"
    )
    rows = {
        r.patient_id: r
        for r in map(_patient, await db.fetchall(conn, sql, (tokens.identity, limit)))
    }
    if ids:
        marks = ", ".join(["%s"] * len(ids))
        sql = f"SELECT {PATIENT_COLUMNS} FROM patients WHERE patient_id IN ({marks}) FOR UPDATE"  # noqa: S608
        for row in map(_patient, await db.fetchall(conn, sql, ids)):
            rows.setdefault(row.patient_id, row)
    return sorted(rows.values(), key=lambda r: r.created_at)[:limit]


async def insert_patient(
    conn: Sql,
    patient_id: str,
    tokens: PatientTokens,
    cipher: dict[str, str],
    by: str,
    at: datetime,
) -> None:
    await db.execute(
        conn,
        "INSERT INTO patients (patient_id, mrn_bidx, identity_bidx, name_dob_bidx, phone_bidx, "
        "mrn_enc, identity_enc, contact_enc, insurance_enc, version, created_by, created_at, "
        "updated_by, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 1, %s, %s, %s, %s)",
        (
            patient_id,
            tokens.mrn,
            tokens.identity,
            tokens.name_dob,
            tokens.phone,
            cipher["mrn"],
            cipher["identity"],
            cipher["contact"],
            cipher.get("insurance"),
            by,
            naive(at),
            by,
            naive(at),
        ),
    )


async def update_demographics(
    conn: Sql,
    patient_id: str,
    tokens: PatientTokens,
    cipher: dict[str, str],
    version: int,
    by: str,
    at: datetime,
) -> None:
    await db.execute(
        conn,
        "UPDATE patients SET identity_bidx = %s, name_dob_bidx = %s, phone_bidx = %s, "
        "identity_enc = %s, contact_enc = %s, insurance_enc = %s, version = %s, "
        "updated_by = %s, updated_at = %s WHERE patient_id = %s",
        (
            tokens.identity,
            tokens.name_dob,
            tokens.phone,
            cipher["identity"],
            cipher["contact"],
            cipher.get("insurance"),
            version,
            by,
            naive(at),
            patient_id,
        ),
    )


async def update_flags(conn: Sql, patient_id: str, flags_enc: str, by: str, at: datetime) -> None:
    await db.execute(
        conn,
        "UPDATE patients SET clinical_flags_enc = %s, flags_updated_by = %s, "
        "flags_updated_at = %s WHERE patient_id = %s",
        (flags_enc, by, naive(at), patient_id),
    )


async def lock_patient(conn: Sql, patient_id: str) -> bool:
    """Hold the patient's row until the transaction ends (writes of their allergy list and
    prescriptions are serialised on it); False: no such patient.

    Take it before the transaction's first plain read: InnoDB's snapshot is taken at that
    read, and a snapshot older than the lock would miss what the write before committed
    (the handlers read care relationships and the catalog from the lookup pool for that)."""
    row = await db.fetchone(
        conn, "SELECT 1 FROM patients WHERE patient_id = %s FOR UPDATE", (patient_id,)
    )
    return row is not None
