"""Audit events (shaped after FHIR AuditEvent) and the audit service's methods.

Every service publishes an `AuditEvent` for every read or change of patient data and
every security-relevant action; the audit service stores them in a hash chain.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from contracts.base import GATEWAY, EventType, HttpRoute, Model, Role, RpcMethod

SERVICE = "audit"
MAX_PATIENTS = 1000
"""Patients one audit event may name (a page of a list or a calendar)."""


class AuditAction(StrEnum):
    """FHIR AuditEvent.action: create, read, update, delete, execute."""

    create = "C"
    read = "R"
    update = "U"
    delete = "D"
    execute = "E"


class AuditType(StrEnum):
    """Every type of audit event, `<subject>.<what>`: the subject says who may record it
    (`AUDIT_TYPE_SOURCES`), and administrators filter the log on these values."""

    # patient: recorded by records
    patient_break_glass = "patient.break_glass"
    patient_briefs = "patient.briefs"
    patient_create = "patient.create"
    patient_duplicate_shown = "patient.duplicate_shown"
    patient_flags = "patient.flags"
    patient_list = "patient.list"
    patient_read = "patient.read"
    patient_search = "patient.search"
    patient_summary = "patient.summary"
    patient_update = "patient.update"

    # encounter: recorded by records
    encounter_amend = "encounter.amend"
    encounter_create = "encounter.create"
    encounter_list = "encounter.list"
    encounter_read = "encounter.read"

    # prescription: recorded by records
    prescription_cancel = "prescription.cancel"
    prescription_check = "prescription.check"
    prescription_complete = "prescription.complete"
    prescription_create = "prescription.create"
    prescription_list = "prescription.list"
    prescription_read = "prescription.read"
    prescription_verify = "prescription.verify"

    # allergy: recorded by records
    allergy_change = "allergy.change"
    allergy_list = "allergy.list"
    allergy_list_built = "allergy.list_built"
    allergy_record = "allergy.record"

    # catalog: recorded by records
    catalog_add = "catalog.add"
    catalog_retire = "catalog.retire"
    catalog_sample_loaded = "catalog.sample_loaded"
    catalog_update = "catalog.update"

    # export: recorded by records
    export_approved = "export.approved"
    export_patient = "export.patient"
    export_requested = "export.requested"

    # appointment: recorded by scheduling
    appointment_book = "appointment.book"
    appointment_cancel = "appointment.cancel"
    appointment_check_in = "appointment.check_in"
    appointment_finish = "appointment.finish"
    appointment_no_show = "appointment.no_show"
    appointment_read = "appointment.read"
    appointment_reschedule = "appointment.reschedule"
    appointment_start = "appointment.start"

    # availability: recorded by scheduling
    availability_change = "availability.change"

    # calendar: recorded by scheduling
    calendar_read = "calendar.read"
    calendar_today = "calendar.today"

    # auth: recorded by auth
    auth_account_disabled = "auth.account_disabled"
    auth_account_enabled = "auth.account_enabled"
    auth_key_rotated = "auth.key_rotated"
    auth_registered = "auth.registered"
    auth_token_issued = "auth.token_issued"  # noqa: S105 (an event name, not a secret)
    auth_token_revoked = "auth.token_revoked"  # noqa: S105

    # attendance: recorded by auth, the gateway and the keyvault
    attendance_check_in = "attendance.check_in"
    attendance_check_out = "attendance.check_out"
    attendance_event_refused = "attendance.event_refused"
    attendance_off_duty_break_glass = "attendance.off_duty_break_glass"
    attendance_off_duty_emergency = "attendance.off_duty_emergency"
    attendance_off_duty_refused = "attendance.off_duty_refused"
    attendance_unreadable = "attendance.unreadable"
    attendance_webhook_refused = "attendance.webhook_refused"

    # vault: recorded by the keyvault
    vault_care_refused = "vault.care_refused"
    vault_ceremony_cancelled = "vault.ceremony_cancelled"
    vault_ceremony_committed = "vault.ceremony_committed"
    vault_ceremony_prepared = "vault.ceremony_prepared"
    vault_ceremony_share = "vault.ceremony_share"
    vault_ceremony_started = "vault.ceremony_started"
    vault_grant_refused = "vault.grant_refused"
    vault_initialise = "vault.initialise"
    vault_key_destroyed = "vault.key_destroyed"
    vault_min_decryption = "vault.min_decryption"
    vault_rewrap_cancelled = "vault.rewrap_cancelled"
    vault_rewrap_completed = "vault.rewrap_completed"
    vault_rewrap_rows_failed = "vault.rewrap_rows_failed"
    vault_rewrap_started = "vault.rewrap_started"
    vault_root_adopted = "vault.root_adopted"
    vault_rotate = "vault.rotate"
    vault_seal = "vault.seal"
    vault_unseal = "vault.unseal"

    # gateway: recorded by the gateway
    gateway_rate_limited = "gateway.rate_limited"
    gateway_signature_refused = "gateway.signature_refused"

    # bus: recorded by any service (a refused call, event or signature on the bus)
    bus_call_refused = "bus.call_refused"
    bus_event_refused = "bus.event_refused"
    bus_signature_refused = "bus.signature_refused"

    # integrity: a row whose MAC does not verify (auth, records, scheduling, chat, audit)
    integrity_row_rejected = "integrity.row_rejected"

    # audit: recorded by the audit service itself
    audit_integrity_alert = "audit.integrity_alert"


class AuditOutcome(StrEnum):
    """FHIR AuditEvent.outcome, simplified: success, refused (4xx), failure (5xx)."""

    success = "success"
    refused = "refused"
    failure = "failure"


class AuditAgent(Model):
    """Who acted (FHIR AuditEvent.agent); account_id None for anonymous or system actions."""

    account_id: str | None = None
    role: Role | None = None
    address: str | None = Field(default=None, description="Client network address, if known.")


class AuditEvent(Model):
    """One audited action. `type` names it (e.g. `patient.read`, `keyvault.unseal`)."""

    event_id: str = Field(description="Unique id chosen by the publisher (de-duplication).")
    type: str = Field(max_length=100)
    action: AuditAction
    outcome: AuditOutcome
    recorded: datetime
    agent: AuditAgent
    source: str = Field(description="The service that observed the action.")
    patient_id: str | None = Field(default=None, description="Entity: the patient concerned.")
    patients: list[str] = Field(
        default=[],
        max_length=MAX_PATIENTS,
        description="Entities: every patient a read touched, when it touched several (a "
        "list, a search, a calendar: one event naming them all; `patient_id` is then None).",
    )
    entity_type: str | None = None
    entity_id: str | None = None
    purpose_of_use: str | None = Field(default=None, description="e.g. TREAT, ETREAT")
    detail: str | None = Field(default=None, max_length=1000)
    trace_id: str | None = None

    def concerns(self, patient_id: str) -> bool:
        """Whether this event is about `patient_id` (alone or among others)."""
        return self.patient_id == patient_id or patient_id in self.patients


AUDIT_PUBLISHERS = frozenset(
    {GATEWAY, "auth", "records", "scheduling", "keyvault", "chat", SERVICE}
)
_RECORDS, _SCHEDULING = frozenset({"records"}), frozenset({"scheduling"})
AUDIT_TYPE_SOURCES: dict[str, frozenset[str]] = {
    "patient": _RECORDS,
    "encounter": _RECORDS,
    "prescription": _RECORDS,
    "allergy": _RECORDS,
    "catalog": _RECORDS,
    "export": _RECORDS,
    "appointment": _SCHEDULING,
    "availability": _SCHEDULING,
    "calendar": _SCHEDULING,
    "vault": frozenset({"keyvault"}),
    "auth": frozenset({"auth"}),
    "gateway": frozenset({GATEWAY}),
    "chat": frozenset({"chat"}),
    "audit": frozenset({SERVICE}),
    "integrity": frozenset({"auth", "records", "scheduling", "chat", SERVICE}),
    "bus": AUDIT_PUBLISHERS,
    "attendance": frozenset({"auth", GATEWAY, "keyvault"}),
}
"""Who may record which audit events, by the type's first part: a taken-over scheduling
service cannot write a `patient.read` into the chain in records' name."""


