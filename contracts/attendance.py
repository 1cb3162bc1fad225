"""Wire contracts of attendance: staff reach patient data only while on duty.

Three sources say who is on duty, and the auth service keeps the one state they feed
(`services/auth/attendance.py`, which says why there):

1. the hospital's time-clock system publishes `attendance.checked_in` and
   `attendance.checked_out` on the bus with its own broker identity, `timeclock`, the
   only identity besides auth that may publish them (the runtime refuses and audits any
   other publisher, and the broker's topic permissions refuse it first);
2. a time clock that cannot speak AMQP posts the same events to a signed HTTP webhook
   (`POST /api/v1/attendance/webhook`, HMAC-SHA-256 under a key the operator configures;
   verified by auth, not by the gateway, so a taken-over gateway cannot forge one);
3. an administrator checks a staff member in or out by hand, with a reason (audited):
   `medihaven attendance check-in | check-out`, or the routes below.

The policy (`mesh/attendance.py`) is enforced at the gateway and again by the keyvault
before it decrypts, from what is declared here: which methods are patient data, which
areas (own calendar, chat) a role keeps off duty, and which door break-glass is.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from contracts import chat, records, scheduling
from contracts.auth import SERVICE as AUTH
from contracts.base import (
    ALL_ROLES,
    GATEWAY,
    EventType,
    HttpRoute,
    Model,
    Role,
    RpcMethod,
)

TIMECLOCK = "timeclock"
"""The broker identity of the hospital's time-clock system (publishes attendance only)."""
KEYVAULT = "keyvault"

ON_DUTY_ROLES = frozenset({Role.physician, Role.receptionist})
"""Roles whose patient-data requests need a check-in; administrators never read patient
data, so their work is unaffected."""


class Source(StrEnum):
    timeclock = "timeclock"
    webhook = "webhook"
    manual = "manual"
    shift_limit = "shift_limit"
    """Not a source of events: the state a shift is in once the maximum has passed."""


Place = Field(default="", max_length=200, description="Where: a site, building or terminal.")


class CheckedIn(Model):
    """A staff member checked in (at the time clock, or by an administrator)."""

    staff_id: str = Field(min_length=1, max_length=64, description="The Medihaven account id.")
    at: datetime = Field(description="When, with its time zone (UTC on the wire).")
    place: str = Place


class CheckedOut(Model):
    """A staff member checked out; also ends a shift before its maximum."""

    staff_id: str = Field(min_length=1, max_length=64)
    at: datetime
    place: str = Place


CHECKED_IN = EventType("attendance.checked_in", CheckedIn, publishers=frozenset({TIMECLOCK, AUTH}))
"""From the time clock (identity `timeclock`); auth republishes manual and webhook
check-ins so every listener sees one stream (auth ignores its own)."""
CHECKED_OUT = EventType(
    "attendance.checked_out", CheckedOut, publishers=frozenset({TIMECLOCK, AUTH})
)
EVENTS = (CHECKED_IN, CHECKED_OUT)


class DutyStatus(Model):
    account_id: str
    on_duty: bool
    since: datetime | None = Field(default=None, description="Checked in at (this shift).")
    until: datetime | None = Field(
        default=None, description="The shift ends by itself then, without a check-out."
    )
    place: str | None = None
    source: Source | None = Field(default=None, description="Who said so last.")
    checked_out_at: datetime | None = None
    required: bool = Field(
        description="Whether this clinic binds patient-data access to attendance at all."
    )


class OnDutyRequest(Model):
    account_id: str = Field(min_length=1, max_length=64)


class MyDutyRequest(Model):
    pass


class ListDutyRequest(Model):
    pass


class DutyList(Model):
    staff: list[DutyStatus] = Field(description="Every active physician and receptionist.")
    max_shift_hours: float
    required: bool


Reason = Field(min_length=3, max_length=500, description="Why, for the audit log.")


class ManualCheckRequest(Model):
    account_id: str = Field(min_length=1, max_length=64)
    reason: str = Reason
    place: str = Place


class WebhookRequest(Model):
    """The webhook's request as it came (the gateway verifies nothing of it: auth does)."""

    body: str = Field(max_length=16_384, description="The raw JSON body, as UTF-8 text.")
    timestamp: str = Field(max_length=32, description="The X-Medihaven-Timestamp header.")
    signature: str = Field(max_length=200, description="The X-Medihaven-Signature header.")


class WebhookEventType(StrEnum):
    checked_in = "attendance.checked_in"
    checked_out = "attendance.checked_out"


