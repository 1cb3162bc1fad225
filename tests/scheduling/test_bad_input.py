"""Bad input for every write (and the reads' own rules) gets a 4xx with reasons, never 500.

Requests are sent as raw JSON over the bus, as a broken or hostile client's would
arrive: wrong types, impossible dates, naive times, unknown ids, end before start, the
past, outside working hours, on a day off, over someone else's slot.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from contracts import scheduling as sched
from contracts.base import Role, RpcMethod
from contracts.errors import ErrorCode
from mesh.errors import RpcError
from tests.scheduling.support import World, at, key, today, world
from tests.support.clinic import StaffMember

V, C, N, B = ErrorCode.validation, ErrorCode.conflict, ErrorCode.not_found, ErrorCode.bad_request


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("schedbad") as w:
        yield w


def iso(instant: datetime) -> str:
    return instant.isoformat()


async def refusal(
    w: World, method: RpcMethod[Any, Any], body: Any, caller: StaffMember
) -> RpcError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(RpcError) as err:
        await w.clinic.client.rpc.call_raw(
            method.queue,
            method.name,
            raw,
            principal=caller.principal,
            proof=caller.proof(),
            idempotency_key=key() if method.write else None,
        )
    return err.value


async def test_every_bad_write_gets_a_4xx_with_reasons(w: World) -> None:
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
    patient = w.patient()
    nine = at(day, "09:00")
    book = {
        "patient_id": patient,
        "physician_id": doctor.account_id,
        "start": iso(nine),
        "end": iso(nine + timedelta(minutes=30)),
        "reason": "Sore throat",
    }

    def booking(**changes: Any) -> dict[str, Any]:
        return {k: v for k, v in {**book, **changes}.items() if v is not ...}

    past = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    cases: list[tuple[str, RpcMethod[Any, Any], StaffMember, Any, ErrorCode, str]] = [
        # booking: formats and types
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
        # booking: times
        (
            "end before start",
            sched.BOOK,
            desk,
            booking(end=iso(nine - timedelta(minutes=30))),
            V,
            "end must be after start",
        ),
        ("end equals start", sched.BOOK, desk, booking(end=iso(nine)), V, "after start"),
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
        # booking: unknown people
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
        # rescheduling
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
            "after start",
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
        # cancelling
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
        # outcomes
        (
            "outcome that is not one",
            sched.RECORD_OUTCOME,
            desk,
            {"appointment_id": future, "outcome": "cancelled"},
            V,
            "outcome",
        ),
        (
            "outcome before the appointment",
            sched.RECORD_OUTCOME,
            desk,
            {"appointment_id": future, "outcome": "completed"},
            C,
            "not started",
        ),
        (
            "outcome of unknown",
            sched.RECORD_OUTCOME,
            desk,
            {"appointment_id": "no-such", "outcome": "no_show"},
            N,
            "unknown",
        ),
        # working hours
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
            "wall time",
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
            "end must be after start",
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
        # days off
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
        # reads have rules too
        (
            "calendar without a physician",
            sched.CALENDAR,
            desk,
            {"day": str(day)},
            V,
            "physician_id",
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
            "before first_day",
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
    failures = []
    for name, method, caller, body, code, text in cases:
        error = await refusal(w, method, body, caller)
        seen = f"{error.message} {json.dumps(error.details)}"
        if error.code is not code or text not in seen:
            failures.append(f"{name}: expected {code} with {text!r}, got {error.code}: {seen}")
        if error.code is V and not error.details:
            failures.append(f"{name}: a 422 without details")
    assert not failures, "\n".join(failures)
    # Nothing was booked by any of it.
    calendar = await w.clinic.call(
        sched.CALENDAR,
        sched.CalendarRequest(physician_id=doctor.account_id, day=day, include_cancelled=True),
        desk,
    )
    assert {a.appointment_id for a in calendar.appointments} == {
        taken.appointment_id,
        gone.appointment_id,
        future,
    }
    assert calendar.appointments[-1].start == at(day, "16:00")  # the reschedules changed nothing


async def test_several_reasons_are_reported_together(w: World) -> None:
    desk = await w.desk()
    doctor = await w.physician("dr-bad-many")
    past = datetime.now(UTC).replace(second=30, microsecond=0) - timedelta(days=1)
    error = await refusal(
        w,
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
        w,
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
