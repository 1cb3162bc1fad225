"""`medihaven schedule …`: working time (hours, breaks, days off, absences), calendars, the
day's list, free slots and appointments (book, move, cancel, check in, start, finish).

Every command is a signed request through the gateway as the registered staff member.
Times are shown in this machine's local time zone; a time typed without an offset is
read in it too (e.g. `--start "2030-01-07 09:00"`), so the clinic's desk types wall time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import typer
from pydantic import ValidationError

from cli import profile
from cli.output import api_errors
from cli.sdk import path
from contracts.scheduling import AbsenceKind, Weekday, WorkingPeriod, period_problems

app = typer.Typer(help="Calendars and appointments.", no_args_is_help=True)

F = TypeVar("F", bound=Callable[..., Any])
WEEKDAYS = list(Weekday)


def parse_time(value: str) -> datetime:
    """ISO 8601; without an offset, this machine's local time."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a time like 2030-01-07 09:00") from None
    return parsed if parsed.tzinfo else parsed.astimezone()


def parse_periods(specs: list[str], breaks: bool = False) -> list[dict[str, str]]:
    """`mon=08:00-12:00`, `mon-fri=08:00-17:00`, several periods per day: repeat the option."""
    periods: list[WorkingPeriod] = []
    for spec in specs:
        try:
            days, hours = spec.split("=")
            start, end = hours.split("-")
            first, _, last = days.partition("-")
            lo, hi = _weekday(first), _weekday(last or first)
        except ValueError:
            raise typer.BadParameter(f"{spec!r}: write it like mon-fri=08:00-17:00") from None
        for weekday in WEEKDAYS[lo : hi + 1]:
            try:
                period = WorkingPeriod(weekday=weekday, start=start, end=end)
            except ValidationError as exc:
                reasons = " ".join(dict.fromkeys(e["msg"] for e in exc.errors()))
                raise typer.BadParameter(f"{spec!r}: {reasons}") from None
            periods.append(period)
    _, problems = period_problems(periods, breaks)
    if problems:
        raise typer.BadParameter(" ".join(problems))
    return [p.model_dump(mode="json") for p in periods]


def _weekday(prefix: str) -> int:
    matches = [i for i, d in enumerate(WEEKDAYS) if d.value.startswith(prefix.lower())]
    if len(prefix) < 2 or len(matches) != 1:
        raise ValueError(prefix)
    return matches[0]


def local(value: str) -> str:
    return datetime.fromisoformat(value).astimezone().strftime("%a %Y-%m-%d %H:%M")


def show_appointment(a: dict[str, Any]) -> None:
    end = datetime.fromisoformat(a["end"]).astimezone().strftime("%H:%M")
    line = f"{local(a['start'])}-{end}  {a['status']:<11} patient {a['patient_id']}"
    if a.get("physician_id"):
        line += f"  with {a['physician_id']}"
    typer.echo(f"{line}  [{a['appointment_id']}]")
    if a.get("reason"):
        typer.echo(f"    reason: {a['reason']}")
    if a.get("cancellation_reason"):
        typer.echo(f"    cancelled: {a['cancellation_reason']}")


def show_availability(a: dict[str, Any]) -> None:
    typer.echo(f"working hours of {a['physician_id']} ({a['time_zone']}):")
    for p in a["weekly"]:
        typer.echo(f"  {p['weekday']:<10} {p['start']}-{p['end']}")
    for p in a.get("breaks", []):
        typer.echo(f"  break {p['weekday']:<10} {p['start']}-{p['end']}")
    if a["days_off"]:
        typer.echo("days off: " + ", ".join(a["days_off"]))
    for absence in a.get("absences", []):
        when = (
            f"{absence['first_day']} to {absence['last_day']}"
            if absence.get("first_day")
            else f"{local(absence['start'])} to {local(absence['end'])}"
        )
        typer.echo(f"absent ({absence['kind']}): {when}  [{absence['absence_id']}]")
    for slot in a.get("affected", []):
        typer.secho(
            f"  no longer within working hours: {local(slot['start'])} [{slot['appointment_id']}]",
            fg=typer.colors.YELLOW,
        )


