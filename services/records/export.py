"""FHIR Bulk Data `$export` in records: the job, its pages, sealed NDJSON.

Why it looks like this is in `contracts.fhirexport`. Records keeps the kick-off (its
proof too, which the keyvault checks again at approval); an approval by another
administrator makes the DECRYPT that opens the job's keyvault session (on the approval's
fresh proof, countersigned by the kick-off's), and the job is `running`. A run (any
records replica, `resume_loop`) takes the job's lease and walks the patients in pages
by id: each page is decrypted under the session, mapped (`mesh.fhirmap`), each exported
patient audited before anything of theirs is sealed (fail closed), each resource type's
NDJSON sealed to the recipient key in memory, and the sealed files are stored with the
advanced cursor in one transaction. A crash leaves whole sealed pages and the cursor;
when its lease lapses, a replica resumes at the next page. No plaintext reaches the
database.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from nacl.public import PublicKey, SealedBox

from contracts import fhirexport as fx
from contracts import keyvault as kv
from contracts.audit import AuditAction, AuditType
from contracts.base import Principal
from mesh import auditing, fhirmap, keyvault
from mesh.auditing import Subject
from mesh.context import CallContext, current_call, runtime_of
from mesh.errors import (
    Conflict,
    Forbidden,
    IntegrityError,
    NotFound,
    RpcError,
    RpcTimeout,
    Unavailable,
)
from mesh.httpsig import RequestProof
from mesh.keyvault import Batch
from mesh.logging import get_logger
from mesh.runtime import Runtime
from services.records import allergies, care, codec, store
from services.records.access import principal_of
from services.records.prescriptions import decrypt_with_prescriptions

log = get_logger("records.export")

RESUME_EVERY_S = 1.0
PATIENT_FIELDS = fx.PATIENT_COLUMNS
"""A FHIR Patient's columns (no insurance, no clinical flags), as for a Patient read."""


def _job(row: store.ExportJobRow) -> fx.ExportJob:
    return fx.ExportJob(
        job_id=row.job_id,
        group_id=row.group_id,
        requested_by=row.requested_by,
        approved_by=row.approved_by,
        state=fx.ExportState(row.state),
        done=row.done,
        total=row.total,
        progress=row.progress,
        recipient_public_key=row.recipient_public_key,
        requested_at=row.requested_at,
        output=[fx.ExportOutput.model_validate(o) for o in json.loads(row.output or "[]")],
        error=row.error,
        types=(row.types or ",".join(fx.EXPORT_TYPES)).split(","),
        since=row.since,
    )


async def _load(target: Any, job_id: str, *, lock: bool = False) -> fx.ExportJob:
    row = await store.get_export_job(target, job_id, lock=lock)
    if row is None:
        raise NotFound("there is no export with that id", details={"job_id": job_id})
    return _job(row)


async def _kickoff(ctx: CallContext, group_id: str | None, req: fx.KickoffRequest) -> fx.ExportJob:
    assert ctx.proof is not None  # a routed method: the runtime verified it
    proof = RequestProof.model_validate_json(ctx.proof)
    job_id = fx.kickoff_digest(proof.signature_input, proof.signature)
    me = principal_of(ctx)
    await store.insert_export_job(
        ctx.tx,
        job_id,
        group_id,
        me.account_id,
        "awaiting a second administrator's approval",
        req.recipient_public_key,
        ctx.proof,
        ctx.signed_body,
        datetime.now(UTC),
        ",".join(fx.types_of(req)),
        req.since,
    )
    subject = Subject(AuditType.export_requested, AuditAction.execute, "export", None, job_id)
    await auditing.written(ctx, subject, f"group {group_id}" if group_id else "every patient")
    return await _load(ctx.tx, job_id)


async def patient_export(req: fx.PatientExportRequest, ctx: CallContext) -> fx.ExportJob:
    return await _kickoff(ctx, None, req)


async def group_export(req: fx.GroupExportRequest, ctx: CallContext) -> fx.ExportJob:
    return await _kickoff(ctx, req.group_id, req)


