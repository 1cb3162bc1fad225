"""SQL of the records service: patients, encounters (append-only versions), allergy lists,
prescriptions.

Times go in as naive UTC DATETIMEs and come out as aware UTC datetimes. `target` is the
service's `Database` (autocommit reads) or a write transaction's connection. Patient data
columns hold keyvault ciphertext only; this module never sees plaintext.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pymysql

from mesh import db
from mesh.db import Sql

DEADLOCK = 1213
LOCK_WAIT_TIMEOUT = 1205


def is_lock_conflict(exc: BaseException) -> bool:
    """MariaDB chose this transaction as a deadlock victim, or gave up waiting for a lock."""
    return isinstance(exc, pymysql.err.OperationalError) and exc.args[:1] in (
        (DEADLOCK,),
        (LOCK_WAIT_TIMEOUT,),
    )


def naive(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(tzinfo=None)


def aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def _opt_aware(value: datetime | None) -> datetime | None:
    return None if value is None else aware(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


# ---------------------------------------------------------------------------- patients


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
        _opt_str(r[4]),
        _opt_str(r[5]),
        int(r[6]),
        aware(r[7]),
        aware(r[8]),
    )


async def patient_exists(target: Any, patient_id: str) -> bool:
    row = await db.fetchone(target, "SELECT 1 FROM patients WHERE patient_id = %s", (patient_id,))
    return row is not None


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


# ---------------------------------------------------------------------------- encounters


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
        _opt_str(r[10]),
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


# ---------------------------------------------------------------------------- prescriptions


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
        _opt_aware(r[9]),
        _opt_str(r[10]),
        _opt_str(r[11]),
        str(r[12]),
        _opt_str(r[13]),
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