def _physician(physician_id: str, route: str) -> str:
    """The path of one physician's `route` (working-hours, calendar, ...)."""
    return path("/api/v1/physicians/{physician_id}/" + route, physician_id=physician_id)


def _appointment(appointment_id: str, step: str = "") -> str:
    """The path of one appointment, or of one `step` of it (cancel, check-in, ...)."""
    return path(
        "/api/v1/appointments/{appointment_id}" + (f"/{step}" if step else ""),
        appointment_id=appointment_id,
    )


def show_appointments(appointments: list[dict[str, Any]]) -> None:
    for a in appointments:
        show_appointment(a)
    if not appointments:
        typer.echo("no appointments")


@app.command()
@api_errors
def hours(
    physician_id: str,
    period: list[str] = typer.Option(..., help="e.g. mon-fri=08:00-12:00 (repeatable)."),
) -> None:
    """Replace a physician's weekly working hours (in the clinic's time zone)."""
    body = {"weekly": parse_periods(period)}
    show_availability(profile.client().put(_physician(physician_id, "working-hours"), body))


@app.command()
@api_errors
def breaks(
    physician_id: str,
    period: list[str] = typer.Option([], help="e.g. mon-fri=12:30-13:30 (repeatable)."),
) -> None:
    """Replace a physician's weekly breaks (none: no breaks)."""
    body = {"breaks": parse_periods(period, breaks=True)}
    show_availability(profile.client().put(_physician(physician_id, "breaks"), body))


@app.command()
@api_errors
def absence(
    physician_id: str,
    first_day: str = typer.Option(None, "--from-day", help="First whole day, YYYY-MM-DD."),
    last_day: str = typer.Option(None, "--to-day", help="Last whole day (default: the first)."),
    start: str = typer.Option(None, help="Or from a time, e.g. '2030-01-07 13:00'."),
    end: str = typer.Option(None, help="... to a time."),
    kind: AbsenceKind = typer.Option(AbsenceKind.leave, help="What kind of absence."),
    remove: list[str] = typer.Option([], help="An absence id to remove (repeatable)."),
) -> None:
    """Add an absence (whole days or times) or remove absences."""
    add: list[dict[str, Any]] = []
    if first_day or last_day or start or end:
        entry: dict[str, Any] = {"kind": kind.value}
        if first_day or last_day:
            entry |= {"first_day": first_day, "last_day": last_day or first_day}
        if start or end:
            entry |= {
                "start": parse_time(start).isoformat() if start else None,
                "end": parse_time(end).isoformat() if end else None,
            }
        add.append(entry)
    show_availability(
        profile.client().post(
            _physician(physician_id, "absences"),
            {"add": add, "remove": remove},
        )
    )


@app.command("days-off")
@api_errors
def days_off(
    physician_id: str,
    add: list[str] = typer.Option([], help="A day off, YYYY-MM-DD (repeatable)."),
    remove: list[str] = typer.Option([], help="A day no longer off (repeatable)."),
) -> None:
    """Add or remove days off."""
    body = {"add": add, "remove": remove}
    show_availability(profile.client().post(_physician(physician_id, "days-off"), body))


@app.command()
@api_errors
def availability(physician_id: str) -> None:
    """A physician's working hours and days off."""
    show_availability(profile.client().get(_physician(physician_id, "availability")))


@app.command()
@api_errors
def calendar(
    physician_id: str,
    day: str = typer.Option(None, help="YYYY-MM-DD (default: today)."),
    week: bool = typer.Option(False, help="The whole week (Monday to Sunday)."),
    cancelled: bool = typer.Option(
        True, "--cancelled/--no-cancelled", help="Show cancelled appointments (with reasons)."
    ),
) -> None:
    """A physician's day or week, with reasons for visit."""
    shown = {} if cancelled else {"include_cancelled": "false"}
    reply = profile.client().get(
        _physician(physician_id, "calendar"),
        day=day or date.today().isoformat(),
        span="week" if week else "day",
        **shown,
    )
    typer.echo(f"{physician_id}: {reply['first_day']} to {reply['last_day']}")
    show_appointments(reply["appointments"])


