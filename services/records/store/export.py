"""FHIR bulk exports: the jobs (their lease, cursor and counts), the walk over the
patients, and the sealed files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts import fhirexport as fx
from mesh import db
from mesh.db import Database, Sql
from services.records.store.common import aware, naive, opt_aware, opt_str


@dataclass(frozen=True)
class ExportJobRow:
    job_id: str
    group_id: str | None
    requested_by: str
    approved_by: str | None
    state: str
    done: int
    total: int
    progress: str
    recipient_public_key: str
    requested_at: datetime
    output: str | None
    """The files' list (JSON), once complete."""
    error: str | None
    types: str | None
    """The resource types, comma-separated (None: every type)."""
    since: datetime | None


JOB_COLUMNS = (
    "job_id, group_id, requested_by, approved_by, state, done, total, progress, "
    "recipient_public_key, requested_at, output, error, types, since"
)


def _job(r: Sequence[Any]) -> ExportJobRow:
    return ExportJobRow(
        str(r[0]),
        opt_str(r[1]),
        str(r[2]),
        opt_str(r[3]),
        str(r[4]),
        int(r[5]),
        int(r[6]),
        str(r[7]),
        str(r[8]),
        aware(r[9]),
        opt_str(r[10]),
        opt_str(r[11]),
        opt_str(r[12]),
        opt_aware(r[13]),
    )


async def get_export_job(target: Any, job_id: str, *, lock: bool = False) -> ExportJobRow | None:
    sql = f"SELECT {JOB_COLUMNS} FROM fhir_export_jobs WHERE job_id = %s"  # noqa: S608
    row = await db.fetchone(target, sql + (" FOR UPDATE" if lock else ""), (job_id,))
    return None if row is None else _job(row)


async def insert_export_job(
    conn: Sql,
    job_id: str,
    group_id: str | None,
    requested_by: str,
    progress: str,
    recipient_public_key: str,
    kickoff_proof: str,
    kickoff_body: bytes | None,
    requested_at: datetime,
    types: str,
    since: datetime | None,
) -> None:
    """A new job, awaiting a second administrator's approval."""
    await db.execute(
        conn,
        "INSERT INTO fhir_export_jobs (job_id, group_id, requested_by, state, progress, "
        "recipient_public_key, kickoff_proof, kickoff_body, requested_at, types, since) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            job_id,
            group_id,
            requested_by,
            fx.ExportState.awaiting_approval.value,
            progress,
            recipient_public_key,
            kickoff_proof,
            kickoff_body,
            naive(requested_at),
            types,
            None if since is None else naive(since),
        ),
    )


async def export_kickoff(target: Any, job_id: str) -> tuple[str, bytes] | None:
    """The job's kick-off: its proof and its signed body."""
    row = await db.fetchone(
        target,
        "SELECT kickoff_proof, kickoff_body FROM fhir_export_jobs WHERE job_id = %s",
        (job_id,),
    )
    return None if row is None else (str(row[0]), bytes(row[1]))


async def approve_export_job(
    conn: Sql, job_id: str, approved_by: str, progress: str, total: int, run_principal: str
) -> None:
    """The job runs, as `run_principal` (the approving administrator, JSON)."""
    await db.execute(
        conn,
        "UPDATE fhir_export_jobs SET state = %s, approved_by = %s, progress = %s, total = %s, "
        "run_principal = %s WHERE job_id = %s",
        (fx.ExportState.running.value, approved_by, progress, total, run_principal, job_id),
    )


async def claim_export_job(
    database: Database, job_id: str, owner: str, until: datetime, now: datetime
) -> bool:
    """Take the running job's lease until `until` if no lease is live at `now` (naive UTC
    times); False: another run holds it, or the job is not running."""
    taken = await database.execute(
        "UPDATE fhir_export_jobs SET lease_owner = %s, lease_until = %s "
        "WHERE job_id = %s AND state = %s AND (lease_until IS NULL OR lease_until < %s)",
        (owner, until, job_id, fx.ExportState.running.value, now),
    )
    return taken == 1


@dataclass(frozen=True)
class ExportRunRow:
    """Where a job's run stands: the last patient of its last sealed page, and so on."""

    cursor_patient: str
    page: int
    exported: int
    run_principal: str | None


async def export_run(database: Database, job_id: str) -> ExportRunRow | None:
    row = await database.fetchone(
        "SELECT cursor_patient, page, exported, run_principal FROM fhir_export_jobs "
        "WHERE job_id = %s",
        (job_id,),
    )
    if row is None:
        return None
    return ExportRunRow(str(row[0]), int(row[1]), int(row[2]), opt_str(row[3]))


