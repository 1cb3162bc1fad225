"""Bad input for every write (and the reads' own rules) gets a 4xx with reasons, never 500.

Requests are sent as raw JSON over the bus, as a broken or hostile client's would
arrive: wrong types, impossible dates, naive times, unknown ids, end before start, the
past, outside working hours, on a day off, over someone else's slot; each signed by the
caller as the HTTP request it stands for (`tests.support.raw`). What is not a valid
request of its route at all is refused before any handler (the gateway's 422 gives the
reasons, the service a 4xx); the handlers' own refusals give theirs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest_asyncio

from contracts import scheduling as sched
from contracts.base import Role
from contracts.errors import ErrorCode
from tests.scheduling.support import World, at, key, today, world
from tests.support.clinic import StaffMember
from tests.support.raw import Case, assert_refused, gateway_reasons, is_4xx, raw_of, refusal

V, C, N, B = ErrorCode.validation, ErrorCode.conflict, ErrorCode.not_found, ErrorCode.bad_request


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("schedbad") as w:
        yield w


def iso(instant: datetime) -> str:
    return instant.isoformat()


@dataclass(frozen=True)
class Scene:
    """A physician with hours, breaks, a day off and a holiday; one booking taken, one
    cancelled, one in the future to move, one arrived today; the staff who act on them."""

    doctor: StaffMember
    no_hours: StaffMember
    desk: StaffMember
    admin: StaffMember
    day: date
    day_off: date
    holiday: date
    taken: sched.Appointment
    gone: sched.Appointment
    future: str
    arrived: str
    patient: str
    nine: datetime
    past: datetime
    book: dict[str, Any]

    def booking(self, **changes: Any) -> dict[str, Any]:
        """`book` with `changes` (a field set to `...` is left out)."""
        return {k: v for k, v in {**self.book, **changes}.items() if v is not ...}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def scene(w: World) -> Scene:
    doctor = await w.physician(
        "dr-bad",
        [sched.WorkingPeriod(weekday=d, start="08:00", end="18:00") for d in sched.Weekday],
    )
    no_hours = await w.member("dr-no-hours", Role.physician)
    desk = await w.desk()
    admin = await w.admin()
    day = today() + timedelta(days=3)
    day_off = today() + timedelta(days=4)
    await w.clinic.call(
        sched.SET_DAYS_OFF,
        sched.SetDaysOffRequest(physician_id=doctor.account_id, add=[day_off]),
        admin,
        idempotency_key=key(),
    )
    taken = await w.book(doctor, at(day, "12:00"), 60)
    gone = await w.book(doctor, at(day, "15:00"))
    await w.clinic.call(
        sched.CANCEL,
        sched.CancelRequest(appointment_id=gone.appointment_id, reason="moved away"),
        desk,
        idempotency_key=key(),
    )
    moving = await w.book(doctor, at(day, "16:00"))
    future = moving.appointment_id
    arrived = await w.seed_now(doctor, "arrived")
    holiday = today() + timedelta(days=6)
    await w.clinic.call(
        sched.SET_BREAKS,
        sched.SetBreaksRequest(
            physician_id=doctor.account_id,
            breaks=[
                sched.WorkingPeriod(weekday=d, start="10:00", end="10:15") for d in sched.Weekday
            ],
        ),
        admin,
        idempotency_key=key(),
    )
    await w.clinic.call(
        sched.CHANGE_ABSENCES,
        sched.ChangeAbsencesRequest(
            physician_id=doctor.account_id,
            add=[sched.NewAbsence(kind=sched.AbsenceKind.holiday, first_day=holiday)],
        ),
        admin,
        idempotency_key=key(),
    )
    patient = w.patient()
    nine = at(day, "09:00")
    book = {
        "patient_id": patient,
        "physician_id": doctor.account_id,
        "start": iso(nine),
        "end": iso(nine + timedelta(minutes=30)),
        "reason": "Sore throat",
    }
    past = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    return Scene(
        doctor=doctor,
        no_hours=no_hours,
        desk=desk,
        admin=admin,
        day=day,
        day_off=day_off,
        holiday=holiday,
        taken=taken,
        gone=gone,
        future=future,
        arrived=arrived,
        patient=patient,
        nine=nine,
        past=past,
        book=book,
    )


async def assert_nothing_booked(w: World, scene: Scene) -> None:
    """Nothing was booked by any of it."""
    calendar = await w.clinic.call(
        sched.CALENDAR,
        sched.CalendarRequest(
            physician_id=scene.doctor.account_id, day=scene.day, include_cancelled=True
        ),
        scene.desk,
    )
    assert {a.appointment_id for a in calendar.appointments} == {
        scene.taken.appointment_id,
        scene.gone.appointment_id,
        scene.future,
    }
    # and the reschedules changed nothing
    assert calendar.appointments[-1].start == at(scene.day, "16:00")


async def test_bookings_with_bad_formats_and_types_get_a_4xx_with_reasons(
    w: World, scene: Scene
) -> None:
    desk, book, booking = scene.desk, scene.book, scene.booking
    cases: list[Case] = [
        ("naive time", sched.BOOK, desk, booking(start="2030-01-07T09:00:00"), V, "timezone"),
        ("not a date", sched.BOOK, desk, booking(start="next tuesday"), V, "start"),
        ("no such day", sched.BOOK, desk, booking(start="2030-02-30T09:00:00Z"), V, "start"),
        ("number for text", sched.BOOK, desk, booking(reason=42), V, "reason"),
        ("list for id", sched.BOOK, desk, booking(patient_id=["a"]), V, "patient_id"),
        ("null id", sched.BOOK, desk, booking(physician_id=None), V, "physician_id"),
        ("id too long", sched.BOOK, desk, booking(patient_id="p" * 65), V, "patient_id"),
        ("id with spaces", sched.BOOK, desk, booking(patient_id="p 1; --"), V, "patient_id"),
        ("empty reason", sched.BOOK, desk, booking(reason=""), V, "reason"),
        ("blank reason", sched.BOOK, desk, booking(reason="   "), V, "reason"),
        ("reason too long", sched.BOOK, desk, booking(reason="x" * 501), V, "reason"),
        ("missing field", sched.BOOK, desk, booking(reason=...), V, "reason"),
        ("unknown field", sched.BOOK, desk, booking(room="3"), V, "room"),
        ("not an object", sched.BOOK, desk, [book], V, ""),
        ("not JSON", sched.BOOK, desk, b"{start: 9}", B, "JSON"),
    ]
    await assert_refused(w.clinic, cases)
    await assert_nothing_booked(w, scene)


async def test_bookings_at_bad_times_get_a_4xx_with_reasons(w: World, scene: Scene) -> None:
    desk, day, day_off, taken, nine, past, booking = (
        scene.desk,
        scene.day,
        scene.day_off,
        scene.taken,
        scene.nine,
        scene.past,
        scene.booking,
    )
    cases: list[Case] = [
        (
            "end before start",
            sched.BOOK,
            desk,
            booking(end=iso(nine - timedelta(minutes=30))),
            V,
            "end must be after the start",
        ),
        ("end equals start", sched.BOOK, desk, booking(end=iso(nine)), V, "after the start"),
        (
            "too short",
            sched.BOOK,
            desk,
            booking(end=iso(nine + timedelta(minutes=2))),
            V,
            "lasts",
        ),
        ("too long", sched.BOOK, desk, booking(end=iso(nine + timedelta(hours=9))), V, "lasts"),
        (
            "not a whole minute",
            sched.BOOK,
            desk,
            booking(start=iso(nine + timedelta(seconds=30))),
            V,
            "whole minute",
        ),
        (
            "in the past",
            sched.BOOK,
            desk,
            booking(start=iso(past), end=iso(past + timedelta(minutes=30))),
            V,
            "past",
        ),
        ("epoch number", sched.BOOK, desk, booking(start=0), V, "past"),
        (
            "too far ahead",
            sched.BOOK,
            desk,
            booking(
                start=iso(nine + timedelta(days=400)),
                end=iso(nine + timedelta(days=400, minutes=30)),
            ),
            V,
            "days ahead",
        ),
        (
            "before working hours",
            sched.BOOK,
            desk,
            booking(start=iso(at(day, "07:30")), end=iso(at(day, "08:15"))),
            V,
            "working hours",
        ),
        (
            "past the end of the day",
            sched.BOOK,
            desk,
            booking(start=iso(at(day, "17:45")), end=iso(at(day, "18:15"))),
            V,
            "working hours",
        ),
        (
            "day off",
            sched.BOOK,
            desk,
            booking(start=iso(at(day_off, "09:00")), end=iso(at(day_off, "09:30"))),
            V,
            "off",
        ),
        (
            "overlaps a booking",
            sched.BOOK,
            desk,
            booking(start=iso(at(day, "12:30")), end=iso(at(day, "13:30"))),
            C,
            taken.appointment_id,
        ),
    ]
    await assert_refused(w.clinic, cases)
    await assert_nothing_booked(w, scene)


async def test_bookings_of_unknown_or_wrong_people_get_a_422_with_reasons(
    w: World, scene: Scene
) -> None:
    no_hours, desk, booking = scene.no_hours, scene.desk, scene.booking
    cases: list[Case] = [
        ("unknown patient", sched.BOOK, desk, booking(patient_id="pat-nobody"), V, "patient"),
        ("unknown physician", sched.BOOK, desk, booking(physician_id="acc-nobody"), V, "unknown"),
        (
            "not a physician",
            sched.BOOK,
            desk,
            booking(physician_id=desk.account_id),
            V,
            "not a physician",
        ),
        (
            "both unknown",
            sched.BOOK,
            desk,
            booking(patient_id="pat-nobody", physician_id="acc-nobody"),
            V,
            "unknown patient",
        ),
        (
            "no working hours",
            sched.BOOK,
            desk,
            booking(physician_id=no_hours.account_id),
            V,
            "no working hours",
        ),
    ]
    await assert_refused(w.clinic, cases)
    await assert_nothing_booked(w, scene)


async def test_bad_reschedules_get_a_4xx_with_reasons(w: World, scene: Scene) -> None:
    desk, day, taken, gone, future, past, book = (
        scene.desk,
        scene.day,
        scene.taken,
        scene.gone,
        scene.future,
        scene.past,
        scene.book,
    )
    cases: list[Case] = [
        (
            "unknown appointment",
            sched.RESCHEDULE,
            desk,
            {"appointment_id": "no-such", "start": book["start"], "end": book["end"]},
            N,
            "unknown appointment",
        ),
        (
            "reschedule end before start",
            sched.RESCHEDULE,
            desk,
            {"appointment_id": future, "start": book["end"], "end": book["start"]},
            V,
            "after the start",
        ),
        (
            "reschedule into the past",
            sched.RESCHEDULE,
            desk,
            {
                "appointment_id": future,
                "start": iso(past),
                "end": iso(past + timedelta(minutes=20)),
            },
            V,
            "past",
        ),
        (
            "reschedule outside hours",
            sched.RESCHEDULE,
            desk,
            {
                "appointment_id": future,
                "start": iso(at(day, "20:00")),
                "end": iso(at(day, "20:30")),
            },
            V,
            "working hours",
        ),
        (
            "reschedule onto a booking",
            sched.RESCHEDULE,
            desk,
            {
                "appointment_id": future,
                "start": iso(at(day, "12:15")),
                "end": iso(at(day, "12:45")),
            },
            C,
            taken.appointment_id,
        ),
        (
            "reschedule a cancelled one",
            sched.RESCHEDULE,
            desk,
            {"appointment_id": gone.appointment_id, "start": book["start"], "end": book["end"]},
            C,
            "cancelled",
        ),
        (
            "reschedule with a date for an id",
            sched.RESCHEDULE,
            desk,
            {"appointment_id": {"$gt": ""}, "start": book["start"], "end": book["end"]},
            V,
            "appointment_id",
        ),
    ]
    await assert_refused(w.clinic, cases)
    await assert_nothing_booked(w, scene)


async def test_bad_cancellations_get_a_4xx_with_reasons(w: World, scene: Scene) -> None:
    desk, gone, future = scene.desk, scene.gone, scene.future
    cases: list[Case] = [
        (
            "cancel unknown",
            sched.CANCEL,
            desk,
            {"appointment_id": "no-such", "reason": "x"},
            N,
            "unknown",
        ),
        ("cancel without reason", sched.CANCEL, desk, {"appointment_id": future}, V, "reason"),
        (
            "cancel with a long reason",
            sched.CANCEL,
            desk,
            {"appointment_id": future, "reason": "x" * 501},
            V,
            "reason",
        ),
        (
            "cancel twice",
            sched.CANCEL,
            desk,
            {"appointment_id": gone.appointment_id, "reason": "again"},
            C,
            "cancelled",
        ),
    ]
    await assert_refused(w.clinic, cases)
    await assert_nothing_booked(w, scene)


async def test_check_ins_no_shows_and_visits_out_of_turn_get_a_4xx_with_reasons(
    w: World, scene: Scene
) -> None:
    doctor, desk, gone, future, arrived = (
        scene.doctor,
        scene.desk,
        scene.gone,
        scene.future,
        scene.arrived,
    )
    cases: list[Case] = [
        (
            "check in another day's appointment",
            sched.CHECK_IN,
            desk,
            {"appointment_id": future},
            C,
            "day of their appointment",
        ),
        ("check in unknown", sched.CHECK_IN, desk, {"appointment_id": "no-such"}, N, "unknown"),
        (
            "check in a cancelled one",
            sched.CHECK_IN,
            desk,
            {"appointment_id": gone.appointment_id},
            C,
            "is cancelled",
        ),
        (
            "no-show before the appointment",
            sched.MARK_NO_SHOW,
            desk,
            {"appointment_id": future},
            C,
            "not started",
        ),
        (
            "no-show with an outcome",
            sched.MARK_NO_SHOW,
            desk,
            {"appointment_id": future, "outcome": "no_show"},
            V,
            "outcome",
        ),
        (
            "start a visit days ahead",
            sched.START_VISIT,
            doctor,
            {"appointment_id": future},
            C,
            "day of its appointment",
        ),
        (
            "finish a visit never started",
            sched.FINISH_VISIT,
            doctor,
            {"appointment_id": arrived},
            C,
            "that is checked in",
        ),
        ("start unknown", sched.START_VISIT, doctor, {"appointment_id": "no-such"}, N, "unknown"),
    ]
    await assert_refused(w.clinic, cases)
    await assert_nothing_booked(w, scene)


async def test_breaks_absences_and_today_reads_with_bad_input_get_a_4xx_with_reasons(
    w: World, scene: Scene
) -> None:
    doctor, desk, admin, day, holiday, nine, booking = (
        scene.doctor,
        scene.desk,
        scene.admin,
        scene.day,
        scene.holiday,
        scene.nine,
        scene.booking,
    )
    cases: list[Case] = [
        (
            "booking into a break",
            sched.BOOK,
            desk,
            booking(start=iso(at(day, "09:50")), end=iso(at(day, "10:20"))),
            V,
            "has a break 10:00",
        ),
        (
            "booking on a holiday",
            sched.BOOK,
            desk,
            booking(start=iso(at(holiday, "09:00")), end=iso(at(holiday, "09:30"))),
            V,
            "is on holiday",
        ),
        (
            "break ends before it starts",
            sched.SET_BREAKS,
            admin,
            {
                "physician_id": doctor.account_id,
                "breaks": [{"weekday": "monday", "start": "13:30", "end": "12:30"}],
            },
            V,
            "ends before it starts",
        ),
        (
            "breaks overlap",
            sched.SET_BREAKS,
            admin,
            {
                "physician_id": doctor.account_id,
                "breaks": [
                    {"weekday": "friday", "start": "12:00", "end": "13:00"},
                    {"weekday": "friday", "start": "12:30", "end": "12:45"},
                ],
            },
            V,
            "overlap",
        ),
        (
            "absence over already",
            sched.CHANGE_ABSENCES,
            admin,
            {
                "physician_id": doctor.account_id,
                "add": [{"first_day": str(today() - timedelta(days=2))}],
            },
            V,
            "over already",
        ),
        (
            "absence too far ahead",
            sched.CHANGE_ABSENCES,
            admin,
            {
                "physician_id": doctor.account_id,
                "add": [{"first_day": str(today() + timedelta(days=400))}],
            },
            V,
            "days ahead",
        ),
        (
            "absence of two years",
            sched.CHANGE_ABSENCES,
            admin,
            {
                "physician_id": doctor.account_id,
                "add": [
                    {"first_day": str(today()), "last_day": str(today() + timedelta(days=700))}
                ],
            },
            V,
            "days at most",
        ),
        (
            "absence as days and times",
            sched.CHANGE_ABSENCES,
            admin,
            {
                "physician_id": doctor.account_id,
                "add": [
                    {
                        "first_day": str(day),
                        "start": iso(nine),
                        "end": iso(nine + timedelta(hours=1)),
                    }
                ],
            },
            V,
            "not both",
        ),
        (
            "absence without days or times",
            sched.CHANGE_ABSENCES,
            admin,
            {"physician_id": doctor.account_id, "add": [{"kind": "leave"}]},
            V,
            "first day",
        ),
        (
            "absence ending before it starts",
            sched.CHANGE_ABSENCES,
            admin,
            {
                "physician_id": doctor.account_id,
                "add": [{"first_day": str(day), "last_day": str(day - timedelta(days=1))}],
            },
            V,
            "before its first day",
        ),
        (
            "absence of an unknown kind",
            sched.CHANGE_ABSENCES,
            admin,
            {
                "physician_id": doctor.account_id,
                "add": [{"kind": "sabbatical", "first_day": str(day)}],
            },
            V,
            "kind",
        ),
        (
            "remove an absence that is not there",
            sched.CHANGE_ABSENCES,
            admin,
            {"physician_id": doctor.account_id, "remove": ["no-such-absence"]},
            V,
            "no absence",
        ),
        (
            "no absence to change",
            sched.CHANGE_ABSENCES,
            admin,
            {"physician_id": doctor.account_id},
            V,
            "add or to remove",
        ),
        (
            "today of nobody",
            sched.TODAY,
            desk,
            {"physician_id": "acc-nobody"},
            N,
            "unknown",
        ),
        ("today of a bad id", sched.TODAY, desk, {"physician_id": "p 1"}, V, "physician_id"),
    ]
    await assert_refused(w.clinic, cases)
    await assert_nothing_booked(w, scene)


async def test_the_end_of_the_calendar_gets_a_readable_4xx_never_an_overflow(
    w: World, scene: Scene
) -> None:
    doctor, desk, admin = scene.doctor, scene.desk, scene.admin
    cases: list[Case] = [
        (
            "absence on the last day there is",
            sched.CHANGE_ABSENCES,
            admin,
            {"physician_id": doctor.account_id, "add": [{"first_day": "9999-12-31"}]},
            V,
            "days ahead",
        ),
        (
            "calendar of the last day there is",
            sched.CALENDAR,
            desk,
            {"physician_id": doctor.account_id, "day": "9999-12-31", "span": "week"},
            V,
            "no calendar for that day",
        ),
    ]
    await assert_refused(w.clinic, cases)
    await assert_nothing_booked(w, scene)


async def test_bad_working_hours_get_a_422_with_reasons(w: World, scene: Scene) -> None:
    doctor, desk, admin = scene.doctor, scene.desk, scene.admin
    cases: list[Case] = [
        (
            "no such weekday",
            sched.SET_WORKING_HOURS,
            admin,
            {
                "physician_id": doctor.account_id,
                "weekly": [{"weekday": "funday", "start": "08:00", "end": "12:00"}],
            },
            V,
            "weekday",
        ),
        (
            "no such hour",
            sched.SET_WORKING_HOURS,
            admin,
            {
                "physician_id": doctor.account_id,
                "weekly": [{"weekday": "monday", "start": "25:00", "end": "26:00"}],
            },
            V,
            "HH:MM",
        ),
        (
            "hours end before start",
            sched.SET_WORKING_HOURS,
            admin,
            {
                "physician_id": doctor.account_id,
                "weekly": [{"weekday": "monday", "start": "12:00", "end": "08:00"}],
            },
            V,
            "end before they start",
        ),
        (
            "overlapping hours",
            sched.SET_WORKING_HOURS,
            admin,
            {
                "physician_id": doctor.account_id,
                "weekly": [
                    {"weekday": "monday", "start": "08:00", "end": "12:00"},
                    {"weekday": "monday", "start": "11:00", "end": "13:00"},
                ],
            },
            V,
            "overlap",
        ),
        (
            "too many periods",
            sched.SET_WORKING_HOURS,
            admin,
            {
                "physician_id": doctor.account_id,
                "weekly": [{"weekday": "monday", "start": "08:00", "end": "08:05"}] * 57,
            },
            V,
            "weekly",
        ),
        (
            "hours as a string",
            sched.SET_WORKING_HOURS,
            admin,
            {"physician_id": doctor.account_id, "weekly": "mon-fri 9-5"},
            V,
            "weekly",
        ),
        (
            "hours of an unknown physician",
            sched.SET_WORKING_HOURS,
            admin,
            {"physician_id": "acc-nobody", "weekly": []},
            V,
            "unknown physician",
        ),
        (
            "hours of a receptionist",
            sched.SET_WORKING_HOURS,
            admin,
            {"physician_id": desk.account_id, "weekly": []},
            V,
            "not a physician",
        ),
    ]
    await assert_refused(w.clinic, cases)
    await assert_nothing_booked(w, scene)


async def test_bad_days_off_get_a_422_with_reasons(w: World, scene: Scene) -> None:
    doctor, admin, day_off = scene.doctor, scene.admin, scene.day_off
    cases: list[Case] = [
        (
            "day off in the past",
            sched.SET_DAYS_OFF,
            admin,
            {"physician_id": doctor.account_id, "add": [str(today() - timedelta(days=1))]},
            V,
            "past",
        ),
        (
            "day off too far ahead",
            sched.SET_DAYS_OFF,
            admin,
            {"physician_id": doctor.account_id, "add": [str(today() + timedelta(days=400))]},
            V,
            "too far",
        ),
        (
            "no such date",
            sched.SET_DAYS_OFF,
            admin,
            {"physician_id": doctor.account_id, "add": ["2030-13-01"]},
            V,
            "add",
        ),
        (
            "nothing to change",
            sched.SET_DAYS_OFF,
            admin,
            {"physician_id": doctor.account_id},
            V,
            "add or to remove",
        ),
        (
            "added and removed",
            sched.SET_DAYS_OFF,
            admin,
            {
                "physician_id": doctor.account_id,
                "add": [str(day_off)],
                "remove": [str(day_off)],
            },
            V,
            "both",
        ),
        (
            "days off of an unknown physician",
            sched.SET_DAYS_OFF,
            admin,
            {"physician_id": "acc-nobody", "add": [str(day_off)]},
            V,
            "unknown physician",
        ),
    ]
    await assert_refused(w.clinic, cases)
    await assert_nothing_booked(w, scene)


async def test_bad_calendar_and_free_slots_reads_get_a_4xx_with_reasons(
    w: World, scene: Scene
) -> None:
    doctor, desk, day = scene.doctor, scene.desk, scene.day
    cases: list[Case] = [
        (
            # The physician is part of the path: there is no such route.
            "calendar without a physician",
            sched.CALENDAR,
            desk,
            {"day": str(day)},
            V,
            "no route",
        ),
        (
            "calendar of a fortnight",
            sched.CALENDAR,
            desk,
            {"physician_id": doctor.account_id, "day": str(day), "span": "fortnight"},
            V,
            "span",
        ),
        (
            "calendar of nobody",
            sched.CALENDAR,
            desk,
            {"physician_id": "acc-nobody", "day": str(day)},
            N,
            "unknown",
        ),
        (
            "slots backwards",
            sched.FREE_SLOTS,
            desk,
            {
                "physician_id": doctor.account_id,
                "first_day": str(day),
                "last_day": str(day - timedelta(days=1)),
            },
            V,
            "before the first day",
        ),
        (
            "slots for a quarter",
            sched.FREE_SLOTS,
            desk,
            {
                "physician_id": doctor.account_id,
                "first_day": str(day),
                "last_day": str(day + timedelta(days=90)),
            },
            V,
            "31 days",
        ),
        (
            "slots of no length",
            sched.FREE_SLOTS,
            desk,
            {
                "physician_id": doctor.account_id,
                "first_day": str(day),
                "last_day": str(day),
                "duration_minutes": 0,
            },
            V,
            "duration_minutes",
        ),
    ]
    await assert_refused(w.clinic, cases)
    await assert_nothing_booked(w, scene)


async def test_free_slots_at_the_end_of_the_calendar_are_none(w: World) -> None:
    doctor = await w.physician("dr-bad-far")
    reply = await w.clinic.call(
        sched.FREE_SLOTS,
        sched.FreeSlotsRequest(
            physician_id=doctor.account_id,
            first_day=date(9999, 12, 20),
            last_day=date(9999, 12, 31),
        ),
        await w.desk(),
    )
    assert reply.slots == [] and not reply.truncated


async def test_several_reasons_are_reported_together(w: World) -> None:
    desk = await w.desk()
    doctor = await w.physician("dr-bad-many")
    past = datetime.now(UTC).replace(second=30, microsecond=0) - timedelta(days=1)
    error = await refusal(
        w.clinic,
        sched.BOOK,
        {
            "patient_id": "pat-nobody",
            "physician_id": doctor.account_id,
            "start": iso(past),
            "end": iso(past - timedelta(minutes=5)),
            "reason": "x",
        },
        desk,
    )
    assert error.code is V
    assert isinstance(error.details, list)
    assert {d["type"] for d in error.details} == {"whole_minute", "end_before_start", "past"}
    error = await refusal(
        w.clinic,
        sched.BOOK,
        {
            "patient_id": "pat-nobody",
            "physician_id": "acc-nobody",
            "start": iso(at(today() + timedelta(days=2), "09:00")),
            "end": iso(at(today() + timedelta(days=2), "09:30")),
            "reason": "x",
        },
        desk,
    )
    assert isinstance(error.details, list)
    assert {d["type"] for d in error.details} == {"unknown_patient", "unknown_physician"}
    assert {d["loc"][0] for d in error.details} == {"patient_id", "physician_id"}


async def test_inverted_hours_on_five_days_are_one_sentence_under_their_field(w: World) -> None:
    """The web app sends Monday to Friday 12:00-08:00: one problem, said once, as a
    sentence (not five "Value error, ..." lines), under `weekly`."""
    admin = await w.admin()
    doctor = await w.physician("dr-bad-inverted")
    body = {
        "physician_id": doctor.account_id,
        "weekly": [
            {"weekday": d.value, "start": "12:00", "end": "08:00"} for d in list(sched.Weekday)[:5]
        ],
    }
    raw = raw_of(body)
    error = await refusal(w.clinic, sched.SET_WORKING_HOURS, body, admin)
    assert is_4xx(error.code)
    reasons = gateway_reasons(sched.SET_WORKING_HOURS, raw)
    assert reasons is not None
    (problem,) = json.loads(reasons)
    assert problem["loc"] == ["weekly"] and problem["type"] == "end_before_start"
    assert problem["msg"] == (
        "The working hours 12:00\u201308:00 on Monday to Friday end before they start (for "
        "work past midnight, end at 24:00 and go on from 00:00 the next day)."
    )
    # and overlapping lunch breaks on two days: one sentence naming both days
    overlapping = {
        "physician_id": doctor.account_id,
        "breaks": [
            {"weekday": d, "start": s, "end": e}
            for d in ("monday", "wednesday")
            for s, e in (("12:00", "13:00"), ("12:30", "13:30"))
        ],
    }
    reasons = gateway_reasons(sched.SET_BREAKS, raw_of(overlapping))
    assert reasons is not None
    (problem,) = json.loads(reasons)
    assert problem["msg"] == (
        "Breaks on Monday and Wednesday overlap: 12:00\u201313:00 and 12:30\u201313:30."
    )