def may_record(type: str, publisher: str | None) -> bool:
    """Whether `publisher` (broker-validated) may record an audit event of `type`: a type
    of `AuditType` (a made-up one would escape the administrators' filters) whose subject
    is `publisher`'s."""
    if type not in _KNOWN_TYPES:
        return False
    sources = AUDIT_TYPE_SOURCES.get(type.split(".", 1)[0], frozenset())
    return publisher is not None and publisher in sources


_KNOWN_TYPES = frozenset(t.value for t in AuditType)


AUDIT_RECORDED = EventType("audit.recorded", AuditEvent, publishers=AUDIT_PUBLISHERS)
"""Every part of the mesh audits; the audit service keeps, with each entry, the publisher the
broker validated, and an entry whose `source` is not its publisher is kept apart."""


# ---------------------------------------------------------------------------- audit service

ADMIN = frozenset({Role.administrator})
MAX_PAGE = 500
MAX_OFFSET = 10**9


class SortField(StrEnum):
    seq = "seq"
    recorded = "recorded"
    account_id = "account_id"
    patient_id = "patient_id"
    action = "action"
    outcome = "outcome"
    type = "type"


class AuditQuery(Model):
    """Filters (all optional, combined with AND), sort order and a page."""

    recorded_from: datetime | None = None
    recorded_to: datetime | None = None
    account_id: str | None = Field(default=None, max_length=64)
    patient_id: str | None = Field(default=None, max_length=64)
    action: AuditAction | None = None
    outcome: AuditOutcome | None = None
    type: AuditType | None = None
    sort: SortField = SortField.seq
    descending: bool = False
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    limit: int = Field(default=100, ge=1, le=MAX_PAGE)


