"""`medihaven attendance …`: who is on duty, and checking staff in and out by hand.

Administrators check a physician or receptionist in or out when the time clock cannot
(`--reason` is required and goes into the audit log); everyone sees their own state.
"""

from __future__ import annotations

from typing import Any

import typer

from cli import profile
from cli.output import api_errors
from cli.sdk import path

app = typer.Typer(help="Attendance: who is on duty (patient data needs it).", no_args_is_help=True)


def _line(status: dict[str, Any]) -> str:
    if status["on_duty"]:
        where = f" at {status['place']}" if status.get("place") else ""
        return f"on duty since {status['since']}{where} (until {status['until']} at the latest)"
    if status.get("checked_out_at"):
        return f"off duty (checked out at {status['checked_out_at']})"
    if status.get("source") == "shift_limit":
        return f"off duty (the shift from {status['since']} ended by itself)"
    return "off duty (no check-in)"


def _check(kind: str, account_id: str, reason: str, place: str) -> None:
    status = profile.client().post(
        path("/api/v1/staff/{account_id}/" + kind, account_id=account_id),
        {"reason": reason, "place": place},
    )
    typer.echo(f"{account_id}: {_line(status)}")


@app.command("check-in")
@api_errors
def check_in(
    account_id: str,
    reason: str = typer.Option(..., help="Why by hand (audited), e.g. 'time clock broken'."),
    place: str = typer.Option("", help="Where."),
) -> None:
    """Check a physician or receptionist in (administrators): patient data opens at once."""
    _check("check-in", account_id, reason, place)


@app.command("check-out")
@api_errors
def check_out(
    account_id: str,
    reason: str = typer.Option(..., help="Why by hand (audited)."),
    place: str = typer.Option("", help="Where."),
) -> None:
    """Check a staff member out (administrators): patient data closes at once."""
    _check("check-out", account_id, reason, place)


@app.command("list")
@api_errors
def list_duty() -> None:
    """Every physician and receptionist, on duty or not (administrators)."""
    page = profile.client().get("/api/v1/attendance")
    if not page["required"]:
        typer.secho("attendance is not required here (MEDIHAVEN_ATTENDANCE_REQUIRED)", fg="yellow")
    for status in page["staff"]:
        typer.echo(f"{status['account_id']}  {_line(status)}")


@app.command("status")
@api_errors
def status() -> None:
    """Whether you are on duty."""
    typer.echo(_line(profile.client().get("/api/v1/me/attendance")))
