"""Audit events (shaped after FHIR AuditEvent) and the audit service's methods.

Every service publishes an `AuditEvent` for every read or change of patient data and
every security-relevant action; the audit service stores them in a hash chain.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from contracts.base import EventType, Model, Role, RpcMethod

SERVICE = "audit"


class AuditAction(StrEnum):
    """FHIR AuditEvent.action: create, read, update, delete, execute."""

    create = "C"
    read = "R"
    update = "U"
    delete = "D"
    execute = "E"


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
    entity_type: str | None = None
    entity_id: str | None = None
    purpose_of_use: str | None = Field(default=None, description="e.g. TREAT, ETREAT")
    detail: str | None = Field(default=None, max_length=1000)
    trace_id: str | None = None


AUDIT_RECORDED = EventType("audit.recorded", AuditEvent)
"""Routing key pattern for consumers: `audit.#`."""


# ---------------------------------------------------------------------------- audit service

ADMIN = frozenset({Role.administrator})
MAX_PAGE = 500


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
    type: str | None = Field(default=None, max_length=100)
    sort: SortField = SortField.seq
    descending: bool = False
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=100, ge=1, le=MAX_PAGE)


class StoredAuditEvent(Model):
    seq: int
    event: AuditEvent


class AuditPage(Model):
    entries: list[StoredAuditEvent]
    total: int
    next_offset: int | None = None


class PatientHistoryRequest(Model):
    patient_id: str = Field(max_length=64)
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=100, ge=1, le=MAX_PAGE)


class ExportReply(Model):
    """FHIR AuditEvent resources, one JSON document per line (NDJSON)."""

    ndjson: str
    count: int
    next_offset: int | None = None


class VerifyRequest(Model):
    pass


class VerifyReply(Model):
    ok: bool
    entries: int
    checkpoints: int
    first_bad_seq: int | None = None
    problem: str | None = Field(
        default=None, description="What is wrong at first_bad_seq: edited, inserted, deleted…"
    )


QUERY = RpcMethod(SERVICE, "audit.query", AuditQuery, AuditPage, roles=ADMIN)
PATIENT_HISTORY = RpcMethod(
    SERVICE, "audit.patient_history", PatientHistoryRequest, AuditPage, roles=ADMIN
)
EXPORT = RpcMethod(SERVICE, "audit.export", AuditQuery, ExportReply, roles=ADMIN)
VERIFY = RpcMethod(SERVICE, "audit.verify", VerifyRequest, VerifyReply, roles=ADMIN)