async def approve(req: fx.ExportJobRequest, ctx: CallContext) -> fx.ExportJob:
    """The second administrator's approval: the keyvault verifies both signatures and
    opens the job's session (this approval's one DECRYPT); the job is then `running`,
    and a records replica's `resume_loop` takes it within a second."""
    job = await _load(ctx.tx, req.job_id, lock=True)
    me = principal_of(ctx)
    if job.state is not fx.ExportState.awaiting_approval:
        raise Conflict(f"this export is {job.state.value}, not awaiting approval")
    if job.requested_by == me.account_id:
        raise Forbidden("an export needs a second administrator: you requested this one")
    kickoff = await store.export_kickoff(ctx.tx, req.job_id)
    assert kickoff is not None
    proof, body = kickoff
    countersigned = kv.Countersigned(proof=proof, body=base64.b64encode(body).decode())
    runtime = runtime_of(ctx)
    await keyvault.open_export_session(runtime, countersigned)
    total = await store.count_patients(ctx.tx)
    assert total is not None
    progress = f"approved: 0 of {total} patients"
    await store.approve_export_job(
        ctx.tx, req.job_id, me.account_id, progress, total, me.model_dump_json()
    )
    subject = Subject(AuditType.export_approved, AuditAction.execute, "export", None, req.job_id)
    await auditing.written(ctx, subject)
    return job.model_copy(
        update={
            "state": fx.ExportState.running,
            "approved_by": me.account_id,
            "progress": progress,
            "total": total,
        }
    )


# ------------------------------------------------------------------------------ the run


class _LostLease(Exception):
    """Another replica took the job over (this run's lease lapsed): stop, store nothing."""


@dataclass
class _Run:
    job: fx.ExportJob
    principal: Principal
    owner: str
    cursor: str
    page: int
    done: int
    exported: int
    types: frozenset[str] = field(default_factory=frozenset)


@dataclass
class _Page:
    first: str
    ids: list[str]
    """Every patient of the page (the keyset walk), members or not."""
    files: dict[str, list[dict[str, Any]]]
    exported: list[str]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


async def _claim(runtime: Runtime, job_id: str, owner: str) -> bool:
    """Take the job's lease if no live run holds it."""
    assert runtime.db is not None
    now = _now()
    return await store.claim_export_job(
        runtime.db, job_id, owner, now + timedelta(seconds=fx.LEASE_S), now
    )


async def _start(runtime: Runtime, job_id: str, owner: str) -> _Run:
    assert runtime.db is not None
    job = await _load(runtime.db, job_id)
    row = await store.export_run(runtime.db, job_id)
    assert row is not None
    principal = Principal.model_validate_json(row.run_principal or "")
    return _Run(
        job,
        principal,
        owner,
        row.cursor_patient,
        row.page,
        job.done,
        row.exported,
        frozenset(job.types),
    )


def _context(runtime: Runtime, run: _Run) -> CallContext:
    """The call context of one page: the approving administrator's, as at approval."""
    return CallContext(
        method=fx.APPROVE_EXPORT.name,
        principal=run.principal,
        runtime=runtime,
        deadline=time.time() + 60,
    )


def _changed(at: datetime | None, since: datetime | None) -> bool:
    return since is None or (at is not None and at > since)


async def _walk(runtime: Runtime, run: _Run) -> list[str]:
    assert runtime.db is not None
    return await store.patient_ids_after(runtime.db, run.cursor, runtime.settings.fhir_export_page)


