"""The attendance rules as pure functions: which requests need a check-in, when a shift is
over, the webhook's signature, and the defaults (on in production, off in dev mode)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import SecretStr

from contracts import attendance as att
from contracts import auth, chat, records, scheduling
from contracts.base import Role
from mesh.attendance import off_duty_areas, why
from mesh.errors import Forbidden
from mesh.settings import Settings
from services.auth.attendance import Shift, WebhookRefused, status_of, verify_webhook

ME = "11111111-1111-1111-1111-111111111111"
OTHER = "22222222-2222-2222-2222-222222222222"
PATIENT = "33333333-3333-3333-3333-333333333333"
BOTH = (att.Area.calendar, att.Area.chat)


def settings(**values: object) -> Settings:
    base: dict[str, object] = {"dev_mode": False, "attendance_required": None}
    return Settings(**{**base, **values})  # type: ignore[arg-type]


def test_on_by_default_in_production_off_in_development_mode_and_switchable() -> None:
    assert settings().attendance_enforced is True
    assert settings(dev_mode=True).attendance_enforced is False
    assert settings(dev_mode=True, attendance_required=True).attendance_enforced is True
    assert settings(attendance_required=False).attendance_enforced is False


def test_patient_data_needs_duty_for_physicians_and_receptionists_only() -> None:
    summary = records.PatientSummaryRequest(patient_id=PATIENT)
    assert att.duty_required(records.PATIENT_SUMMARY, Role.physician, ME, summary, BOTH)
    patient = records.GetPatientRequest(patient_id=PATIENT)
    assert att.duty_required(records.GET_PATIENT, Role.receptionist, ME, patient, BOTH)
    assert not att.duty_required(records.GET_PATIENT, Role.administrator, ME, patient, ())
    today = scheduling.TodayRequest()
    assert att.duty_required(scheduling.TODAY, Role.receptionist, ME, today, BOTH)


def test_lookups_working_time_and_the_break_glass_door_stay_open() -> None:
    icd = records.SearchIcd10Request(q="asthma")
    assert not att.duty_required(records.SEARCH_ICD10, Role.physician, ME, icd, ())
    door = records.BreakGlassRequest(patient_id=PATIENT, reason="collapsed in the hall")
    assert not att.duty_required(records.BREAK_GLASS, Role.physician, ME, door, ())
    me = auth.MeRequest()
    assert not att.duty_required(auth.ME, Role.physician, ME, me, ())


def test_own_calendar_and_chat_follow_the_roles_setting() -> None:
    own = scheduling.CalendarRequest(physician_id=ME, day=date(2026, 12, 1))
    other = own.model_copy(update={"physician_id": OTHER})
    assert not att.duty_required(scheduling.CALENDAR, Role.physician, ME, own, BOTH)
    assert att.duty_required(scheduling.CALENDAR, Role.physician, ME, own, (att.Area.chat,))
    assert att.duty_required(scheduling.CALENDAR, Role.physician, ME, other, BOTH)
    history = chat.HistoryRequest(conversation_id=OTHER)
    assert not att.duty_required(chat.HISTORY, Role.receptionist, ME, history, BOTH)
    assert att.duty_required(chat.HISTORY, Role.receptionist, ME, history, ())


def test_the_off_duty_areas_come_from_settings_and_unknown_names_open_nothing() -> None:
    cfg = settings(attendance_off_duty_physician="chat,calender")
    assert off_duty_areas(cfg, Role.physician) == frozenset({att.Area.chat})
    assert off_duty_areas(settings(), Role.receptionist) == frozenset({att.Area.chat})
    assert off_duty_areas(settings(), Role.physician) == frozenset(BOTH)


def _shift(checked_in: datetime | None, checked_out: datetime | None = None) -> Shift:
    last = max(t for t in (checked_in, checked_out) if t is not None)
    return Shift(ME, checked_in, checked_out, last, "Main entrance", att.Source.timeclock)


def test_a_shift_ends_by_itself_after_the_maximum_without_a_check_out() -> None:
    now = datetime.now(UTC)
    cfg = settings()
    on = status_of(ME, _shift(now - timedelta(hours=11, minutes=59)), cfg, now)
    assert on.on_duty and on.source is att.Source.timeclock
    over = status_of(ME, _shift(now - timedelta(hours=12, minutes=1)), cfg, now)
    assert not over.on_duty and over.source is att.Source.shift_limit
    assert "ended by itself after 12 hours" in why(cfg, over, Role.physician)
    shorter = settings(attendance_max_shift_h=8)
    assert not status_of(ME, _shift(now - timedelta(hours=9)), shorter, now).on_duty


def test_a_check_out_ends_the_shift_and_the_sentence_says_when() -> None:
    now = datetime.now(UTC)
    cfg = settings()
    out = status_of(ME, _shift(now - timedelta(hours=3), now - timedelta(minutes=5)), cfg, now)
    assert not out.on_duty and out.checked_out_at is not None
    sentence = why(cfg, out, Role.receptionist)
    assert sentence.startswith("You are not on duty (you checked out at ")
    assert "break-glass" not in sentence  # receptionists have no emergency door
    never = status_of(ME, None, cfg, now)
    assert not never.on_duty
    assert "no check-in for you" in why(cfg, never, Role.physician)
    assert "break-glass" in why(cfg, never, Role.physician)


KEY = "k" * 40
BODY = (
    b'{"event_id":"evt-0001","type":"attendance.checked_in","staff_id":"x",'
    b'"at":"2026-12-01T08:00:00Z"}'
)


def _verify(key: str | None, timestamp: str, signature: str, body: bytes = BODY) -> None:
    verify_webhook(
        SecretStr(key) if key is not None else None, 300, timestamp, signature, body, time.time()
    )


def test_a_webhook_signed_with_the_key_over_time_and_body_passes() -> None:
    stamp = str(int(time.time()))
    _verify(KEY, stamp, att.webhook_signature(KEY.encode(), stamp, BODY))
    # a sender rotating keys may send two signatures; one matching is enough
    both = f"v1={'0' * 64}, {att.webhook_signature(KEY.encode(), stamp, BODY)}"
    _verify(KEY, stamp, both)


@pytest.mark.parametrize(
    "change",
    ["other key", "other body", "other timestamp", "no signature", "wrong version"],
)
def test_a_webhook_signature_that_does_not_fit_is_refused(change: str) -> None:
    stamp = str(int(time.time()))
    key, body, signed_stamp = KEY.encode(), BODY, stamp
    if change == "other key":
        key = b"z" * 40
    elif change == "other body":
        body = BODY.replace(b"checked_in", b"checked_out")
    elif change == "other timestamp":
        signed_stamp = str(int(stamp) - 1)
    signature = att.webhook_signature(key, signed_stamp, body)
    if change == "no signature":
        signature = ""
    elif change == "wrong version":
        signature = signature.replace("v1=", "v0=")
    with pytest.raises(WebhookRefused) as refused:
        _verify(KEY, stamp, signature)
    assert refused.value.reason == "bad_signature"


@pytest.mark.parametrize("offset", [-301, 301, -3600])
def test_a_stale_or_early_webhook_timestamp_is_refused_even_when_signed(offset: int) -> None:
    stamp = str(int(time.time()) + offset)
    with pytest.raises(WebhookRefused) as refused:
        _verify(KEY, stamp, att.webhook_signature(KEY.encode(), stamp, BODY))
    assert refused.value.reason == "stale"


def test_a_malformed_timestamp_is_refused() -> None:
    for stamp in ("", "soon", "1.5", "١٢٣"):
        with pytest.raises(WebhookRefused) as refused:
            _verify(KEY, stamp, att.webhook_signature(KEY.encode(), stamp, BODY))
        assert refused.value.reason == "malformed"


def test_without_a_configured_key_of_32_bytes_the_webhook_accepts_nothing() -> None:
    stamp = str(int(time.time()))
    for key in (None, "short-key"):
        signature = att.webhook_signature((key or "").encode(), stamp, BODY)
        with pytest.raises(Forbidden, match="accepts nothing"):
            _verify(key, stamp, signature)


def test_the_asyncapi_document_names_the_time_clock_as_publisher() -> None:
    from contracts.asyncapi import document

    doc = document()
    for event in att.EVENTS:
        key = event.routing_key.replace(".", "_")
        assert doc["channels"][event.routing_key]["address"] == event.routing_key
        publishers = doc["operations"][f"publish_{key}"]["x-medihaven"]["publishers"]
        assert publishers == ["auth", att.TIMECLOCK]
        assert "staff_id" in doc["components"]["messages"][key]["payload"]["properties"]
