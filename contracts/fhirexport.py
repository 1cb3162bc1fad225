"""FHIR Bulk Data `$export` (asynchronous): two administrators, sealed NDJSON.

Bulk export is the largest leak an EMR can have, so no single account can make one:

1. An administrator signs the kick-off (`Patient/$export`, or `Group/{id}/$export` for
   one physician's patients in care), naming an X25519 recipient public key. Records
   keeps the job, `awaiting_approval`; the job id is the kick-off's digest
   (`kickoff_digest`: SHA-256 of its signature input and signature).
2. A different administrator signs the approval (`$export-approval/{job_id}`), so the
   approval names the kick-off's digest. Records then makes the export's one DECRYPT
   call on the approval's proof, carrying the kick-off's proof with it
   (`keyvault.Countersigned`). The keyvault itself checks both signatures, that the
   signers are two different active administrators, that the approval names that very
   kick-off, and (for a Group) that every row's patient is in that physician's care: a
   taken-over gateway or records service cannot export with one administrator.
   That call opens the keyvault's *export session* for the job (the keyvault's own
   table, keyed by the kick-off's digest): only then, and only until it expires, does the
   keyvault serve `EXPORT_DECRYPT` for that job, to records (charts) and scheduling
   (appointments), patient by patient in ascending id order (a page may be asked again,
   an earlier one never), each row bound to a patient (for a Group, one in care).
3. Records walks the patients in pages (keyset pagination on the patient id), maps each
   page's rows to FHIR (`mesh.fhirmap`), audits each exported patient (fail closed),
   seals each resource type's NDJSON of that page to the recipient key (a libsodium
   sealed box: one output file per type and page) and stores the sealed files with the
   job's cursor in one transaction: the database, the gateway and the wire carry
   ciphertext only; only the recipient's private key opens it. A run holds a lease on
   its job; a records replica that dies mid-way leaves sealed pages and the cursor, and
   any replica resumes at the next page once the lease has lapsed (plaintext only ever
   lived in the dead process's memory).

Kick-off parameters (Bulk Data IG): `_type` (a comma-separated list of `EXPORT_TYPES`;
anything else is a 400 OperationOutcome) and `_since` (an instant: only resources
changed after it, by the timestamps `SINCE_MEANS` names per type). The status route
answers 202 with `X-Progress` while the job waits or runs, and the manifest when it is
complete; each output file is fetched sealed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field

from contracts import keyvault as kv
from contracts import records as rec
from contracts import scheduling as sch
from contracts.base import HttpMethodName, HttpRoute, Model, Role, RpcMethod
from contracts.fhir import FHIR_PREFIX
from contracts.grants import Decrypt, Grant

ADMIN = frozenset({Role.administrator})
EXPORT_TYPES = (
    "Patient",
    "Encounter",
    "Condition",
    "Observation",
    "AllergyIntolerance",
    "MedicationRequest",
    "Provenance",
    "Appointment",
)
"""What an export holds: every type the read API returns for a patient (NDJSON files;
Provenance: the prescribers' signatures of the MedicationRequests)."""
SINCE_MEANS: dict[str, str] = {
    "Patient": "the patient row's last change (demographics or contact)",
    "Encounter": "the encounter's latest version (its recorded time)",
    "Condition": "the latest version of the encounter it is a diagnosis of",
    "Observation": "the latest version of the encounter it was measured in",
    "AllergyIntolerance": "the allergy entry's own last change",
    "MedicationRequest": "its creation or its last status change (cancelled, completed)",
    "Provenance": "its creation (a prescriber's signature never changes)",
    "Appointment": "the appointment's last change (booking, status, reschedule)",
}
"""What `_since` compares for each type (said in the CapabilityStatement too)."""
ENCOUNTERS_PER_PATIENT = 100
PAGE_PATIENTS = 20
"""Patients per page (one keyvault call per page: `keyvault.MAX_ROWS` rows)."""
LEASE_S = 10.0
"""A run renews its job's lease every page; a lapsed lease lets another replica resume."""
SESSION_S = 12 * 3600.0
"""How long after its approval the keyvault serves an export's pages."""
APPROVAL_WINDOW_S = 24 * 3600.0
"""A kick-off is approved within this time of its signature, or not at all."""
EXPORTED_TABLES = frozenset(
    {rec.PATIENTS_TABLE, rec.ENCOUNTERS_TABLE, rec.PRESCRIPTIONS_TABLE, rec.ALLERGIES_TABLE}
)
SESSION_TABLES = EXPORTED_TABLES | {sch.APPOINTMENTS_TABLE}
"""What the keyvault decrypts for an open export session (`EXPORT_DECRYPT`)."""
PATIENT_COLUMNS = frozenset({"mrn", "identity", "contact"})
"""The patient columns a session decrypts: a FHIR Patient's (no insurance, no flags)."""
JobId = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def kickoff_digest(signature_input: str, signature: str) -> str:
    """The job id: what an approval names (a kick-off's signature identifies it)."""
    return hashlib.sha256(f"{signature_input}\n{signature}".encode()).hexdigest()


def _x25519_key(value: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the recipient key is not base64") from None
    if len(raw) != 32:
        raise ValueError("the recipient key is not a 32-byte X25519 public key")
    return value


RecipientKey = Annotated[str, Field(max_length=64), AfterValidator(_x25519_key)]


def _types(value: object) -> object:
    """`_type`: comma-separated resource types of `EXPORT_TYPES`, none twice."""
    if value is None or not isinstance(value, str):
        return value
    if len(value) > 200:
        raise ValueError("_type is too long")
    names = [v.strip() for v in value.split(",")]
    unknown = [n for n in names if n not in EXPORT_TYPES]
    if unknown or not names:
        raise ValueError(
            f"_type names {', '.join(unknown) or 'nothing'}: an export holds only "
            + ", ".join(EXPORT_TYPES)
        )
    if len(set(names)) != len(names):
        raise ValueError("_type names a resource type twice")
    return ",".join(names)


def _instant(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("_since is an instant: it needs a time zone (e.g. Z)")
    return value


ExportTypes = Annotated[Annotated[str, Field(max_length=200)] | None, BeforeValidator(_types)]
Since = Annotated[datetime | None, AfterValidator(_instant)]


class KickoffRequest(Model):
    """Kick-off parameters by their Bulk Data names (`_type`, `_since`), in the URL."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True)

    recipient_public_key: RecipientKey
    type: ExportTypes = Field(default=None, alias="_type")
    since: Since = Field(default=None, alias="_since")


class PatientExportRequest(KickoffRequest):
    pass


class GroupExportRequest(KickoffRequest):
    """Group = the patients in one physician's care (`group_id` is their account id)."""

    group_id: sch.Id


def types_of(request: KickoffRequest) -> tuple[str, ...]:
    """The types an export holds (every type without `_type`), in `EXPORT_TYPES` order."""
    if request.type is None:
        return EXPORT_TYPES
    wanted = set(request.type.split(","))
    return tuple(t for t in EXPORT_TYPES if t in wanted)


class ExportJobRequest(Model):
    job_id: JobId


class ExportFileRequest(Model):
    job_id: JobId
    resource_type: Annotated[str, Field(pattern=f"^({'|'.join(EXPORT_TYPES)})$")]
    part: int = Field(ge=1, le=10_000_000, description="The page the file was sealed for.")


class ExportState(StrEnum):
    awaiting_approval = "awaiting_approval"
    running = "running"
    complete = "complete"
    failed = "failed"


class ExportOutput(Model):
    type: str
    part: int
    count: int
    bytes: int


class ExportJob(Model):
    job_id: str
    group_id: str | None
    requested_by: str
    approved_by: str | None
    state: ExportState
    done: int
    total: int
    progress: str
    recipient_public_key: str
    requested_at: datetime
    types: list[str] = Field(default_factory=lambda: list(EXPORT_TYPES))
    since: datetime | None = None
    output: list[ExportOutput] = Field(default_factory=list)
    error: str | None = None


class ExportFile(Model):
    resource_type: str
    part: int
    count: int
    sealed: str = Field(description="The NDJSON, sealed to the recipient key (base64).")


def _route(method: HttpMethodName, path: str, status: int = 200) -> HttpRoute:
    return HttpRoute(method, path, status=status, prefix=FHIR_PREFIX)


KICKOFF_QUERY = ("_type", "_since")
PATIENT_EXPORT = RpcMethod(
    rec.SERVICE,
    "records.fhir_export_patients",
    PatientExportRequest,
    ExportJob,
    write=True,
    roles=ADMIN,
    route=HttpRoute(
        "POST", "/Patient/$export", query=KICKOFF_QUERY, status=202, prefix=FHIR_PREFIX
    ),
)
GROUP_EXPORT = RpcMethod(
    rec.SERVICE,
    "records.fhir_export_group",
    GroupExportRequest,
    ExportJob,
    write=True,
    roles=ADMIN,
    route=HttpRoute(
        "POST", "/Group/{group_id}/$export", query=KICKOFF_QUERY, status=202, prefix=FHIR_PREFIX
    ),
)
KICKOFFS = (PATIENT_EXPORT, GROUP_EXPORT)
APPROVE_EXPORT = RpcMethod(
    rec.SERVICE,
    "records.fhir_export_approve",
    ExportJobRequest,
    ExportJob,
    write=True,
    roles=ADMIN,
    route=_route("POST", "/$export-approval/{job_id}", 202),
    grant=Grant(decrypt=Decrypt(tables=EXPORTED_TABLES, countersigned=True)),
)
"""The export's one DECRYPT is served on this proof only with the kick-off's proof of a
different administrator (`services.keyvault.exports`)."""
EXPORT_STATUS = RpcMethod(
    rec.SERVICE,
    "records.fhir_export_status",
    ExportJobRequest,
    ExportJob,
    roles=ADMIN,
    route=_route("GET", "/$export-status/{job_id}"),
)
EXPORT_FILE = RpcMethod(
    rec.SERVICE,
    "records.fhir_export_file",
    ExportFileRequest,
    ExportFile,
    roles=ADMIN,
    route=_route("GET", "/$export-file/{job_id}/{resource_type}/{part}"),
)


class ExportDecryptRequest(Model):
    """Rows of one page of an approved export (each bound to its patient)."""

    job_id: JobId
    page_first: rec.Uuid = Field(description="The page's first patient id (its floor).")
    rows: list[kv.FieldRow] = Field(max_length=kv.MAX_ROWS)
    mac_rows: list[kv.MacRow] = Field(default_factory=list, max_length=kv.MAX_ROWS)
    mac_tags: list[str] = Field(default_factory=list, max_length=kv.MAX_ROWS)


EXPORT_DECRYPT = RpcMethod(
    kv.SERVICE,
    "keyvault.export_decrypt",
    ExportDecryptRequest,
    kv.DecryptReply,
    callers=frozenset({rec.SERVICE, sch.SERVICE}),
)
"""Served only for a job whose export session the keyvault opened itself, on the two
administrators' signatures (`services.keyvault.exports`), until it expires; rows of
`SESSION_TABLES`, of the caller's own tables, each bound to a patient at or after the
page's first patient, which is at or after the session's floor (the first patient of the
page last served), in a Group export each in that physician's care."""


class ExportAppointmentsRequest(Model):
    job_id: JobId
    page_first: rec.Uuid
    patient_ids: list[rec.Uuid] = Field(max_length=PAGE_PATIENTS * 10)
    since: datetime | None = None


class ExportAppointments(Model):
    appointments: list[sch.Appointment]


EXPORT_APPOINTMENTS = RpcMethod(
    sch.SERVICE,
    "scheduling.fhir_export_appointments",
    ExportAppointmentsRequest,
    ExportAppointments,
    callers=frozenset({rec.SERVICE}),
)
"""One page's appointments (their reasons decrypted under the job's export session:
scheduling holds no signature of its own for a background export)."""

ROUTED: tuple[RpcMethod[Any, Any], ...] = (*KICKOFFS, APPROVE_EXPORT, EXPORT_STATUS, EXPORT_FILE)
"""The bulk export's interactions (administrators only; their refusals are tested through
the gateway in tests/gateway/test_fhir_export.py)."""
