"""Working time over the real bus and database: what the slot finder offers can be booked
(across midnight, round the clock, on the days of a DST change), breaks and absences are
kept free by both, and every refusal says why in the clinic's time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
import pytest_asyncio

from contracts import scheduling as sched
from mesh.errors import InvalidRequest
from tests.scheduling.support import TZ, World, at, key, today, world
from tests.support.clinic import StaffMember
from tests.support.polling import until

EVERY_DAY = [sched.WorkingPeriod(weekday=d, start="00:00", end="24:00") for d in sched.Weekday]
WEEKDAYS = list(sched.Weekday)[:5]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("schedtime") as w:
        yield w


def offset(day: date) -> timedelta | None:
    return datetime.combine(day, datetime.min.time(), TZ).utcoffset()


def next_weekday(weekday: int, at_least: int = 2) -> date:
    """The first such weekday at least `at_least` days ahead whose night has no DST change
    (so `at()` is exact)."""
    day = today() + timedelta(days=at_least)
    while day.weekday() != weekday or offset(day) != offset(day + timedelta(days=2)):
        day += timedelta(days=1)
    return day


async def slots(
    w: World, doctor: StaffMember, first: date, last: date, minutes: int
) -> list[tuple[datetime, datetime]]:
    reply = await w.clinic.call(
        sched.FREE_SLOTS,
        sched.FreeSlotsRequest(
            physician_id=doctor.account_id,
            first_day=first,
            last_day=last,
            duration_minutes=minutes,
            limit=1000,
        ),
        await w.desk(),
    )
    return [(s.start, s.end) for s in reply.slots]


async def book(w: World, doctor: StaffMember, start: datetime, end: datetime) -> sched.Appointment:
    return await w.clinic.call(
        sched.BOOK,
        sched.BookRequest(
            patient_id=w.patient(),
            physician_id=doctor.account_id,
            start=start,
            end=end,
            reason="late visit",
        ),
        await w.desk(),
        idempotency_key=key(),
    )


async def test_a_slot_across_midnight_is_offered_and_booked(w: World) -> None:
    """Issue 16: hours Saturday 20:00-24:00 and Sunday 00:00-04:00; free-slots offered
    23:30-00:05 and the booking was refused (`outside_availability`)."""
    doctor = await w.physician(
        "dr-night",
        [
            sched.WorkingPeriod(weekday=sched.Weekday.saturday, start="20:00", end="24:00"),
            sched.WorkingPeriod(weekday=sched.Weekday.sunday, start="00:00", end="04:00"),
        ],
    )
    saturday = next_weekday(5)
    sunday = saturday + timedelta(days=1)
    offered = await slots(w, doctor, saturday, saturday, 35)
    assert offered and all(start < at(sunday, "00:00") for start, _ in offered)
    across = [(s, e) for s, e in offered if e > at(sunday, "00:00")]
    assert across == [(at(saturday, "23:30"), at(sunday, "00:05"))]  # the slot
    after = await slots(w, doctor, sunday, sunday, 35)
    assert after[0][0] == at(sunday, "00:00")  # Sunday's own slots start at its midnight
    for start, end in offered:  # everything offered is bookable, the night slot too
        await book(w, doctor, start, end)
    after = await slots(w, doctor, sunday, sunday, 35)
    assert after[0][0] == at(sunday, "00:05")  # the booked night slot is not offered again
    for start, end in after:
        await book(w, doctor, start, end)
    assert await slots(w, doctor, saturday, sunday, 35) == []
    # Booked by hand a week later, over midnight at another minute: 23:45-00:15.
    exact = await book(
        w,
        doctor,
        at(saturday + timedelta(days=7), "23:45"),
        at(sunday + timedelta(days=7), "00:15"),
    )
    assert exact.end == at(sunday + timedelta(days=7), "00:15")
    # Beyond Sunday 04:00: refused, in words.
    with pytest.raises(InvalidRequest) as refused:
        await book(w, doctor, at(sunday, "03:55"), at(sunday, "04:25"))
    assert isinstance(refused.value.details, list)
    assert refused.value.details[0]["type"] == "outside_availability"
    assert "outside Dr Night's working hours" in refused.value.message
    assert "Sat" not in refused.value.message and "00:00\u201304:00" in refused.value.message


async def test_round_the_clock_every_offered_slot_is_bookable(w: World) -> None:
    doctor = await w.physician("dr-always", EVERY_DAY)
    day = next_weekday(2)
    offered = await slots(w, doctor, day, day, 35)
    last_start, last_end = offered[-1]
    assert last_start < at(day + timedelta(days=1), "00:00") < last_end  # runs past midnight
    await book(w, doctor, last_start, last_end)
    await book(w, doctor, at(day, "22:45"), at(day, "23:15"))
    # and on the day of the next DST change, and the days either side (23 and 25 hours)
    change = next(
        today() + timedelta(days=n)
        for n in range(3, 366)
        if offset(today() + timedelta(days=n)) != offset(today() + timedelta(days=n + 1))
    )
    for edge in (change + timedelta(days=1), change):  # the later day first: nothing booked
        offered = await slots(w, doctor, edge, edge, 35)
        begin = datetime.combine(edge, datetime.min.time(), TZ).astimezone(UTC)
        hours = (
            datetime.combine(edge + timedelta(days=1), datetime.min.time(), TZ) - begin
        ).total_seconds() / 3600
        assert len(offered) == int(hours * 60 // 35) + 1
        last = offered[-1]
        assert last[1] > begin + timedelta(hours=hours)  # into the next day
        await book(w, doctor, *last)
        await book(w, doctor, *offered[len(offered) // 2])


async def test_breaks_and_absences_are_kept_free_and_named(w: World) -> None:
    doctor = await w.physician(
        "dr-lunch",
        [sched.WorkingPeriod(weekday=d, start="08:00", end="18:00") for d in sched.Weekday],
    )
    desk, admin = await w.desk(), await w.admin()
    monday = next_weekday(0)
    tuesday = monday + timedelta(days=1)
    training = await book(w, doctor, at(tuesday, "15:00"), at(tuesday, "15:30"))
    lunch = await w.clinic.call(
        sched.SET_BREAKS,
        sched.SetBreaksRequest(
            physician_id=doctor.account_id,
            breaks=[sched.WorkingPeriod(weekday=d, start="12:30", end="13:30") for d in WEEKDAYS],
        ),
        doctor,  # physicians may set their own
        idempotency_key=key(),
    )
    assert [(p.weekday, p.start, p.end) for p in lunch.breaks] == [
        (d, "12:30", "13:30") for d in WEEKDAYS
    ]
    offered = await slots(w, doctor, monday, monday, 30)
    assert (at(monday, "12:00"), at(monday, "12:30")) in offered
    assert not any(s < at(monday, "13:30") and at(monday, "12:30") < e for s, e in offered)
    assert (at(monday, "13:30"), at(monday, "14:00")) in offered
    with pytest.raises(InvalidRequest) as refused:
        await book(w, doctor, at(monday, "12:15"), at(monday, "12:45"))
    assert refused.value.message.startswith("Dr Lunch has a break 12:30\u201313:30 on Mon ")
    # Saturdays have no lunch break
    saturday = monday + timedelta(days=5)
    await book(w, doctor, at(saturday, "12:30"), at(saturday, "13:00"))

    # Absences: whole days (a holiday) and a time range (a training afternoon).
    wednesday, thursday = monday + timedelta(days=2), monday + timedelta(days=3)
    changed = await w.clinic.call(
        sched.CHANGE_ABSENCES,
        sched.ChangeAbsencesRequest(
            physician_id=doctor.account_id,
            add=[
                sched.NewAbsence(
                    kind=sched.AbsenceKind.holiday, first_day=wednesday, last_day=thursday
                ),
                sched.NewAbsence(
                    kind=sched.AbsenceKind.training,
                    start=at(tuesday, "14:00"),
                    end=at(tuesday, "18:00"),
                ),
            ],
        ),
        admin,
        idempotency_key=key(),
    )
    assert [(a.kind, a.first_day, a.last_day) for a in changed.absences] == [
        (sched.AbsenceKind.training, None, None),
        (sched.AbsenceKind.holiday, wednesday, thursday),
    ]
    holiday = changed.absences[1]
    assert (holiday.start, holiday.end) == (
        at(wednesday, "00:00"),
        at(thursday + timedelta(days=1), "00:00"),
    )
    # the booking inside the training afternoon stays, flagged
    assert [s.appointment_id for s in changed.affected] == [training.appointment_id]
    assert await slots(w, doctor, wednesday, thursday, 30) == []
    tuesday_slots = await slots(w, doctor, tuesday, tuesday, 30)
    assert tuesday_slots[-1] == (at(tuesday, "13:30"), at(tuesday, "14:00"))
    with pytest.raises(InvalidRequest, match=r"Dr Lunch is on holiday from Wed .* to Thu "):
        await book(w, doctor, at(thursday, "09:00"), at(thursday, "09:30"))
    with pytest.raises(
        InvalidRequest, match="Dr Lunch is away for training from 14:00 to 18:00 on Tue"
    ):
        await book(w, doctor, at(tuesday, "16:00"), at(tuesday, "16:30"))
    calendar = await w.clinic.call(
        sched.CALENDAR,
        sched.CalendarRequest(
            physician_id=doctor.account_id, day=monday, span=sched.CalendarSpan.week
        ),
        desk,
    )
    assert {a.absence_id for a in calendar.absences} == {a.absence_id for a in changed.absences}
    assert not any(
        s < at(wednesday, "23:59") and at(wednesday, "00:00") < e
        for s, e in ((r.start, r.end) for r in calendar.working)
    )
    # Removing the holiday gives its days back.
    again = await w.clinic.call(
        sched.CHANGE_ABSENCES,
        sched.ChangeAbsencesRequest(physician_id=doctor.account_id, remove=[holiday.absence_id]),
        desk,
        idempotency_key=key(),
    )
    assert [a.kind for a in again.absences] == [sched.AbsenceKind.training]
    assert (at(thursday, "08:00"), at(thursday, "08:30")) in await slots(
        w, doctor, thursday, thursday, 30
    )
    # Every change of working time is an event (calendars reload their grid live).
    changes = await until(
        lambda: (
            len(
                found := [
                    e
                    for e in w.events
                    if e.routing_key == sched.AVAILABILITY_CHANGED.routing_key
                    and e.payload.physician_id == doctor.account_id
                ]
            )
            >= 4
            and found
        )
    )
    assert [e.payload.by for e in changes[-3:]] == [
        doctor.account_id,
        admin.account_id,
        desk.account_id,
    ]
