"""Who is on duty: the one attendance state, kept by auth, fed by three sources.

Where the state lives, and why: in auth's own database (`attendance_shifts`, one row per
staff member), asked by the gateway and by the keyvault over RPC (`auth.on_duty`) on
every patient-data request, with no cache anywhere.

- Every replica sees a check-in or a check-out at once: there is one row, committed
  before the check-in is answered, and nobody keeps a copy of it.
- Nothing the gateway can write holds it. The gateway has Redis (nonces, buckets) but no
  database; with the state in Redis, a taken-over gateway could write itself "on duty"
  for anyone, and the keyvault's second check would be worth nothing.
- Fail closed: the state that cannot be read (auth down, the database down, a timeout)
  means the request is refused (503), at the gateway and in the keyvault alike
  (`mesh/attendance.py`).
- A shift ends by itself: on duty means checked in less than
  `MEDIHAVEN_ATTENDANCE_MAX_SHIFT_H` hours ago and not checked out since, decided when
  asked, so no timer has to run for a shift to close.

Events are applied in the order of their own times, whatever order they arrive in: an
event older than the latest one applied for that person changes nothing, and one dated
more than a few minutes ahead is refused (a time clock cannot check someone in for
tomorrow). Manual and webhook changes are republished on the bus as `attendance.*` by
auth (its consumer skips its own). Every change and every refusal is audited.
"""

from __future__ import annotations

import hmac
import time
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import SecretStr, ValidationError

from contracts import attendance as att
from contracts import auth
from contracts.audit import AuditAction, AuditOutcome, AuditType
from contracts.auth import Account, AccountStatus
from mesh import audit, outbox
from mesh.context import CallContext, runtime_of
from mesh.db import Connection, Sql
from mesh.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RpcError,
    Unauthenticated,
)
from mesh.events import EventHandler, ReceivedEvent, process_once
from mesh.logging import get_logger
from mesh.runtime import ConsumerSpec, Runtime
from mesh.settings import Settings
from services.auth import store
from services.auth.handlers import router
from services.auth.integrity import verified
from services.auth.store import Shift as Shift  # (re-exported: the rules take it)

log = get_logger("auth.attendance")

FUTURE_SKEW = timedelta(minutes=5)
"""How far ahead of this clock an event's time may be (the time clock's own clock)."""
MIN_KEY_BYTES = 32
CONSUMER = "auth-attendance"


class Kind(StrEnum):
    check_in = "check_in"
    check_out = "check_out"


def _now() -> datetime:
    return datetime.now(UTC)


def status_of(
    account_id: str, shift: Shift | None, settings: Settings, now: datetime
) -> att.DutyStatus:
    """On duty: checked in, not checked out since, and the shift's maximum not passed."""
    required = settings.attendance_enforced
    if shift is None or shift.checked_in_at is None:
        return att.DutyStatus(
            account_id=account_id,
            on_duty=False,
            checked_out_at=shift.checked_out_at if shift else None,
            source=shift.source if shift else None,
            required=required,
        )
    until = shift.checked_in_at + timedelta(hours=settings.attendance_max_shift_h)
    out = shift.checked_out_at is not None and shift.checked_out_at >= shift.checked_in_at
    on = not out and now < until
    return att.DutyStatus(
        account_id=account_id,
        on_duty=on,
        since=shift.checked_in_at,
        until=until,
        place=shift.place or None,
        source=shift.source if on or out else att.Source.shift_limit,
        checked_out_at=shift.checked_out_at if out else None,
        required=required,
    )


async def apply(
    conn: Sql, kind: Kind, account_id: str, at: datetime, place: str, source: att.Source
) -> tuple[Shift, bool]:
    """Apply one check-in or check-out in `conn`'s transaction; (the shift, whether it
    changed). An event older than the latest applied for this person changes nothing."""
    at = at.astimezone(UTC)
    old = await store.lock_shift(conn, account_id)
    if old is not None and at < old.last_event_at:
        return old, False
    if kind is Kind.check_in:
        new = Shift(account_id, at, None, at, place, source)
    else:
        new = Shift(
            account_id,
            old.checked_in_at if old else None,
            at,
            at,
            place or (old.place if old else ""),
            source,
        )
    if old is None:
        await store.insert_shift(conn, new, _now())
    else:
        await store.update_shift(conn, new, _now())
    return new, True


async def _staff(runtime: Runtime, account_id: str, executor: Any = None) -> Account:
    """An active physician or receptionist whose row MAC verifies, or a 404 / 422
    (read in `executor`, a write's transaction, if given)."""
    assert runtime.db is not None
    stored = await store.get_account(executor or runtime.db, account_id)
    rows = await verified(runtime, [stored] if stored else [])
    if not rows or rows[0].account.status is not AccountStatus.active:
        raise NotFound(
            "there is no active staff member with this id", details={"account_id": account_id}
        )
    account = rows[0].account
    if account.role not in att.ON_DUTY_ROLES:
        raise InvalidRequest(
            f"a {account.role.value}'s access is not bound to attendance: only physicians "
            "and receptionists check in",
            details=[
                {"loc": ["account_id"], "msg": "not a physician or receptionist", "type": "role"}
            ],
        )
    return account


