"""Business rules on times, each refusal a 422 naming the field and the reason.

The contract has already checked types and formats; these rules need the clock or
combine fields. Details have the shape of the runtime's own validation errors
(`loc`, `msg`, `type`), so clients handle both alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from contracts import scheduling as sched
from mesh.errors import InvalidRequest, RpcError, Unauthenticated
from services.scheduling import timeplan

LONGEST = timedelta(minutes=sched.MAX_APPOINTMENT_MINUTES)
HORIZON = timedelta(days=sched.MAX_BOOKING_DAYS_AHEAD)


def problem(loc: str, msg: str, kind: str) -> dict[str, Any]:
    return {"loc": [loc], "msg": msg, "type": kind}


def refuse(problems: Sequence[dict[str, Any]]) -> RpcError:
    return InvalidRequest("; ".join(p["msg"] for p in problems), details=list(problems))


def check_times(start: datetime, end: datetime, now: datetime) -> None:
    """Whole minutes, end after start, a sane length, not in the past, not too far ahead."""
    problems = []
    for loc, value in (("start", start), ("end", end)):
        if value.second or value.microsecond:
            problems.append(problem(loc, f"{loc} must be a whole minute", "whole_minute"))
    length = end - start
    if end <= start:
        problems.append(problem("end", "end must be after start", "end_before_start"))
    elif not (timedelta(minutes=sched.MIN_APPOINTMENT_MINUTES) <= length <= LONGEST):
        problems.append(
            problem(
                "end",
                f"an appointment lasts {sched.MIN_APPOINTMENT_MINUTES} to "
                f"{sched.MAX_APPOINTMENT_MINUTES} minutes",
                "length",
            )
        )
    if start < now:
        problems.append(problem("start", "start is in the past", "past"))
    elif start > now + HORIZON:
        problems.append(
            problem(
                "start",
                f"start is more than {sched.MAX_BOOKING_DAYS_AHEAD} days ahead",
                "too_far_ahead",
            )
        )
    if problems:
        raise refuse(problems)


def weekly_periods(weekly: Iterable[sched.WorkingPeriod]) -> list[tuple[int, int, int]]:
    """(weekday, start minute, end minute), sorted; overlapping periods are refused."""
    periods = sorted(
        (p.weekday.number, sched.wall_minutes(p.start), sched.wall_minutes(p.end)) for p in weekly
    )
    problems = []
    for (day, start, _), (prev_day, _, prev_end) in zip(periods[1:], periods, strict=False):
        if day == prev_day and start < prev_end:
            name = list(sched.Weekday)[day].value
            problems.append(
                problem("weekly", f"working periods on {name} overlap", "overlapping_periods")
            )
    if problems:
        raise refuse(problems)
    return periods


def check_days_off(add: Iterable[date], today: date) -> None:
    problems = []
    for day in add:
        if day < today:
            problems.append(problem("add", f"{day} is in the past", "past"))
        elif day > today + HORIZON:
            problems.append(problem("add", f"{day} is too far ahead", "too_far_ahead"))
    if problems:
        raise refuse(problems)


def wall_time(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def require_available(
    start: datetime,
    end: datetime,
    weekly: timeplan.WeeklyHours,
    days_off: set[date],
    tz: ZoneInfo,
) -> None:
    """[start, end) within one working period of its (local) day, else a 422 saying why."""
    day = timeplan.local_day(start, tz)
    periods = timeplan.working_periods(weekly, days_off, day, day, tz)
    if timeplan.fits(start, end, periods):
        return
    name = day.strftime("%A")
    if day in days_off:
        msg = f"the physician is off on {name} {day}"
    elif not weekly.get(day.weekday()):
        msg = f"the physician does not work on {name}s"
    else:
        hours = ", ".join(f"{wall_time(s)}-{wall_time(e)}" for s, e in weekly[day.weekday()])
        msg = f"outside the physician's working hours on {name} {day} ({hours} {tz.key})"
    raise refuse([problem("start", msg, "outside_availability")])


async def concurrently(*checks: Awaitable[Any]) -> list[Any]:
    """Run independent checks (and the encryption) at once; the results, in order.

    A refused signature wins over everything; several 422s become one that lists them all.
    """
    results = await asyncio.gather(*checks, return_exceptions=True)
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