async def _read_page(ctx: CallContext, run: _Run, ids: list[str]) -> _Page:
    """One page's resources, decrypted under the job's session (one keyvault call for the
    charts, one by scheduling for the appointments)."""
    runtime = runtime_of(ctx)
    database = runtime.db
    job, types, since = run.job, run.types, run.job.since
    members = ids
    if job.group_id is not None:
        members = [p for p in ids if (await care.decide(runtime, job.group_id, p)).allowed]
    page = _Page(ids[0], ids, {t: [] for t in fx.EXPORT_TYPES}, [])
    export_page = (job.job_id, page.first)
    batch = Batch()
    charts: list[
        tuple[
            store.PatientRow,
            int | None,
            list[tuple[store.EncounterRow, int]],
            allergies.Source | None,
        ]
    ] = []
    every: list[store.PrescriptionRow] = []
    wanted: list[store.PrescriptionRow] = []
    clinical = bool(types & {"Encounter", "Condition", "Observation"})
    for patient_id in members:
        row = await store.get_patient(database, patient_id)
        if row is None:
            continue
        index = None
        if "Patient" in types and _changed(row.updated_at, since):
            fields = codec.patient_full_fields(row, clinical=False)
            wanted_fields = {k: v for k, v in fields.items() if k in PATIENT_FIELDS}
            index = batch.add(codec.PATIENTS, patient_id, wanted_fields, patient=patient_id)
        encounters: list[tuple[store.EncounterRow, int]] = []
        if clinical:
            for e in await store.current_encounters(
                database, patient_id, fx.ENCOUNTERS_PER_PATIENT
            ):
                if _changed(e.recorded_at, since):
                    fields = codec.encounter_stored_fields(e)
                    at = batch.add(codec.ENCOUNTERS, e.row_id, fields, patient=patient_id)
                    encounters.append((e, at))
        source = None
        if "AllergyIntolerance" in types:
            source = await allergies.source(database, patient_id)
            if source.row is not None and not _changed(source.row.updated_at, since):
                source = None  # the list has not changed since: nor has any entry
            if source is not None:
                source.add_to(batch)
        charts.append((row, index, encounters, source))
        if types & {"MedicationRequest", "Provenance"}:
            mine = await store.prescriptions_of(database, patient_id)
            every += mine
            wanted += [
                p
                for p in mine
                if _changed(max(p.created_at, p.status_changed_at or p.created_at), since)
            ]
    if max(len(batch.rows) + len(wanted), len(batch.mac_rows) + len(every)) > kv.MAX_ROWS:
        raise Conflict(
            f"a page of {len(ids)} patients holds more than the {kv.MAX_ROWS} rows of one "
            "keyvault call: export with a smaller MEDIHAVEN_FHIR_EXPORT_PAGE"
        )
    plain, checked = await decrypt_with_prescriptions(
        ctx, batch, every, wanted, export_page=export_page
    )
    files = page.files
    found: set[str] = set()
    for row, index, encounters, source in charts:
        patient_id = row.patient_id
        if index is not None:
            if index in plain.failed:
                raise IntegrityError("a chart does not decrypt: it was edited outside Medihaven")
            files["Patient"].append(
                fhirmap.patient(codec.patient(row, plain.rows[index], clinical=False))
            )
            found.add(patient_id)
        for e, at in encounters:
            if at in plain.failed:
                continue
            encounter = codec.encounter(e, plain.rows[at])
            if "Encounter" in types:
                files["Encounter"].append(fhirmap.encounter(encounter))
            if "Condition" in types:
                files["Condition"] += fhirmap.conditions(encounter)
            if "Observation" in types:
                files["Observation"] += fhirmap.observations(encounter)
            found.add(patient_id)
        if source is not None:
            loaded = await allergies.read(ctx, source, plain)
            for entry in loaded.entries:
                if _changed(entry.updated_at, since):
                    files["AllergyIntolerance"].append(fhirmap.allergy(patient_id, entry))
                    found.add(patient_id)
    for p in checked.prescriptions:
        changed = max(p.created_at, p.status_changed_at or p.created_at)
        if "MedicationRequest" in types and _changed(changed, since):
            files["MedicationRequest"].append(fhirmap.medication_request(p))
        if "Provenance" in types and _changed(p.created_at, since):
            files["Provenance"].append(fhirmap.provenance(p))
        found.add(p.patient_id)
    if "Appointment" in types and members:
        reply = await runtime.rpc.call(
            fx.EXPORT_APPOINTMENTS,
            fx.ExportAppointmentsRequest(
                job_id=job.job_id, page_first=page.first, patient_ids=members, since=since
            ),
        )
        for a in reply.appointments:
            files["Appointment"].append(fhirmap.appointment(a))
            found.add(a.patient_id)
    page.exported = sorted(found)
    return page


def _ndjson(resources: list[dict[str, Any]]) -> bytes:
    return b"".join(
        json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode() + b"\n" for r in resources
    )


