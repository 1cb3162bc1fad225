"""Wall-clock working hours turned into UTC instants, and the free time between bookings.

Pure functions (no I/O), so the DST rules are tested on their own. Everything compared
is a UTC instant; wall times exist only at the edges (working hours, calendar days).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from contracts.scheduling import CalendarSpan

Interval = tuple[datetime, datetime]
WeeklyHours = Mapping[int, Sequence[tuple[int, int]]]
"""weekday (0 = Monday) -> [(start minute, end minute)] in wall-clock minutes."""

SLOT_ALIGN = timedelta(minutes=5)


def wall_to_utc(day: date, minute: int, tz: ZoneInfo) -> datetime:
    """The UTC instant of wall time `minute` (0..1440) on `day` in `tz`.

    A wall time that a DST change skips (e.g. 02:30 when clocks jump from 02:00 to 03:00)
    never happens: it maps to the instant of the jump, so a working period never grows.
    A repeated wall time (clocks going back) maps to its first occurrence.
    """
    naive = datetime.combine(day, time()) + timedelta(minutes=minute)
    after = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _wall(after, tz) == naive:
        return after
    # In a gap: `before` (fold=1) lies before the jump, `after` past it. Bisect to it.
    low = int(naive.replace(tzinfo=tz, fold=1).astimezone(UTC).timestamp())
    high = int(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _wall(datetime.fromtimestamp(middle, UTC), tz) >= naive:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def local_day(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, with overlapping or touching intervals joined."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def working_periods(
    weekly: WeeklyHours, days_off: set[date], first: date, last: date, tz: ZoneInfo
) -> list[Interval]:
    """Working time from `first` to `last` (inclusive days), as merged UTC intervals."""
    periods: list[Interval] = []
    day = first
    while day <= last:
        if day not in days_off:
            for start, end in weekly.get(day.weekday(), ()):
                utc_start, utc_end = wall_to_utc(day, start, tz), wall_to_utc(day, end, tz)
                if utc_end > utc_start:  # a period wholly inside a DST gap is empty
                    periods.append((utc_start, utc_end))
        day += timedelta(days=1)
    return merge(periods)


def fits(start: datetime, end: datetime, periods: Sequence[Interval]) -> bool:
    """Whether [start, end) lies inside one working period."""
    return any(p_start <= start and end <= p_end for p_start, p_end in periods)


def free_windows(
    periods: Sequence[Interval], busy: Iterable[Interval], not_before: datetime
) -> list[Interval]:
    """Working time minus busy time, from `not_before` on."""
    blocked = merge(busy)
    windows: list[Interval] = []
    for p_start, p_end in periods:
        cursor = max(p_start, not_before)
        for b_start, b_end in blocked:
            if b_end <= cursor or b_start >= p_end:
                continue
            if b_start > cursor:
                windows.append((cursor, b_start))
            cursor = max(cursor, b_end)
        if cursor < p_end:
            windows.append((cursor, p_end))
    return windows


def slots(
    windows: Sequence[Interval], duration: timedelta, limit: int
) -> tuple[list[Interval], bool]:
    """Back-to-back slots of `duration` in each window, starting on a 5-minute boundary.

    Returns the first `limit` slots and whether there were more.
    """
    found: list[Interval] = []
    for w_start, w_end in windows:
        start = _align_up(w_start)
        while start + duration <= w_end:
            if len(found) == limit:
                return found, True
            found.append((start, start + duration))
            start += duration
    return found, False


def _align_up(instant: datetime) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    steps = -(-(instant - epoch) // SLOT_ALIGN)  # ceiling division
    return epoch + steps * SLOT_ALIGN


def span_days(day: date, span: CalendarSpan) -> tuple[date, date]:
    """First and last day of the calendar span around `day` (weeks: Monday to Sunday)."""
    if span is CalendarSpan.day:
        return day, day
    monday = day - timedelta(days=day.weekday())
    return monday, monday + timedelta(days=6)


def day_bounds(first: date, last: date, tz: ZoneInfo) -> Interval:
    """From the start of `first` to the end of `last`, local midnights as UTC instants."""
    return wall_to_utc(first, 0, tz), wall_to_utc(last + timedelta(days=1), 0, tz)
