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
