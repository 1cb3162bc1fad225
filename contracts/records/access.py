"""Per-patient access: the care check the keyvault asks and break-glass."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from contracts.base import GATEWAY, EventType, HttpRoute, Model, RpcMethod
from contracts.grants import Decrypt, Grant
from contracts.records.catalog import CATALOG_ADMIN
from contracts.records.common import CLINICAL, SERVICE, Reason, Uuid
from contracts.records.tables import (
    ALLERGIES_TABLE,
    BREAK_GLASS_TABLE,
    ENCOUNTERS_TABLE,
    PRESCRIPTIONS_TABLE,
)

ACCESS_SERVICE = "recordsaccess"
"""Records' access decisions, on a queue of their own: the keyvault asks while a records
handler is waiting for that very keyvault call, so they must not share records' slots."""
CLINICAL_TABLES = (ENCOUNTERS_TABLE, PRESCRIPTIONS_TABLE, ALLERGIES_TABLE)
"""Keyvault tables holding clinical data: decrypting them needs a care relationship."""


class CareBasis(StrEnum):
    encounter = "encounter"
    appointment = "appointment"
    break_glass = "break_glass"


class MayReadRequest(Model):
    physician_id: str = Field(max_length=64)
    patient_id: str = Field(max_length=64)
    break_glass_only: bool = Field(
        default=False,
        description="Only an open break-glass grant counts (off duty: `contracts.attendance`).",
    )


class MayReadReply(Model):
    allowed: bool
    basis: CareBasis | None = None


class BreakGlassRequest(Model):
    patient_id: Uuid
    reason: Reason


class BreakGlassOpened(Model):
    grant_id: str
    patient_id: str
    expires_at: datetime


class BreakGlassGrant(Model):
    grant_id: str
    patient_id: str
    physician_id: str
    opened_at: datetime
    expires_at: datetime
    reason: str
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    note: str | None = None


class BreakGlassReportRequest(Model):
    unacknowledged_only: bool = False
    limit: int = Field(default=100, ge=1, le=500)


class BreakGlassReport(Model):
    grants: list[BreakGlassGrant]


class AcknowledgeBreakGlassRequest(Model):
    grant_id: Uuid
    note: str = Field(default="", max_length=1000)


class BreakGlassNotice(Model):
    """Published when a physician opens a chart in an emergency (ids and times only)."""

    grant_id: str
    physician_id: str
    patient_id: str
    expires_at: datetime


MAY_READ = RpcMethod(
    ACCESS_SERVICE,
    "recordsaccess.may_read",
    MayReadRequest,
    MayReadReply,
    callers=frozenset({"keyvault", GATEWAY}),  # the gateway: break-glass off duty (attendance)
)
BREAK_GLASS = RpcMethod(
    SERVICE,
    "records.break_glass",
    BreakGlassRequest,
    BreakGlassOpened,
    write=True,
    roles=CLINICAL,
    route=HttpRoute(
        "POST",
        "/patients/{patient_id}/break-glass",
        status=201,
        summary="Open a chart without a care relationship, in an emergency: time-limited, "
        "audited (ETREAT) and reported to administrators.",
    ),
)
BREAK_GLASS_REPORT = RpcMethod(
    SERVICE,
    "records.break_glass_report",
    BreakGlassReportRequest,
    BreakGlassReport,
    roles=CATALOG_ADMIN,
    route=HttpRoute("GET", "/break-glass", query=("unacknowledged_only", "limit")),
    grant=Grant(
        decrypt=Decrypt(
            tables=frozenset({BREAK_GLASS_TABLE}), columns=frozenset({"reason"}), max_rows="limit"
        )
    ),
)
ACKNOWLEDGE_BREAK_GLASS = RpcMethod(
    SERVICE,
    "records.acknowledge_break_glass",
    AcknowledgeBreakGlassRequest,
    BreakGlassGrant,
    write=True,
    roles=CATALOG_ADMIN,
    route=HttpRoute("POST", "/break-glass/{grant_id}/acknowledge"),
    grant=Grant(
        decrypt=Decrypt(
            tables=frozenset({BREAK_GLASS_TABLE}), columns=frozenset({"reason"}), row_id="grant_id"
        )
    ),
)
BREAK_GLASS_OPENED = EventType(
    "records.break_glass.opened", BreakGlassNotice, publishers=frozenset({SERVICE})
)
