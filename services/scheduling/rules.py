"""Business rules on times, each refusal a 422 naming the field and saying why in words.

The contract has already checked types and formats; these rules need the clock or
combine fields. Details have the shape of the runtime's own validation errors
(`loc`, `msg`, `type`), so clients handle both alike. Every message is a sentence a
clinic worker understands, with times in the clinic's zone ("10:00-10:30 on Thu 3 Dec").
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from contracts import scheduling as sched
from mesh import parallel
from mesh.errors import InvalidRequest, RpcError, Unauthenticated
from services.scheduling import timeplan

DASH = sched.DASH
LONGEST = timedelta(minutes=sched.MAX_APPOINTMENT_MINUTES)
HORIZON = timedelta(days=sched.MAX_BOOKING_DAYS_AHEAD)
LONGEST_ABSENCE = timedelta(days=sched.MAX_ABSENCE_DAYS)


def problem(loc: str | Sequence[str | int], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": [loc] if isinstance(loc, str) else list(loc), "msg": msg, "type": kind}


def refuse(problems: Sequence[dict[str, Any]]) -> RpcError:
    return InvalidRequest(" ".join(p["msg"] for p in problems), details=list(problems))


# ---------------------------------------------------------------- times in words


def wall_time(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def day_text(day: date, today: date | None = None) -> str:
    """ "Thu 3 Dec" (with the year when it is not this year's)."""
    text = f"{day.strftime('%a')} {day.day} {day.strftime('%b')}"
    return text if today is not None and day.year == today.year else f"{text} {day.year}"


def _clock(instant: datetime, tz: ZoneInfo) -> str:
    return instant.astimezone(tz).strftime("%H:%M")


def span_text(start: datetime, end: datetime, tz: ZoneInfo, today: date | None = None) -> str:
    """ "10:00-10:30 on Thu 3 Dec", or "23:30 on Sat 5 Dec to 00:05 on Sun 6 Dec"."""
    first, last = timeplan.local_day(start, tz), timeplan.local_day(end, tz)
    if first == last or end == timeplan.wall_to_utc(first + timedelta(days=1), 0, tz):
        end_clock = "24:00" if first != last else _clock(end, tz)
        return f"{_clock(start, tz)}{DASH}{end_clock} on {day_text(first, today)}"
    return (
        f"{_clock(start, tz)} on {day_text(first, today)} to "
        f"{_clock(end, tz)} on {day_text(last, today)}"
    )


def range_text(start: datetime, end: datetime, tz: ZoneInfo, today: date | None = None) -> str:
    """ "from 14:00 to 18:00 on Tue 15 Dec", or "from 23:30 on Sat 5 Dec to 00:05 on Sun 6 Dec"."""
    first, last = timeplan.local_day(start, tz), timeplan.local_day(end, tz)
    if first == last:
        return f"from {_clock(start, tz)} to {_clock(end, tz)} on {day_text(first, today)}"
    return (
        f"from {_clock(start, tz)} on {day_text(first, today)} to "
        f"{_clock(end, tz)} on {day_text(last, today)}"
    )


def clock_span(start: datetime, end: datetime, tz: ZoneInfo) -> str:
    """ "10:00-10:30" (times only: the day is said elsewhere)."""
    return f"{_clock(start, tz)}{DASH}{_clock(end, tz)}"


def days_text(first: date, last: date, today: date | None = None) -> str:
    if first == last:
        return f"on {day_text(first, today)}"
    return f"from {day_text(first, today)} to {day_text(last, today)}"


# ---------------------------------------------------------------- checks


def check_times(start: datetime, end: datetime, now: datetime) -> None:
    """Whole minutes, end after start, a sane length, not in the past, not too far ahead."""
    problems = []
    for loc, value in (("start", start), ("end", end)):
        if value.second or value.microsecond:
            problems.append(
                problem(loc, f"The {loc} must be a whole minute (no seconds).", "whole_minute")
            )
    length = end - start
    if end <= start:
        problems.append(problem("end", "The end must be after the start.", "end_before_start"))
    elif not (timedelta(minutes=sched.MIN_APPOINTMENT_MINUTES) <= length <= LONGEST):
        problems.append(
            problem(
                "end",
                f"An appointment lasts {sched.MIN_APPOINTMENT_MINUTES} minutes to "
                f"{sched.MAX_APPOINTMENT_MINUTES // 60} hours.",
                "length",
            )
        )
    if start < now:
        problems.append(problem("start", "The start is in the past.", "past"))
    elif start > now + HORIZON:
        problems.append(
            problem(
                "start",
                f"Appointments are booked at most {sched.MAX_BOOKING_DAYS_AHEAD} days ahead.",
                "too_far_ahead",
            )
        )
    if problems:
        raise refuse(problems)


def weekly_periods(weekly: Iterable[sched.WorkingPeriod]) -> list[tuple[int, int, int]]:
    """(weekday, start minute, end minute), sorted (the contract has refused inverted and
    overlapping periods)."""
    return sorted(
        (p.weekday.number, sched.wall_minutes(p.start), sched.wall_minutes(p.end)) for p in weekly
    )


def check_days_off(add: Iterable[date], today: date) -> None:
    problems = []
    for day in sorted(set(add)):
        if day < today:
            problems.append(problem("add", f"{day_text(day)} is in the past.", "past"))
        elif day > today + HORIZON:
            problems.append(
                problem(
                    "add",
                    f"{day_text(day)} is too far ahead (at most "
                    f"{sched.MAX_BOOKING_DAYS_AHEAD} days).",
                    "too_far_ahead",
                )
            )
    if problems:
        raise refuse(problems)


def absence_span(absence: sched.NewAbsence) -> timeplan.AbsenceSpan:
    if absence.first_day is not None:
        return timeplan.AbsenceSpan(
            first_day=absence.first_day,
            last_day=absence.last_day or absence.first_day,
            kind=absence.kind.value,
        )
    return timeplan.AbsenceSpan(start=absence.start, end=absence.end, kind=absence.kind.value)


def check_absences(
    added: Sequence[sched.NewAbsence], now: datetime, tz: ZoneInfo
) -> list[timeplan.AbsenceSpan]:
    """Not over already, starting within the booking horizon, at most a year long; whole
    days are judged as days (no instant is made of a day beyond the calendar's end)."""
    today = timeplan.local_day(now, tz)
    problems, spans = [], []
    for index, absence in enumerate(added):
        span = absence_span(absence)
        loc = ("add", index)
        if span.first_day is not None and span.last_day is not None:
            over = span.last_day < today
            ahead = span.first_day > today + HORIZON
            too_long = (span.last_day - span.first_day).days >= sched.MAX_ABSENCE_DAYS
            odd_minute = False
        else:
            assert span.start is not None and span.end is not None
            over = span.end <= now
            ahead = span.start > now + HORIZON
            too_long = span.end - span.start > LONGEST_ABSENCE
            odd_minute = any(t.second or t.microsecond for t in (span.start, span.end))
        if over:
            problems.append(problem(loc, "The absence is over already.", "past"))
        elif ahead:
            problems.append(
                problem(
                    loc,
                    f"An absence starts at most {sched.MAX_BOOKING_DAYS_AHEAD} days ahead.",
                    "too_far_ahead",
                )
            )
        elif too_long:
            problems.append(
                problem(loc, f"An absence lasts {sched.MAX_ABSENCE_DAYS} days at most.", "too_long")
            )
        elif odd_minute:
            problems.append(
                problem(loc, "An absence starts and ends on a whole minute.", "whole_minute")
            )
        spans.append(span)
    if problems:
        raise refuse(problems)
    return spans


def require_available(
    start: datetime,
    end: datetime,
    plan: timeplan.Plan,
    tz: ZoneInfo,
    who: str,
    today: date | None = None,
) -> None:
    """[start, end) within one stretch of the physician's joined working time (the same
    rule as the slot finder's), else a 422 saying why, in the clinic's time."""
    if timeplan.bookable(plan, start, end, tz):
        return
    why = unavailable_text(start, end, plan, tz, who, today)
    raise refuse([problem("start", why, "outside_availability")])


AWAY = {"holiday": "on holiday", "leave": "on leave", "training": "away for training"}


def unavailable_text(
    start: datetime,
    end: datetime,
    plan: timeplan.Plan,
    tz: ZoneInfo,
    who: str,
    today: date | None = None,
) -> str:
    """Why [start, end) cannot be booked: the first reason that applies."""
    first, last = timeplan.booking_days(start, end, tz)
    if end == timeplan.wall_to_utc(last, 0, tz) and last > first:
        last -= timedelta(days=1)  # ends at midnight: the next day plays no part
    wanted = span_text(start, end, tz, today)
    day = first
    while day <= last:
        if day in plan.days_off:
            return f"{who} is off on {day_text(day, today)}."
        day += timedelta(days=1)
    for span in plan.absences:
        a_start, a_end = span.interval(tz)
        if a_start < end and start < a_end:
            away = AWAY.get(span.kind, "away")
            when = (
                days_text(span.first_day, span.last_day, today)
                if span.first_day is not None and span.last_day is not None
                else range_text(a_start, a_end, tz, today)
            )
            return f"{who} is {away} {when}."
    day = first
    while day <= last:
        weekday = day.weekday()
        for b_start, b_end in plan.breaks.get(weekday, ()):
            s, e = timeplan.wall_to_utc(day, b_start, tz), timeplan.wall_to_utc(day, b_end, tz)
            if (
                s < end
                and start < e
                and any(
                    h_start < b_end and b_start < h_end
                    for h_start, h_end in plan.weekly.get(weekday, ())
                )
            ):
                asked = clock_span(start, end, tz) if first == last else wanted
                return (
                    f"{who} has a break {wall_time(b_start)}{DASH}{wall_time(b_end)} on "
                    f"{day_text(day, today)}; {asked} runs into it."
                )
        day += timedelta(days=1)
    if not any(plan.weekly.values()):
        return f"{who} has no working hours yet."
    if first == last and not plan.weekly.get(first.weekday()):
        return f"{who} has no working hours on {first.strftime('%A')}s."
    parts = []
    day = first
    while day <= last:
        hours = timeplan.without_breaks(
            plan.weekly.get(day.weekday(), ()), plan.breaks.get(day.weekday(), ())
        )
        said = " and ".join(f"{wall_time(s)}{DASH}{wall_time(e)}" for s, e in hours)
        parts.append(
            f"{said} on {day_text(day, today)}" if hours else f"none on {day_text(day, today)}"
        )
        day += timedelta(days=1)
    return f"{wanted} is outside {who}'s working hours ({', '.join(parts)})."


def conflict_text(
    who: str, start: datetime, end: datetime, tz: ZoneInfo, today: date | None = None
) -> str:
    return f"{who} already has {span_text(start, end, tz, today)}."


async def concurrently(*checks: Awaitable[Any]) -> list[Any]:
    """Run independent checks (and the encryption) at once; the results, in order.

    A refused signature wins over everything; several 422s become one that lists them all.
    """
    results = await parallel.settle(*checks)
    errors = [r for r in results if isinstance(r, BaseException)]
    if not errors:
        return results
    for error in errors:
        if isinstance(error, Unauthenticated):
            raise error
    invalid = [e for e in errors if isinstance(e, InvalidRequest)]
    if len(invalid) == len(errors):
        problems: list[dict[str, Any]] = []
        for error in invalid:
            problems += _problems(error)
        raise refuse(problems)
    raise next(e for e in errors if not isinstance(e, InvalidRequest))


def _problems(error: RpcError) -> list[dict[str, Any]]:
    if isinstance(error.details, list):
        return [d for d in error.details if isinstance(d, dict)]
    return [{"loc": [], "msg": error.message, "type": "invalid"}]


def weekly_view(weekly: Mapping[int, Sequence[tuple[int, int]]]) -> list[sched.WorkingPeriod]:
    days = list(sched.Weekday)
    return [
        sched.WorkingPeriod(weekday=days[day], start=wall_time(start), end=wall_time(end))
        for day in sorted(weekly)
        for start, end in weekly[day]
    ]