def _future(at: datetime) -> bool:
    return at.astimezone(UTC) > _now() + FUTURE_SKEW


def _event(kind: Kind) -> Any:
    return att.CHECKED_IN if kind is Kind.check_in else att.CHECKED_OUT


def _payload(kind: Kind, staff_id: str, at: datetime, place: str) -> Any:
    model = att.CheckedIn if kind is Kind.check_in else att.CheckedOut
    return model(staff_id=staff_id, at=at, place=place)


async def _record(
    runtime: Runtime,
    conn: Connection,
    kind: Kind,
    account_id: str,
    shift: Shift,
    changed: bool,
    detail: str,
) -> None:
    note = detail if changed else f"{detail} (older than the latest event: nothing changed)"
    event = audit.make_event(
        auth.SERVICE,
        AuditType.attendance_check_in if kind is Kind.check_in else AuditType.attendance_check_out,
        AuditAction.update,
        AuditOutcome.success,
        entity_type=auth.ACCOUNTS_TABLE,
        entity_id=account_id,
        detail=f"{shift.source.value}: {note}",
    )
    await audit.record(runtime, event, conn=conn)


async def _refused(runtime: Runtime, type: AuditType, detail: str, account_id: str | None) -> None:
    event = audit.make_event(
        auth.SERVICE,
        type,
        AuditAction.execute,
        AuditOutcome.refused,
        entity_type=auth.ACCOUNTS_TABLE if account_id else None,
        entity_id=account_id,
        detail=detail,
    )
    try:
        await audit.record(runtime, event)
    except RpcError:
        log.warning("attendance.refusal_not_audited", type=type)


# ---------------------------------------------------------------- reads


@router.handler(att.ON_DUTY)
async def on_duty(req: att.OnDutyRequest, ctx: CallContext) -> att.DutyStatus:
    runtime = runtime_of(ctx)
    shift = await store.read_shift(runtime.db, req.account_id)
    return status_of(req.account_id, shift, runtime.settings, _now())


@router.handler(att.MY_DUTY)
async def my_duty(req: att.MyDutyRequest, ctx: CallContext) -> att.DutyStatus:
    runtime = runtime_of(ctx)
    assert ctx.operation is not None and ctx.operation.account is not None
    me = ctx.operation.account.account_id
    return status_of(me, await store.read_shift(runtime.db, me), runtime.settings, _now())


@router.handler(att.LIST_DUTY)
async def list_duty(req: att.ListDutyRequest, ctx: CallContext) -> att.DutyList:
    runtime = runtime_of(ctx)
    assert runtime.db is not None
    accounts = [
        r.account
        for r in await verified(runtime, await store.list_accounts(runtime.db, None))
        if r.account.role in att.ON_DUTY_ROLES and r.account.status is AccountStatus.active
    ]
    shifts = {s.account_id: s for s in await store.list_shifts(runtime.db)}
    now, settings = _now(), runtime.settings
    return att.DutyList(
        staff=[status_of(a.account_id, shifts.get(a.account_id), settings, now) for a in accounts],
        max_shift_hours=settings.attendance_max_shift_h,
        required=settings.attendance_enforced,
    )


# ---------------------------------------------------------------- by hand


async def _by_hand(kind: Kind, req: att.ManualCheckRequest, ctx: CallContext) -> att.DutyStatus:
    runtime = runtime_of(ctx)
    account = await _staff(runtime, req.account_id, ctx.tx)
    now = _now()
    shift, changed = await apply(
        ctx.tx, kind, account.account_id, now, req.place, att.Source.manual
    )
    where = f" at {req.place}" if req.place else ""
    detail = f"by hand{where}, reason: {req.reason}"
    await _record(runtime, ctx.tx, kind, account.account_id, shift, changed, detail)
    if changed:  # (not when the time clock reported a later event, a few seconds ahead)
        payload = _payload(kind, account.account_id, now, req.place)
        await outbox.add_event(ctx.tx, _event(kind), payload)
    return status_of(account.account_id, shift, runtime.settings, now)


@router.handler(att.CHECK_IN)
async def check_in(req: att.ManualCheckRequest, ctx: CallContext) -> att.DutyStatus:
    return await _by_hand(Kind.check_in, req, ctx)


@router.handler(att.CHECK_OUT)
async def check_out(req: att.ManualCheckRequest, ctx: CallContext) -> att.DutyStatus:
    return await _by_hand(Kind.check_out, req, ctx)


# ---------------------------------------------------------------- webhook