class WebhookEvent(Model):
    """The webhook's body: one event, with an id the sender never reuses."""

    event_id: str = Field(min_length=8, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")
    type: WebhookEventType
    staff_id: str = Field(min_length=1, max_length=64)
    at: datetime
    place: str = Place


class WebhookReply(Model):
    accepted: bool
    status: DutyStatus


WEBHOOK_TIMESTAMP_HEADER = "X-Medihaven-Timestamp"
WEBHOOK_SIGNATURE_HEADER = "X-Medihaven-Signature"
WEBHOOK_SIGNATURE_VERSION = "v1"
WEBHOOK_PATH = "/attendance/webhook"


def webhook_signed_bytes(timestamp: str, body: bytes) -> bytes:
    """What the webhook's HMAC-SHA-256 covers: `<timestamp>.<raw body>` (as Stripe does),
    so neither the time nor the body can be changed on its own."""
    return timestamp.encode() + b"." + body


def webhook_signature(key: bytes, timestamp: str, body: bytes) -> str:
    """The `X-Medihaven-Signature` value a sender puts on a webhook: `v1=<hex HMAC>`."""
    digest = hmac.new(key, webhook_signed_bytes(timestamp, body), hashlib.sha256).hexdigest()
    return f"{WEBHOOK_SIGNATURE_VERSION}={digest}"


ADMIN = frozenset({Role.administrator})

ON_DUTY = RpcMethod(
    AUTH,
    "auth.on_duty",
    OnDutyRequest,
    DutyStatus,
    callers=frozenset({GATEWAY, KEYVAULT}),
)
"""Asked before every patient-data request, by the gateway and again by the keyvault."""
MY_DUTY = RpcMethod(
    AUTH,
    "auth.my_duty",
    MyDutyRequest,
    DutyStatus,
    roles=ALL_ROLES,
    route=HttpRoute("GET", "/me/attendance", summary="Whether I am on duty (the header)."),
)
LIST_DUTY = RpcMethod(
    AUTH,
    "auth.list_duty",
    ListDutyRequest,
    DutyList,
    roles=ADMIN,
    route=HttpRoute(
        "GET", "/attendance", summary="Who is on duty: every physician and receptionist."
    ),
)
CHECK_IN = RpcMethod(
    AUTH,
    "auth.check_in",
    ManualCheckRequest,
    DutyStatus,
    write=True,
    roles=ADMIN,
    route=HttpRoute(
        "POST",
        "/staff/{account_id}/check-in",
        summary="Check a staff member in by hand (the time clock failed), with a reason.",
    ),
)
CHECK_OUT = RpcMethod(
    AUTH,
    "auth.check_out",
    ManualCheckRequest,
    DutyStatus,
    write=True,
    roles=ADMIN,
    route=HttpRoute(
        "POST",
        "/staff/{account_id}/check-out",
        summary="Check a staff member out by hand, with a reason: patient data closes at once.",
    ),
)
WEBHOOK = RpcMethod(
    AUTH,
    "auth.attendance_webhook",
    WebhookRequest,
    WebhookReply,
    callers=frozenset({GATEWAY}),
)
"""Relayed by the gateway's unsigned route `POST /api/v1/attendance/webhook`; auth checks
the HMAC, the timestamp and the event id (once) itself. Not a `write` in the runtime's
sense: its event id, recorded in the same transaction as its effect, makes it happen once
(a repeat is refused with 409 rather than answered again)."""


# ---------------------------------------------------------------------------- the policy


class Area(StrEnum):
    """What a role may keep using off duty, if the clinic's settings say so."""

    calendar = "calendar"
    """One's own calendar (a physician's `GET /physicians/{me}/calendar`)."""
    chat = "chat"


PATIENT_SERVICES = frozenset({records.SERVICE, scheduling.SERVICE})
"""Services whose routed methods are patient data, but for NOT_PATIENT_DATA."""
NOT_PATIENT_DATA = frozenset(
    m.name
    for m in (
        records.SEARCH_ICD10,
        records.SEARCH_MEDICINES,
        records.GET_MEDICINE,
        records.SEARCH_SUBSTANCES,
        scheduling.GET_AVAILABILITY,
        scheduling.FREE_SLOTS,
        scheduling.SET_WORKING_HOURS,
        scheduling.SET_BREAKS,
        scheduling.SET_DAYS_OFF,
        scheduling.CHANGE_ABSENCES,
    )
)
"""Lookups and working time: no patient in them."""
BREAK_GLASS_DOOR = frozenset({records.BREAK_GLASS.name})
"""Opening emergency access stays possible off duty (records audits it as ETREAT and
alerts administrators)."""
BREAK_GLASS_ROUTES = frozenset(
    m.name
    for m in (
        records.GET_PATIENT,
        records.PATIENT_SUMMARY,
        records.LIST_ENCOUNTERS,
        records.LIST_PRESCRIPTIONS,
        records.LIST_ALLERGIES,
    )
)
"""Reads of one patient's chart an off-duty physician may make under a break-glass grant
for that very patient (audited as emergency access); each names the patient in its path."""


def area_of(method: RpcMethod[Any, Any], request: Any, account_id: str) -> Area | None:
    if method.service == chat.SERVICE:
        return Area.chat
    if method.name == scheduling.CALENDAR.name and (
        getattr(request, "physician_id", None) == account_id
    ):
        return Area.calendar
    return None


def duty_required(
    method: RpcMethod[Any, Any],
    role: Role,
    account_id: str,
    request: Any,
    off_duty_areas: Iterable[Area],
) -> bool:
    """Whether serving `method` for this signer needs them on duty (pure: the gateway and
    the keyvault decide with the same function on the same signed request)."""
    if role not in ON_DUTY_ROLES or method.name in BREAK_GLASS_DOOR:
        return False
    area = area_of(method, request, account_id)
    if area is not None:
        return area not in set(off_duty_areas)
    return method.service in PATIENT_SERVICES and method.name not in NOT_PATIENT_DATA
