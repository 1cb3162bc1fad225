"""Booking, rescheduling, cancelling and reading calendars over the real bus, keyvault and
database: reasons for visit only for those allowed, events with ids and times only, an
audit event for every read and write of patient data, and reads that fail closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import REGISTRY

from contracts import keyvault as kv
from contracts import scheduling as sched
from contracts.audit import AuditAction, AuditEvent, AuditOutcome
from contracts.base import RpcMethod
from mesh.errors import Conflict, Forbidden, InvalidRequest, Unavailable
from tests.scheduling.support import TZ, World, at, key, today, world
from tests.support.polling import until


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("schedappt") as w:
        yield w


def keyvault_calls(method: RpcMethod[Any, Any]) -> float:
    """How many times the keyvault (in this process) has answered `method`."""
    labels = {"service": kv.SERVICE, "method": method.name, "outcome": "ok"}
    return REGISTRY.get_sample_value("medihaven_rpc_served_total", labels) or 0.0


async def one_more(method: RpcMethod[Any, Any], before: float) -> None:
    await until(lambda: keyvault_calls(method) > before)
    await asyncio.sleep(0.05)
    assert keyvault_calls(method) == before + 1, f"one {method.name} batch per request"


def audits_of(w: World, entity_id: str) -> list[AuditEvent]:
    return [a for a in w.audits if a.entity_id == entity_id]


async def test_book_reschedule_cancel_with_events_and_audit(w: World) -> None:
    doctor = await w.physician("dr-flow")
    desk = await w.desk()
    day = today() + timedelta(days=3)
    booked = await w.book(doctor, at(day, "09:00"), reason="Persistent cough, three weeks")
    assert booked.status is sched.AppointmentStatus.booked
    assert booked.reason is None  # write replies are stored for replay: no text in them
    assert booked.start == at(day, "09:00") and booked.booked_by == desk.account_id

    moved = await w.clinic.call(
        sched.RESCHEDULE,
        sched.RescheduleRequest(
            appointment_id=booked.appointment_id,
            start=at(day, "11:00"),
            end=at(day, "11:45"),
        ),
        desk,
        idempotency_key=key(),
    )
    assert (moved.start, moved.end) == (at(day, "11:00"), at(day, "11:45"))
    # The old slot is free again, the new one is taken.
    await w.book(doctor, at(day, "09:00"))
    with pytest.raises(Conflict) as clash:
        await w.book(doctor, at(day, "11:30"))
    # In words, in the clinic's time (the physician named, not the patient: scheduling
    # knows no names); the details keep the instants for programs.
    year = "" if day.year == today().year else f" {day.year}"
    assert clash.value.message == (
        f"Dr Flow already has 11:00\u201311:45 on {day:%a} {day.day} {day:%b}{year}."
    )
    assert clash.value.details == {
        "conflict": {
            "appointment_id": booked.appointment_id,
            "start": at(day, "11:00").isoformat(),
            "end": at(day, "11:45").isoformat(),
        }
    }

    cancelled = await w.clinic.call(
        sched.CANCEL,
        sched.CancelRequest(appointment_id=booked.appointment_id, reason="Patient in hospital"),
        desk,
        idempotency_key=key(),
    )
    assert cancelled.status is sched.AppointmentStatus.cancelled
    assert cancelled.cancellation_reason is None
    await w.book(doctor, at(day, "11:30"))  # a cancelled appointment frees its time
    with pytest.raises(Conflict, match="cancelled"):
        await w.clinic.call(
            sched.CANCEL,
            sched.CancelRequest(appointment_id=booked.appointment_id, reason="again"),
            desk,
            idempotency_key=key(),
        )

    # The physician reads it back, with both reasons, in one call.
    read = await w.clinic.call(
        sched.GET_APPOINTMENT,
        sched.AppointmentRequest(appointment_id=booked.appointment_id),
        doctor,
    )
    assert read.reason == "Persistent cough, three weeks"
    assert read.cancellation_reason == "Patient in hospital"

    # Events: booked, rescheduled, cancelled; ids and times only.
    mine = await until(
        lambda: (
            len(
                found := [
                    e
                    for e in w.events
                    if getattr(e.payload, "appointment_id", None) == booked.appointment_id
                ]
            )
            == 3
            and found
        )
    )
    assert [e.routing_key for e in mine] == [
        sched.APPOINTMENT_BOOKED.routing_key,
        sched.APPOINTMENT_RESCHEDULED.routing_key,
        sched.APPOINTMENT_CANCELLED.routing_key,
    ]
    rescheduled = mine[1].payload
    assert rescheduled.previous_start == at(day, "09:00") and rescheduled.start == at(day, "11:00")
    for event in mine:
        assert event.payload.patient_id == booked.patient_id
        assert event.principal is not None and event.principal.account_id == desk.account_id
        assert "cough" not in event.payload.model_dump_json()
        assert "hospital" not in event.payload.model_dump_json()

    # Audit: who, action, patient, outcome, for every step.
    trail = await until(lambda: len(found := audits_of(w, booked.appointment_id)) >= 5 and found)
    steps = {(a.type, a.action, a.outcome) for a in trail}
    assert {
        ("appointment.book", AuditAction.create, AuditOutcome.success),
        ("appointment.reschedule", AuditAction.update, AuditOutcome.success),
        ("appointment.cancel", AuditAction.update, AuditOutcome.success),
        ("appointment.cancel", AuditAction.update, AuditOutcome.refused),
        ("appointment.read", AuditAction.read, AuditOutcome.success),
    } <= steps
    assert all(a.patient_id == booked.patient_id for a in trail)
    assert {a.agent.account_id for a in trail} == {desk.account_id, doctor.account_id}
    assert all("cough" not in a.model_dump_json() for a in w.audits)


async def test_calendars_show_reasons_to_the_desk_and_the_own_physician(w: World) -> None:
    doctor = await w.physician("dr-cal")
    desk = await w.desk()
    monday = today() + timedelta(days=7 - today().weekday() + 7)  # a Monday 1-2 weeks ahead
    encrypts = keyvault_calls(kv.ENCRYPT)
    first = await w.book(doctor, at(monday, "08:00"), reason="Follow-up: blood pressure")
    await one_more(kv.ENCRYPT, encrypts)
    second = await w.book(
        doctor, at(monday + timedelta(days=2), "10:00"), 60, reason="Knee pain after fall"
    )
    day_view = await w.clinic.call(
        sched.CALENDAR, sched.CalendarRequest(physician_id=doctor.account_id, day=monday), doctor
    )
    assert [a.appointment_id for a in day_view.appointments] == [first.appointment_id]
    assert day_view.appointments[0].reason == "Follow-up: blood pressure"
    assert day_view.working == [sched.TimeRange(start=at(monday, "08:00"), end=at(monday, "18:00"))]
    assert day_view.start == at(monday, "00:00") and day_view.time_zone == "Europe/Berlin"

    decrypts = keyvault_calls(kv.DECRYPT)
    week = await w.clinic.call(
        sched.CALENDAR,
        sched.CalendarRequest(
            physician_id=doctor.account_id,
            day=monday + timedelta(days=3),
            span=sched.CalendarSpan.week,
        ),
        desk,
    )
    assert (week.first_day, week.last_day) == (monday, monday + timedelta(days=6))
    assert [(a.appointment_id, a.reason) for a in week.appointments] == [
        (first.appointment_id, "Follow-up: blood pressure"),
        (second.appointment_id, "Knee pain after fall"),
    ]
    assert len(week.working) == 7
    await one_more(kv.DECRYPT, decrypts)  # every reason of the week in one batch
    # One read audit naming every patient shown, by the reader.
    reads = await until(
        lambda: [
            a
            for a in w.audits
            if a.type == "calendar.read" and a.agent.account_id == desk.account_id
        ]
    )
    (read,) = reads
    assert set(read.patients) == {first.patient_id, second.patient_id}
    assert read.entity_id == doctor.account_id

    # Another physician sees neither this calendar nor its appointments.
    other = await w.physician("dr-other")
    with pytest.raises(Forbidden):
        await w.clinic.call(
            sched.CALENDAR,
            sched.CalendarRequest(physician_id=doctor.account_id, day=monday),
            other,
        )
    with pytest.raises(Forbidden):
        await w.clinic.call(
            sched.GET_APPOINTMENT,
            sched.AppointmentRequest(appointment_id=first.appointment_id),
            other,
        )
    refused = await until(
        lambda: [
            a
            for a in w.audits
            if a.agent.account_id == other.account_id and a.outcome is AuditOutcome.refused
        ]
    )
    assert refused
    own = await w.clinic.call(
        sched.CALENDAR, sched.CalendarRequest(physician_id=other.account_id, day=monday), other
    )
    assert own.appointments == [] and own.physician_id == other.account_id


async def test_free_slots_skip_bookings_days_off_and_the_past(w: World) -> None:
    doctor = await w.physician(
        "dr-slots",
        [sched.WorkingPeriod(weekday=d, start="09:00", end="12:00") for d in sched.Weekday],
    )
    desk = await w.desk()
    day = today() + timedelta(days=5)
    await w.book(doctor, at(day, "10:00"), 60)

    async def slots(first: date, last: date, minutes: int = 60) -> list[tuple[datetime, datetime]]:
        reply = await w.clinic.call(
            sched.FREE_SLOTS,
            sched.FreeSlotsRequest(
                physician_id=doctor.account_id,
                first_day=first,
                last_day=last,
                duration_minutes=minutes,
            ),
            desk,
        )
        return [(s.start, s.end) for s in reply.slots]

    assert await slots(day, day) == [
        (at(day, "09:00"), at(day, "10:00")),
        (at(day, "11:00"), at(day, "12:00")),
    ]
    assert len(await slots(day, day, 30)) == 4
    assert len(await slots(day, day + timedelta(days=1))) == 5
    availability = await w.clinic.call(
        sched.SET_DAYS_OFF,
        sched.SetDaysOffRequest(physician_id=doctor.account_id, add=[day]),
        doctor,  # physicians may manage their own availability
        idempotency_key=key(),
    )
    assert availability.days_off == [day]
    assert len(availability.affected) == 1  # the 10:00 booking stays, but is flagged
    assert await slots(day, day) == []
    with pytest.raises(InvalidRequest, match="off"):
        await w.book(doctor, at(day, "09:00"))
    # Nothing before now: today's slots start no earlier than the next five minutes.
    now = datetime.now(UTC)
    assert all(start >= now for start, _ in await slots(today(), today(), 5))


def offset(day: date) -> timedelta | None:
    return datetime.combine(day, datetime.min.time(), TZ).utcoffset()


async def test_working_hours_are_wall_clock_time_across_dst(w: World) -> None:
    doctor = await w.physician(
        "dr-dst",
        [sched.WorkingPeriod(weekday=d, start="09:00", end="17:00") for d in sched.Weekday],
    )
    # The day of the next DST change in the clinic's zone (within a year), and a day either side.
    change = next(
        today() + timedelta(days=n)
        for n in range(3, 366)
        if offset(today() + timedelta(days=n)) != offset(today() + timedelta(days=n + 1))
    )
    before, after = change - timedelta(days=1), change + timedelta(days=2)
    nine_before, nine_after = at(before, "09:00"), at(after, "09:00")
    assert nine_before.time() != nine_after.time()  # 09:00 local is another UTC hour
    await w.book(doctor, nine_before)
    await w.book(doctor, nine_after)
    # The other side's UTC time of day is 08:00 local on one of the days: refused there.
    refused = 0
    for day, utc_time in ((before, nine_after.time()), (after, nine_before.time())):
        instant = datetime.combine(day, utc_time, UTC)
        if instant.astimezone(TZ).hour == 8:
            refused += 1
            with pytest.raises(InvalidRequest, match="working hours"):
                await w.book(doctor, instant)
    assert refused == 1
    # The calendar day of the change is 23 or 25 hours long.
    calendar = await w.clinic.call(
        sched.CALENDAR, sched.CalendarRequest(physician_id=doctor.account_id, day=change), doctor
    )
    assert abs(calendar.end - calendar.start - timedelta(hours=24)) == timedelta(hours=1)


async def test_a_started_appointment_cannot_be_moved_or_cancelled(w: World) -> None:
    doctor = await w.physician("dr-started")
    desk = await w.desk()
    past = await w.seed_past(doctor)
    later = today() + timedelta(days=2)
    with pytest.raises(Conflict, match="already started"):
        await w.clinic.call(
            sched.RESCHEDULE,
            sched.RescheduleRequest(
                appointment_id=past, start=at(later, "09:00"), end=at(later, "09:30")
            ),
            desk,
            idempotency_key=key(),
        )
    with pytest.raises(Conflict, match="already started"):
        await w.clinic.call(
            sched.CANCEL,
            sched.CancelRequest(appointment_id=past, reason="too late"),
            desk,
            idempotency_key=key(),
        )


async def test_a_retried_booking_is_answered_once(w: World) -> None:
    doctor = await w.physician("dr-retry")
    desk = await w.desk()
    day = today() + timedelta(days=4)
    request = sched.BookRequest(
        patient_id=w.patient(),
        physician_id=doctor.account_id,
        start=at(day, "14:00"),
        end=at(day, "14:20"),
        reason="Vaccination",
    )
    idem = key()
    first, again = [
        await w.clinic.call(sched.BOOK, request, desk, idempotency_key=idem) for _ in range(2)
    ]
    assert first == again
    calendar = await w.clinic.call(
        sched.CALENDAR, sched.CalendarRequest(physician_id=doctor.account_id, day=day), doctor
    )
    assert len(calendar.appointments) == 1


async def test_reads_fail_closed_when_the_audit_trail_is_down(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    doctor = await w.physician("dr-audit-down")
    day = today() + timedelta(days=6)
    appointment = await w.book(doctor, at(day, "16:00"), reason="Rash on both arms")

    async def broker_refuses(*args: object, **kwargs: object) -> None:
        raise ConnectionError("no confirm")

    monkeypatch.setattr(w.service.events, "publish_raw", broker_refuses)
    with pytest.raises(Unavailable, match="audit"):
        await w.clinic.call(
            sched.CALENDAR, sched.CalendarRequest(physician_id=doctor.account_id, day=day), doctor
        )
    with pytest.raises(Unavailable, match="audit"):
        await w.clinic.call(
            sched.GET_APPOINTMENT,
            sched.AppointmentRequest(appointment_id=appointment.appointment_id),
            doctor,
        )
    monkeypatch.undo()
    calendar = await w.clinic.call(
        sched.CALENDAR, sched.CalendarRequest(physician_id=doctor.account_id, day=day), doctor
    )
    assert calendar.appointments[0].reason == "Rash on both arms"