async def patient_ids_after(database: Database, after: str, limit: int) -> list[str]:
    """The next `limit` patient ids after `after`, in id order (a keyset walk)."""
    rows = await database.fetchall(
        "SELECT patient_id FROM patients WHERE patient_id > %s ORDER BY patient_id LIMIT %s",
        (after, limit),
    )
    return [str(r[0]) for r in rows]


async def renew_export_lease(database: Database, job_id: str, owner: str, until: datetime) -> bool:
    """Extend `owner`'s lease (naive UTC); False: `owner` holds it no longer."""
    renewed = await database.execute(
        "UPDATE fhir_export_jobs SET lease_until = %s WHERE job_id = %s AND lease_owner = %s",
        (until, job_id, owner),
    )
    return renewed == 1


async def advance_export_job(
    conn: Sql,
    job_id: str,
    owner: str,
    cursor_patient: str,
    page: int,
    done: int,
    total: int,
    exported: int,
    progress: str,
    lease_until: datetime,
) -> bool:
    """A page sealed: the running job's cursor and counts, and `owner`'s lease renewed
    (naive UTC); False: `owner` holds the lease no longer, or the job is not running."""
    renewed = await db.execute(
        conn,
        "UPDATE fhir_export_jobs SET cursor_patient = %s, page = %s, done = %s, total = %s, "
        "exported = %s, progress = %s, lease_until = %s "
        "WHERE job_id = %s AND lease_owner = %s AND state = %s",
        (
            cursor_patient,
            page,
            done,
            total,
            exported,
            progress,
            lease_until,
            job_id,
            owner,
            fx.ExportState.running.value,
        ),
    )
    return renewed == 1


async def insert_export_file(
    conn: Sql, job_id: str, resource_type: str, part: int, line_count: int, sealed: bytes
) -> None:
    await db.execute(
        conn,
        "INSERT INTO fhir_export_files (job_id, resource_type, part, line_count, "
        "sealed) VALUES (%s, %s, %s, %s, %s)",
        (job_id, resource_type, part, line_count, sealed),
    )


async def export_files(database: Database, job_id: str) -> list[tuple[str, int, int, int]]:
    """(resource type, part, lines, sealed bytes) of every file of the job."""
    rows = await database.fetchall(
        "SELECT resource_type, part, line_count, LENGTH(sealed) FROM fhir_export_files "
        "WHERE job_id = %s",
        (job_id,),
    )
    return [(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]


async def complete_export_job(
    database: Database, job_id: str, owner: str, output: str, progress: str
) -> None:
    """The running job is complete, with its files' list (JSON); its lease is released."""
    await database.execute(
        "UPDATE fhir_export_jobs SET state = %s, output = %s, progress = %s, lease_owner = NULL, "
        "lease_until = NULL WHERE job_id = %s AND lease_owner = %s AND state = %s",
        (
            fx.ExportState.complete.value,
            output,
            progress,
            job_id,
            owner,
            fx.ExportState.running.value,
        ),
    )


async def fail_export_job(conn: Sql, job_id: str, owner: str, error: str) -> bool:
    """The job failed, saying why; its lease is released. False: `owner` holds it no
    longer."""
    failed = await db.execute(
        conn,
        "UPDATE fhir_export_jobs SET state = %s, error = %s, progress = %s, "
        "lease_owner = NULL, lease_until = NULL WHERE job_id = %s AND lease_owner = %s",
        (fx.ExportState.failed.value, error, "failed", job_id, owner),
    )
    return failed == 1


async def delete_export_files(conn: Sql, job_id: str) -> None:
    await db.execute(conn, "DELETE FROM fhir_export_files WHERE job_id = %s", (job_id,))


async def runnable_export_jobs(database: Database, now: datetime) -> list[str]:
    """Running jobs whose lease has lapsed at `now` (naive UTC), oldest request first, ten
    at most."""
    rows = await database.fetchall(
        "SELECT job_id FROM fhir_export_jobs WHERE state = %s "
        "AND (lease_until IS NULL OR lease_until < %s) ORDER BY requested_at LIMIT 10",
        (fx.ExportState.running.value, now),
    )
    return [str(r[0]) for r in rows]


async def export_file(
    target: Any, job_id: str, resource_type: str, part: int
) -> tuple[int, bytes] | None:
    """(lines, sealed bytes) of one file of the job."""
    row = await db.fetchone(
        target,
        "SELECT line_count, sealed FROM fhir_export_files "
        "WHERE job_id = %s AND resource_type = %s AND part = %s",
        (job_id, resource_type, part),
    )
    return None if row is None else (int(row[0]), bytes(row[1]))
