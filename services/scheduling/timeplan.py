"""Wall-clock working time turned into UTC instants, and the free time between bookings.

Pure functions (no I/O), so the DST rules are tested on their own. Everything compared
is a UTC instant; wall times exist only at the edges (working hours, breaks, calendar
days).

One joined plan answers both "which slots are free" and "may this be booked": a
physician's `Plan` (hours, breaks, days off, absences) becomes working time with
`available`, merged across days (Saturday 20:00-24:00 and Sunday 00:00-04:00 are one
stretch), and `bookable` and `free_slots` both read that same working time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from contracts.scheduling import CalendarSpan

Interval = tuple[datetime, datetime]
WeeklyHours = Mapping[int, Sequence[tuple[int, int]]]
"""weekday (0 = Monday) -> [(start minute, end minute)] in wall-clock minutes."""


@dataclass(frozen=True)
class AbsenceSpan:
    """Whole days of the clinic's calendar (`first_day`..`last_day`), or UTC instants."""

    first_day: date | None = None
    last_day: date | None = None
    start: datetime | None = None
    end: datetime | None = None
    kind: str = "other"

    def interval(self, tz: ZoneInfo) -> Interval:
        if self.first_day is not None and self.last_day is not None:
            return day_bounds(self.first_day, self.last_day, tz)
        assert self.start is not None and self.end is not None
        return self.start, self.end


@dataclass(frozen=True)
class Plan:
    """A physician's working time as stored: what `available` joins."""

    weekly: WeeklyHours
    breaks: WeeklyHours = field(default_factory=dict)
    days_off: frozenset[date] = frozenset()
    absences: tuple[AbsenceSpan, ...] = ()


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


def without_breaks(
    periods: Iterable[tuple[int, int]], breaks: Iterable[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Wall-clock periods of one weekday minus that weekday's breaks (in minutes)."""
    result = sorted(periods)
    for b_start, b_end in breaks:
        cut: list[tuple[int, int]] = []
        for start, end in result:
            if b_end <= start or b_start >= end:
                cut.append((start, end))
                continue
            if start < b_start:
                cut.append((start, b_start))
            if b_end < end:
                cut.append((b_end, end))
        result = cut
    return result


def subtract(periods: Sequence[Interval], holes: Iterable[Interval]) -> list[Interval]:
    """Sorted, merged `periods` minus every interval in `holes`."""
    result = list(periods)
    for h_start, h_end in merge(holes):
        cut: list[Interval] = []
        for start, end in result:
            if h_end <= start or h_start >= end:
                cut.append((start, end))
                continue
            if start < h_start:
                cut.append((start, h_start))
            if h_end < end:
                cut.append((h_end, end))
        result = cut
    return result


def available(plan: Plan, first: date, last: date, tz: ZoneInfo) -> list[Interval]:
    """Working time from `first` to `last` (inclusive days) as merged UTC intervals: the
    weekly hours of every day that is not off, without its breaks, without absences.

    Touching periods are joined, across midnight too, so an interval may run past the
    end of `last` only as far as the days given contain work: ask for the day after as
    well to see work that goes on past midnight.
    """
    periods: list[Interval] = []
    day = first
    while day <= last:
        if day not in plan.days_off:
            weekday = day.weekday()
            wall = without_breaks(plan.weekly.get(weekday, ()), plan.breaks.get(weekday, ()))
            for start, end in wall:
                utc_start, utc_end = wall_to_utc(day, start, tz), wall_to_utc(day, end, tz)
                if utc_end > utc_start:  # a period wholly inside a DST gap is empty
                    periods.append((utc_start, utc_end))
        day += timedelta(days=1)
    return subtract(merge(periods), (a.interval(tz) for a in plan.absences))


def working_periods(
    weekly: WeeklyHours, days_off: set[date], first: date, last: date, tz: ZoneInfo
) -> list[Interval]:
    """Weekly hours without days off (no breaks, no absences): see `available`."""
    return available(Plan(weekly, days_off=frozenset(days_off)), first, last, tz)


def fits(start: datetime, end: datetime, periods: Sequence[Interval]) -> bool:
    """Whether [start, end) lies inside one working period."""
    return any(p_start <= start and end <= p_end for p_start, p_end in periods)


def booking_days(start: datetime, end: datetime, tz: ZoneInfo) -> tuple[date, date]:
    """The local days whose working time can hold [start, end): its first and its last
    (a period of the day before ends at midnight, at the latest)."""
    return local_day(start, tz), local_day(end, tz)


def bookable(plan: Plan, start: datetime, end: datetime, tz: ZoneInfo) -> bool:
    """The booking rule: [start, end) lies within one stretch of joined working time."""
    first, last = booking_days(start, end, tz)
    return fits(start, end, available(plan, first, last, tz))


def free_slots(
    plan: Plan,
    busy: Iterable[Interval],
    first: date,
    last: date,
    tz: ZoneInfo,
    not_before: datetime,
    duration: timedelta,
    limit: int,
) -> tuple[list[Interval], bool]:
    """Slots that start on `first`..`last` (local days), in the same joined working time
    as `bookable` (with the day after `last`, for slots that run past midnight)."""
    periods = available(plan, first, last + timedelta(days=1), tz)
    begin, stop = day_bounds(first, last, tz)
    windows = free_windows(periods, busy, max(not_before, begin))
    return slots(windows, duration, limit, starts_before=stop)


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
    windows: Sequence[Interval],
    duration: timedelta,
    limit: int,
    starts_before: datetime | None = None,
) -> tuple[list[Interval], bool]:
    """Back-to-back slots of `duration` in each window, starting on a 5-minute boundary
    (and before `starts_before`, if given).

    Returns the first `limit` slots and whether there were more.
    """
    found: list[Interval] = []
    for w_start, w_end in windows:
        start = _align_up(w_start)
        while start + duration <= w_end:
            if starts_before is not None and start >= starts_before:
                return found, False
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