async def _seal_page(ctx: CallContext, run: _Run, page: _Page) -> None:
    """Audit each exported patient (before anything of theirs is sealed), seal each type's
    NDJSON in memory, and store the sealed files with the advanced cursor (one
    transaction, under the lease)."""
    runtime = runtime_of(ctx)
    assert runtime.db is not None
    # The page was read: renew the lease before its audits (a slow page is not taken over).
    renewed = await store.renew_export_lease(
        runtime.db, run.job.job_id, run.owner, _now() + timedelta(seconds=fx.LEASE_S)
    )
    if not renewed:
        raise _LostLease
    for patient_id in page.exported:
        subject = Subject(
            AuditType.export_patient, AuditAction.read, "patient", patient_id, run.job.job_id
        )
        await auditing.read(ctx, subject, [patient_id])
    box = SealedBox(PublicKey(base64.b64decode(run.job.recipient_public_key)))
    number = run.page + 1
    done = run.done + len(page.ids)
    exported = run.exported + len(page.exported)
    total = max(run.job.total, done)
    progress = f"{done} of {total} patients read, {exported} exported"
    async with runtime.db.transaction() as conn:
        renewed = await store.advance_export_job(
            conn,
            run.job.job_id,
            run.owner,
            page.ids[-1],
            number,
            done,
            total,
            exported,
            progress,
            _now() + timedelta(seconds=fx.LEASE_S),
        )
        if not renewed:
            raise _LostLease
        for kind, resources in page.files.items():
            if resources:
                await store.insert_export_file(
                    conn,
                    run.job.job_id,
                    kind,
                    number,
                    len(resources),
                    box.encrypt(_ndjson(resources)),
                )
    run.cursor, run.page, run.done, run.exported = page.ids[-1], number, done, exported
    run.job = run.job.model_copy(update={"total": total})


async def _finish(runtime: Runtime, run: _Run) -> None:
    assert runtime.db is not None
    rows = await store.export_files(runtime.db, run.job.job_id)
    order = {t: i for i, t in enumerate(fx.EXPORT_TYPES)}
    output = sorted(
        ({"type": r[0], "part": r[1], "count": r[2], "bytes": r[3]} for r in rows),
        key=lambda o: (order.get(str(o["type"]), 99), o["part"]),
    )
    await store.complete_export_job(
        runtime.db,
        run.job.job_id,
        run.owner,
        json.dumps(output),
        f"complete: {run.exported} patients exported",
    )


async def _fail(runtime: Runtime, run: _Run, message: str) -> None:
    """The job fails, saying why; its sealed pages go with it (never half delivered)."""
    assert runtime.db is not None
    async with runtime.db.transaction() as conn:
        if await store.fail_export_job(conn, run.job.job_id, run.owner, message[:500]):
            await store.delete_export_files(conn, run.job.job_id)


async def run_job(runtime: Runtime, job_id: str) -> None:
    """Run (or resume) a job whose lease this replica takes; pages until done."""
    owner = f"{runtime.instance}:{secrets.token_hex(4)}"
    if not await _claim(runtime, job_id, owner):
        return
    run = await _start(runtime, job_id, owner)
    try:
        while True:
            ctx = _context(runtime, run)
            current_call.set(ctx)
            ids = await _walk(runtime, run)
            if not ids:
                await _finish(runtime, run)
                return
            page = await _read_page(ctx, run, ids)
            await _seal_page(ctx, run, page)
            delay = runtime.settings.fhir_export_page_delay_s
            if delay:
                await asyncio.sleep(delay)
    except _LostLease:
        log.warning("records.export_lease_lost", job_id=job_id)
    except (Unavailable, RpcTimeout) as exc:
        # Transient: the lease lapses and a replica resumes at this page.
        log.warning("records.export_paused", job_id=job_id, error=exc.message)
    except Exception as exc:
        message = exc.message if isinstance(exc, RpcError) else "the export failed"
        log.warning("records.export_failed", job_id=job_id, error=message, kind=type(exc).__name__)
        await _fail(runtime, run, message)


async def resume_loop(runtime: Runtime) -> None:
    """Every second: run any `running` job whose lease has lapsed (a new approval, or a
    run whose replica died), one at a time on this replica."""
    while True:
        try:
            assert runtime.db is not None
            for job_id in await store.runnable_export_jobs(runtime.db, _now()):
                await run_job(runtime, job_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the loop outlives a database hiccup
            log.warning("records.export_resume_failed", kind=type(exc).__name__)
        await asyncio.sleep(RESUME_EVERY_S)


async def status(req: fx.ExportJobRequest, ctx: CallContext) -> fx.ExportJob:
    return await _load(runtime_of(ctx).db, req.job_id)


async def file(req: fx.ExportFileRequest, ctx: CallContext) -> fx.ExportFile:
    """A file of a complete export, sealed as it is stored (records cannot open it)."""
    row = await store.export_file(runtime_of(ctx).db, req.job_id, req.resource_type, req.part)
    if row is None:
        raise NotFound("that export has no such file (yet)")
    count, sealed = row
    return fx.ExportFile(
        resource_type=req.resource_type,
        part=req.part,
        count=count,
        sealed=base64.b64encode(sealed).decode(),
    )
