"""Wall-clock working hours as UTC instants, across DST changes (no services needed)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from contracts.scheduling import CalendarSpan, wall_minutes
from services.scheduling import timeplan

BERLIN = ZoneInfo("Europe/Berlin")
SPRING = date(2027, 3, 28)  # clocks jump 02:00 -> 03:00 (CET -> CEST)
AUTUMN = date(2027, 10, 31)  # clocks go back 03:00 -> 02:00 (CEST -> CET)
EVERY_DAY = {d: [(0, 1440)] for d in range(7)}


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_wall_times_follow_the_clinics_offset() -> None:
    assert timeplan.wall_to_utc(date(2027, 1, 11), 9 * 60, BERLIN) == utc(2027, 1, 11, 8)
    assert timeplan.wall_to_utc(date(2027, 7, 12), 9 * 60, BERLIN) == utc(2027, 7, 12, 7)
    assert timeplan.wall_to_utc(date(2027, 7, 12), 1440, BERLIN) == utc(2027, 7, 12, 22)


def test_a_skipped_wall_time_is_the_instant_of_the_jump() -> None:
    jump = utc(2027, 3, 28, 1)
    for minute in (120, 150, 179):  # 02:00, 02:30, 02:59 never happen that night
        assert timeplan.wall_to_utc(SPRING, minute, BERLIN) == jump
    assert timeplan.wall_to_utc(SPRING, 180, BERLIN) == jump  # 03:00 CEST
    assert timeplan.wall_to_utc(SPRING, 119, BERLIN) == utc(2027, 3, 28, 0, 59)


def test_a_repeated_wall_time_is_its_first_occurrence() -> None:
    assert timeplan.wall_to_utc(AUTUMN, 150, BERLIN) == utc(2027, 10, 31, 0, 30)  # 02:30 CEST
    assert timeplan.wall_to_utc(AUTUMN, 180, BERLIN) == utc(2027, 10, 31, 2)  # 03:00 CET


@pytest.mark.parametrize(("day", "hours"), [(SPRING, 23), (AUTUMN, 25), (date(2027, 5, 5), 24)])
def test_a_whole_day_of_work_lasts_as_long_as_the_day(day: date, hours: int) -> None:
    (period,) = timeplan.working_periods(EVERY_DAY, set(), day, day, BERLIN)
    assert period[1] - period[0] == timedelta(hours=hours)
    assert period == timeplan.day_bounds(day, day, BERLIN)
    windows = timeplan.free_windows([period], [], utc(2000, 1, 1))
    found, truncated = timeplan.slots(windows, timedelta(hours=1), 100)
    assert len(found) == hours and not truncated


def test_hours_inside_the_gap_shrink_not_grow() -> None:
    weekly = {6: [(60, 240)]}  # Sundays 01:00-04:00, three wall-clock hours
    (period,) = timeplan.working_periods(weekly, set(), SPRING, SPRING, BERLIN)
    assert period == (utc(2027, 3, 28, 0), utc(2027, 3, 28, 2))  # but two real hours
    assert timeplan.working_periods({6: [(120, 180)]}, set(), SPRING, SPRING, BERLIN) == []


def test_days_off_weekdays_and_merging() -> None:
    weekly = {0: [(8 * 60, 12 * 60), (12 * 60, 17 * 60)], 2: [(9 * 60, 10 * 60)]}
    monday, wednesday = date(2027, 1, 11), date(2027, 1, 13)
    periods = timeplan.working_periods(weekly, set(), monday, wednesday, BERLIN)
    assert periods == [
        (utc(2027, 1, 11, 7), utc(2027, 1, 11, 16)),  # touching periods are one
        (utc(2027, 1, 13, 8), utc(2027, 1, 13, 9)),
    ]
    off = timeplan.working_periods(weekly, {monday}, monday, wednesday, BERLIN)
    assert off == periods[1:]
    assert timeplan.fits(utc(2027, 1, 11, 10, 30), utc(2027, 1, 11, 11, 30), periods)
    assert not timeplan.fits(utc(2027, 1, 11, 15, 30), utc(2027, 1, 11, 16, 30), periods)


def test_free_windows_and_slots() -> None:
    period = (utc(2027, 1, 11, 8), utc(2027, 1, 11, 12))
    busy = [
        (utc(2027, 1, 11, 9), utc(2027, 1, 11, 9, 30)),
        (utc(2027, 1, 11, 9, 20), utc(2027, 1, 11, 10)),  # overlapping busy time merges
        (utc(2027, 1, 11, 11, 50), utc(2027, 1, 11, 13)),
    ]
    windows = timeplan.free_windows([period], busy, utc(2027, 1, 11, 8, 2))
    assert windows == [
        (utc(2027, 1, 11, 8, 2), utc(2027, 1, 11, 9)),
        (utc(2027, 1, 11, 10), utc(2027, 1, 11, 11, 50)),
    ]
    found, truncated = timeplan.slots(windows, timedelta(minutes=30), 100)
    assert [s for s, _ in found] == [
        utc(2027, 1, 11, 8, 5),  # "now" rounded up to five minutes
        utc(2027, 1, 11, 10),
        utc(2027, 1, 11, 10, 30),
        utc(2027, 1, 11, 11),
    ]
    assert not truncated
    assert timeplan.slots(windows, timedelta(minutes=30), 2) == (found[:2], True)


def test_spans_and_wall_minutes() -> None:
    assert timeplan.span_days(date(2027, 1, 13), CalendarSpan.week) == (
        date(2027, 1, 11),
        date(2027, 1, 17),
    )
    assert timeplan.span_days(date(2027, 1, 13), CalendarSpan.day) == (
        date(2027, 1, 13),
        date(2027, 1, 13),
    )
    assert wall_minutes("00:00") == 0 and wall_minutes("24:00") == 1440
    for bad in ("24:01", "7:00", "12:60", "noon", "25:00"):
        with pytest.raises(ValueError):
            wall_minutes(bad)


# ---------------------------------------------------------------- one joined plan
# The slot finder and the booking rule read the same joined working time: whatever the
# finder offers must be bookable (issue 16: a slot across midnight was offered, then
# refused because the booking rule looked at the start day's periods only).

SATURDAY, SUNDAY = date(2027, 1, 16), date(2027, 1, 17)
WEEKEND_NIGHT = timeplan.Plan({5: [(20 * 60, 1440)], 6: [(0, 4 * 60)]})
ROUND_THE_CLOCK = timeplan.Plan(EVERY_DAY)


def offered(
    plan: timeplan.Plan,
    first: date,
    last: date,
    minutes: int,
    busy: list[tuple[datetime, datetime]] | None = None,
    limit: int = 5000,
) -> list[tuple[datetime, datetime]]:
    found, _ = timeplan.free_slots(
        plan, busy or [], first, last, BERLIN, utc(2000, 1, 1), timedelta(minutes=minutes), limit
    )
    return found


def test_a_slot_across_midnight_is_offered_and_bookable() -> None:
    """Saturday 20:00-24:00 and Sunday 00:00-04:00 are one stretch of work."""
    slots = offered(WEEKEND_NIGHT, SATURDAY, SATURDAY, 35)
    across = [
        (s, e) for s, e in slots if timeplan.local_day(e - timedelta(minutes=1), BERLIN) == SUNDAY
    ]
    assert across, "Saturday's last slots run into Sunday morning"
    assert all(timeplan.bookable(WEEKEND_NIGHT, s, e, BERLIN) for s, e in slots)
    # 23:30-00:05 local exactly, as the issue reports it
    late = (utc(2027, 1, 16, 22, 30), utc(2027, 1, 16, 23, 5))
    assert timeplan.bookable(WEEKEND_NIGHT, *late, BERLIN)
    # ... but not past Sunday's 04:00, nor into a Sunday without the early hours
    assert not timeplan.bookable(
        WEEKEND_NIGHT, utc(2027, 1, 17, 2, 45), utc(2027, 1, 17, 3, 15), BERLIN
    )
    saturday_only = timeplan.Plan({5: [(20 * 60, 1440)]})
    assert not timeplan.bookable(saturday_only, *late, BERLIN)
    assert all(e <= utc(2027, 1, 16, 23) for _, e in offered(saturday_only, SATURDAY, SATURDAY, 35))


def test_round_the_clock_slots_run_through_midnight() -> None:
    slots = offered(ROUND_THE_CLOCK, SATURDAY, SATURDAY, 35)
    assert len(slots) == 24 * 60 // 35 + 1  # the last one starts on Saturday, ends on Sunday
    assert slots[-1][0] < utc(2027, 1, 16, 23) < slots[-1][1]
    assert all(timeplan.bookable(ROUND_THE_CLOCK, s, e, BERLIN) for s, e in slots)
    assert timeplan.bookable(
        ROUND_THE_CLOCK, utc(2027, 1, 16, 22, 45), utc(2027, 1, 16, 23, 15), BERLIN
    )


@pytest.mark.parametrize(
    "day", [SPRING - timedelta(days=1), SPRING, AUTUMN - timedelta(days=1), AUTUMN]
)
def test_midnight_on_dst_weekends(day: date) -> None:
    """The nights before and after a DST change: slots through midnight are bookable,
    the 23- and 25-hour days are worked in full (no slot in the skipped hour, both
    occurrences of the repeated one)."""
    for plan in (
        ROUND_THE_CLOCK,
        timeplan.Plan({d: [(20 * 60, 1440), (0, 4 * 60)] for d in range(7)}),
    ):
        slots = offered(plan, day, day, 35)
        assert slots and all(timeplan.bookable(plan, s, e, BERLIN) for s, e in slots)
        begin, end = timeplan.day_bounds(day, day, BERLIN)
        assert all(begin <= s < end for s, _ in slots)
        assert any(e > end for _, e in slots), "the day's last slot runs into the next day"
    worked = sum(
        ((e - s) for s, e in timeplan.available(ROUND_THE_CLOCK, day, day, BERLIN)), timedelta()
    )
    assert (
        worked
        == timeplan.day_bounds(day, day, BERLIN)[1] - timeplan.day_bounds(day, day, BERLIN)[0]
    )


def test_breaks_and_absences_are_taken_out_of_the_hours() -> None:
    monday = date(2027, 1, 11)
    plan = timeplan.Plan(
        {0: [(8 * 60, 17 * 60)]},
        breaks={0: [(12 * 60 + 30, 13 * 60 + 30)]},
        absences=(timeplan.AbsenceSpan(start=utc(2027, 1, 11, 14), end=utc(2027, 1, 11, 15)),),
    )
    assert timeplan.available(plan, monday, monday, BERLIN) == [
        (utc(2027, 1, 11, 7), utc(2027, 1, 11, 11, 30)),
        (utc(2027, 1, 11, 12, 30), utc(2027, 1, 11, 14)),  # 13:30-15:00 local
        (utc(2027, 1, 11, 15), utc(2027, 1, 11, 16)),
    ]
    whole_days = timeplan.Plan(
        EVERY_DAY,
        absences=(timeplan.AbsenceSpan(first_day=monday, last_day=monday + timedelta(days=1)),),
    )
    assert timeplan.available(whole_days, monday, monday + timedelta(days=2), BERLIN) == [
        timeplan.day_bounds(monday + timedelta(days=2), monday + timedelta(days=2), BERLIN)
    ]
    # a break on a day of the DST change, inside the skipped hour: nothing to take out
    sunday_night = timeplan.Plan({6: [(0, 6 * 60)]}, breaks={6: [(2 * 60, 3 * 60)]})
    assert timeplan.available(sunday_night, SPRING, SPRING, BERLIN) == [
        (utc(2027, 3, 28, 0) - timedelta(hours=1), utc(2027, 3, 28, 4))
    ]


PLANS = {
    "weekend night": WEEKEND_NIGHT,
    "round the clock": ROUND_THE_CLOCK,
    "split days with lunch": timeplan.Plan(
        {d: [(7 * 60, 12 * 60), (12 * 60, 19 * 60), (22 * 60, 1440)] for d in range(7)},
        breaks={d: [(12 * 60 + 30, 13 * 60 + 15)] for d in range(5)},
        days_off=frozenset({date(2027, 3, 30)}),
        absences=(
            timeplan.AbsenceSpan(first_day=date(2027, 10, 29), last_day=date(2027, 10, 29)),
            timeplan.AbsenceSpan(start=utc(2027, 3, 27, 21, 10), end=utc(2027, 3, 27, 23, 50)),
        ),
    ),
}


@pytest.mark.parametrize("name", list(PLANS))
@pytest.mark.parametrize(
    "first", [SPRING - timedelta(days=2), AUTUMN - timedelta(days=2), SATURDAY]
)
def test_every_offered_slot_is_bookable(name: str, first: date) -> None:
    """Across DST weekends, midnight, breaks, days off, absences and bookings: the
    finder's every slot passes the booking rule, for lengths up to the longest."""
    plan = PLANS[name]
    busy = [
        (
            utc(first.year, first.month, first.day, 9, 10),
            utc(first.year, first.month, first.day, 10, 5),
        )
    ]
    total = 0
    for minutes in (5, 25, 35, 60, 95, 8 * 60):
        slots = offered(plan, first, first + timedelta(days=3), minutes, busy)
        for start, end in slots:
            assert timeplan.bookable(plan, start, end, BERLIN), (name, minutes, start)
            assert not (start < busy[0][1] and busy[0][0] < end)
        total += len(slots)
    assert total > 0


def test_the_finder_stops_at_its_last_day_and_its_limit() -> None:
    slots = offered(ROUND_THE_CLOCK, SATURDAY, SUNDAY, 60)
    begin, end = timeplan.day_bounds(SATURDAY, SUNDAY, BERLIN)
    assert slots[0][0] == begin and slots[-1][0] < end and len(slots) == 48
    found, truncated = timeplan.free_slots(
        ROUND_THE_CLOCK, [], SATURDAY, SUNDAY, BERLIN, utc(2000, 1, 1), timedelta(hours=1), 48
    )
    assert len(found) == 48 and not truncated
    found, truncated = timeplan.free_slots(
        ROUND_THE_CLOCK, [], SATURDAY, SUNDAY, BERLIN, utc(2000, 1, 1), timedelta(hours=1), 47
    )
    assert len(found) == 47 and truncated