class WebhookRefused(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def verify_webhook(
    key: SecretStr | None,
    window_s: float,
    timestamp: str,
    signature: str,
    body: bytes,
    now: float,
) -> None:
    """HMAC-SHA-256 over `<timestamp>.<body>` under the operator's key, then a timestamp
    within the window (raises WebhookRefused; Forbidden, a 403 rather than a 5xx, when no
    usable key is set: the webhook is then simply not open here)."""
    if key is None:
        raise Forbidden(
            "the attendance webhook is not configured (MEDIHAVEN_ATTENDANCE_WEBHOOK_SECRET is "
            "unset), so it accepts nothing"
        )
    raw = key.get_secret_value().encode()
    if len(raw) < MIN_KEY_BYTES:
        raise Forbidden(
            f"the attendance webhook's key is shorter than {MIN_KEY_BYTES} bytes, so the "
            "webhook accepts nothing"
        )
    if not timestamp.isascii() or not timestamp.isdigit():
        raise WebhookRefused(
            "malformed", f"{att.WEBHOOK_TIMESTAMP_HEADER} must be the time in Unix seconds"
        )
    expected = att.webhook_signature(raw, timestamp, body)
    offered = [part.strip() for part in signature.split(",") if part.strip()]
    if not any(hmac.compare_digest(expected.encode(), o.encode()) for o in offered):
        raise WebhookRefused(
            "bad_signature",
            f"{att.WEBHOOK_SIGNATURE_HEADER} does not match the body and timestamp under the "
            "configured key",
        )
    if abs(now - int(timestamp)) > window_s:
        raise WebhookRefused(
            "stale", f"the webhook's timestamp is more than {window_s:g} seconds from now"
        )


@router.handler(att.WEBHOOK)
async def webhook(req: att.WebhookRequest, ctx: CallContext) -> att.WebhookReply:
    runtime = runtime_of(ctx)
    assert runtime.db is not None
    settings = runtime.settings
    body = req.body.encode()
    try:
        verify_webhook(
            settings.attendance_webhook_secret,
            settings.attendance_webhook_window_s,
            req.timestamp,
            req.signature,
            body,
            time.time(),
        )
    except WebhookRefused as exc:
        await _refused(
            runtime, AuditType.attendance_webhook_refused, f"{exc.reason}: {exc.message}", None
        )
        raise Unauthenticated(exc.message, details={"reason": exc.reason}) from None
    try:
        event = att.WebhookEvent.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        raise InvalidRequest(
            "the webhook's body is not an attendance event",
            details=[
                {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors
            ],
        ) from None
    if _future(event.at):
        raise InvalidRequest(
            "the event's time is in the future: a time clock reports what has happened",
            details=[{"loc": ["body", "at"], "msg": "in the future", "type": "future"}],
        )
    account = await _staff(runtime, event.staff_id)
    kind = Kind.check_in if event.type is att.WebhookEventType.checked_in else Kind.check_out
    now = _now()
    window = timedelta(seconds=2 * settings.attendance_webhook_window_s)
    async for attempt in runtime.db.transactions():
        async with attempt as conn:
            fresh = await store.record_webhook_event(conn, event.event_id, now)
            if not fresh:
                raise Conflict(
                    f"the event {event.event_id} was already received; nothing changed",
                    details={"reason": "replayed"},
                )
            # Ids older than twice the window cannot come back: their timestamps are stale.
            await store.forget_webhook_events(conn, now - window)
            shift, changed = await apply(
                conn, kind, account.account_id, event.at, event.place, att.Source.webhook
            )
            where = f" at {event.place}" if event.place else ""
            await _record(
                runtime,
                conn,
                kind,
                account.account_id,
                shift,
                changed,
                f"webhook event {event.event_id}{where}",
            )
            if changed:
                payload = _payload(kind, account.account_id, event.at, event.place)
                await outbox.add_event(conn, _event(kind), payload)
    runtime.written()
    return att.WebhookReply(
        accepted=changed, status=status_of(account.account_id, shift, settings, now)
    )


# ---------------------------------------------------------------- the time clock on the bus


def consume(runtime: Runtime) -> EventHandler:
    """`attendance.*` from the time clock (the runtime has refused other publishers)."""

    async def handle(event: ReceivedEvent[Any]) -> None:
        if event.publisher == auth.SERVICE:
            return  # auth's own republication of a change it already made
        assert runtime.db is not None
        payload = event.payload
        kind = Kind.check_in if isinstance(payload, att.CheckedIn) else Kind.check_out
        if _future(payload.at):
            await _refused(
                runtime,
                AuditType.attendance_event_refused,
                f"{event.routing_key} dated in the future",
                payload.staff_id,
            )
            return
        try:
            await _staff(runtime, payload.staff_id)
        except (NotFound, InvalidRequest) as exc:
            await _refused(
                runtime,
                AuditType.attendance_event_refused,
                f"{event.routing_key}: {exc.message}",
                payload.staff_id,
            )
            return

        async def effect(conn: Connection) -> None:
            shift, changed = await apply(
                conn, kind, payload.staff_id, payload.at, payload.place, att.Source.timeclock
            )
            where = f" at {payload.place}" if payload.place else ""
            await _record(
                runtime, conn, kind, payload.staff_id, shift, changed, f"time clock{where}"
            )

        await process_once(runtime.db, CONSUMER, event.message_id, effect)

    return handle


CONSUMERS = [ConsumerSpec(CONSUMER, att.EVENTS, consume)]
"""Auth's durable consumer group of the time clock's events."""