@app.command()
@api_errors
def today(physician_id: str = typer.Argument(None, help="One physician (default: all).")) -> None:
    """Today's appointments in the clinic (receptionists), every status."""
    params = {"physician_id": physician_id} if physician_id else {}
    reply = profile.client().get("/api/v1/appointments/today", **params)
    typer.echo(f"{reply['day']} ({reply['time_zone']})")
    show_appointments(reply["appointments"])
    if reply["truncated"]:
        typer.echo("… (more: name one physician)")


@app.command()
@api_errors
def slots(
    physician_id: str,
    first_day: str = typer.Option(None, "--from", help="YYYY-MM-DD (default: today)."),
    last_day: str = typer.Option(None, "--to", help="YYYY-MM-DD (default: a week on)."),
    minutes: int = typer.Option(30, help="Length of the appointment."),
) -> None:
    """Free slots of a physician."""
    first = first_day or date.today().isoformat()
    last = last_day or (date.fromisoformat(first) + timedelta(days=6)).isoformat()
    reply = profile.client().get(
        _physician(physician_id, "free-slots"),
        first_day=first,
        last_day=last,
        duration_minutes=minutes,
    )
    for slot in reply["slots"]:
        typer.echo(local(slot["start"]))
    if reply["truncated"]:
        typer.echo("… (more: narrow the dates)")


@app.command()
@api_errors
def book(
    patient: str = typer.Option(..., help="Patient id."),
    physician: str = typer.Option(..., help="Physician's account id."),
    start: str = typer.Option(..., help="e.g. '2030-01-07 09:00' (local time)."),
    minutes: int = typer.Option(30, help="Length in minutes."),
    reason: str = typer.Option(..., help="Reason for visit (stored encrypted)."),
) -> None:
    """Book an appointment (receptionists)."""
    begin = parse_time(start)
    body = {
        "patient_id": patient,
        "physician_id": physician,
        "start": begin.isoformat(),
        "end": (begin + timedelta(minutes=minutes)).isoformat(),
        "reason": reason,
    }
    show_appointment(profile.client().post("/api/v1/appointments", body))


@app.command()
@api_errors
def show(appointment_id: str) -> None:
    """One appointment, with its reason for visit."""
    show_appointment(profile.client().get(_appointment(appointment_id)))


@app.command()
@api_errors
def reschedule(
    appointment_id: str,
    start: str = typer.Option(..., help="New start, e.g. '2030-01-07 10:00' (local time)."),
    minutes: int = typer.Option(None, help="New length (default: as it was)."),
) -> None:
    """Move an appointment (receptionists)."""
    api = profile.client()
    if minutes is None:
        current = api.get(_appointment(appointment_id))
        length = datetime.fromisoformat(current["end"]) - datetime.fromisoformat(current["start"])
    else:
        length = timedelta(minutes=minutes)
    begin = parse_time(start)
    body = {"start": begin.isoformat(), "end": (begin + length).isoformat()}
    show_appointment(
        api.post(
            _appointment(appointment_id, "reschedule"),
            body,
        )
    )


@app.command()
@api_errors
def cancel(
    appointment_id: str, reason: str = typer.Option(..., help="Why (stored encrypted).")
) -> None:
    """Cancel an appointment (receptionists)."""
    target = _appointment(appointment_id, "cancel")
    show_appointment(profile.client().post(target, {"reason": reason}))


def _step(appointment_id: str, step: str) -> None:
    show_appointment(profile.client().post(_appointment(appointment_id, step), {}))


@app.command("check-in")
@api_errors
def check_in(appointment_id: str) -> None:
    """The patient has arrived (receptionists, on the appointment's day)."""
    _step(appointment_id, "check-in")


@app.command("no-show")
@api_errors
def no_show(appointment_id: str) -> None:
    """The patient did not come (receptionists, once the appointment's time has come)."""
    _step(appointment_id, "no-show")


@app.command()
@api_errors
def start(appointment_id: str) -> None:
    """Start the visit (the appointment's physician)."""
    _step(appointment_id, "start")


@app.command()
@api_errors
def finish(appointment_id: str) -> None:
    """Finish the visit in progress: it is then completed (the appointment's physician)."""
    _step(appointment_id, "finish")