class StoredAuditEvent(Model):
    seq: int
    event: AuditEvent
    publisher: str | None = Field(
        default=None, description="The service that published it, as the broker validated it."
    )


class AuditPage(Model):
    entries: list[StoredAuditEvent]
    total: int
    next_offset: int | None = None


class PatientHistoryRequest(Model):
    patient_id: str = Field(min_length=1, max_length=64)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    limit: int = Field(default=100, ge=1, le=MAX_PAGE)


class ExportReply(Model):
    """FHIR AuditEvent resources, one JSON document per line (NDJSON)."""

    ndjson: str
    count: int
    next_offset: int | None = None


class VerifyRequest(Model):
    pass


class FullVerificationState(StrEnum):
    running = "running"
    passed = "passed"
    failed = "failed"


class FullVerification(Model):
    """A walk of the whole chain from its first entry (a background job: progress here)."""

    walk_id: int
    state: FullVerificationState
    checked: int = Field(description="Entries verified so far.")
    total: int = Field(description="Entries in the chain when the walk began.")
    started_at: datetime
    finished_at: datetime | None = None
    started_by: str | None = None
    first_bad_seq: int | None = None
    problem: str | None = None


class VerifyReply(Model):
    """The chain verified from `since_seq` (the last verified mark, MAC'd by the keyvault)
    to the head: seconds, whatever the chain's size. The whole chain is walked by the
    full verification (`audit.verify_full`), in the background."""

    ok: bool
    entries: int = Field(description="Entries verified by this call (from since_seq).")
    checkpoints: int
    since_seq: int = Field(default=0, description="Verified before (0: from the first entry).")
    head_seq: int = 0
    first_bad_seq: int | None = None
    problem: str | None = Field(
        default=None, description="What is wrong at first_bad_seq: edited, inserted, deleted…"
    )
    last_full: FullVerification | None = Field(
        default=None, description="The latest full verification, running or finished."
    )


class StartFullVerificationRequest(Model):
    pass


class FullVerificationRequest(Model):
    pass


_QUERY_FIELDS = (
    "recorded_from",
    "recorded_to",
    "account_id",
    "patient_id",
    "action",
    "outcome",
    "type",
    "sort",
    "descending",
    "offset",
    "limit",
)
QUERY = RpcMethod(
    SERVICE,
    "audit.query",
    AuditQuery,
    AuditPage,
    roles=ADMIN,
    route=HttpRoute("GET", "/audit/events", query=_QUERY_FIELDS),
)
PATIENT_HISTORY = RpcMethod(
    SERVICE,
    "audit.patient_history",
    PatientHistoryRequest,
    AuditPage,
    roles=ADMIN,
    route=HttpRoute(
        "GET",
        "/audit/patients/{patient_id}",
        query=("offset", "limit"),
        summary="Who read or changed this patient's record, and when.",
    ),
)
EXPORT = RpcMethod(
    SERVICE,
    "audit.export",
    AuditQuery,
    ExportReply,
    roles=ADMIN,
    route=HttpRoute(
        "GET",
        "/audit/export",
        query=_QUERY_FIELDS,
        summary="FHIR AuditEvent resources as NDJSON (one page; `X-Next-Offset` names the next).",
    ),
)
VERIFY = RpcMethod(
    SERVICE,
    "audit.verify",
    VerifyRequest,
    VerifyReply,
    roles=ADMIN,
    route=HttpRoute(
        "GET",
        "/audit/verify",
        summary="The chain since the last verified mark, and the latest full walk's state.",
    ),
)
VERIFY_FULL = RpcMethod(
    SERVICE,
    "audit.verify_full",
    StartFullVerificationRequest,
    FullVerification,
    write=True,
    roles=ADMIN,
    route=HttpRoute(
        "POST",
        "/audit/verify/full",
        status=202,
        summary="Start walking the whole chain in the background (or join the walk running).",
    ),
)
FULL_VERIFICATION = RpcMethod(
    SERVICE,
    "audit.full_verification",
    FullVerificationRequest,
    FullVerification,
    roles=ADMIN,
    route=HttpRoute("GET", "/audit/verify/full", summary="The latest full walk's progress."),
)
