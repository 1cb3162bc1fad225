"""`medihaven schedule …`: what each command sends to the gateway, and what it prints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from cli import profile
from cli import scheduling as cli
from cli.sdk import ApiError

APPOINTMENT = {
    "appointment_id": "a1",
    "patient_id": "p1",
    "physician_id": "dr1",
    "start": "2030-01-07T08:00:00Z",
    "end": "2030-01-07T08:30:00Z",
    "status": "booked",
    "reason": "Sore throat",
    "cancellation_reason": None,
}
TODAY = {
    "day": "2030-01-07",
    "time_zone": "Europe/Berlin",
    "appointments": [APPOINTMENT],
    "truncated": False,
}
AVAILABILITY = {
    "physician_id": "dr1",
    "time_zone": "Europe/Berlin",
    "weekly": [{"weekday": "monday", "start": "08:00", "end": "12:00"}],
    "days_off": ["2030-01-08"],
    "affected": [],
}


class FakeClient:
    def __init__(self, answer: Any = None, error: ApiError | None = None) -> None:
        self.sent: list[tuple[str, str, Any]] = []
        self.answer, self.error = answer, error

    def _send(self, verb: str, path: str, body: Any) -> Any:
        self.sent.append((verb, path, body))
        if self.error is not None:
            raise self.error
        return self.answer

    def get(self, path: str, **params: Any) -> Any:
        return self._send("GET", path, params)

    def post(self, path: str, body: Any = None) -> Any:
        return self._send("POST", path, body)

    def put(self, path: str, body: Any = None) -> Any:
        return self._send("PUT", path, body)


def run(monkeypatch: pytest.MonkeyPatch, fake: FakeClient, *args: str) -> Any:
    monkeypatch.setattr(profile, "client", lambda: fake)
    return CliRunner().invoke(cli.app, list(args))


def test_hours_expand_weekday_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeClient(AVAILABILITY)
    result = run(
        monkeypatch,
        fake,
        "hours",
        "dr1",
        "--period",
        "mon-wed=08:00-12:00",
        "--period",
        "fr=13:00-24:00",
    )
    assert result.exit_code == 0, result.output
    ((verb, path, body),) = fake.sent
    assert (verb, path) == ("PUT", "/api/v1/physicians/dr1/working-hours")
    assert [(p["weekday"], p["start"], p["end"]) for p in body["weekly"]] == [
        ("monday", "08:00", "12:00"),
        ("tuesday", "08:00", "12:00"),
        ("wednesday", "08:00", "12:00"),
        ("friday", "13:00", "24:00"),
    ]
    assert "monday" in result.output and "2030-01-08" in result.output


@pytest.mark.parametrize(
    "specs",
    [
        ["t=08:00-12:00"],
        ["mon=8-12"],
        ["mon=12:00-08:00"],
        ["monday"],
        ["mon=08:00-12:00", "mon=11:00-13:00"],
    ],
)
def test_bad_hours_are_refused_before_sending(
    monkeypatch: pytest.MonkeyPatch, specs: list[str]
) -> None:
    fake = FakeClient(AVAILABILITY)
    result = run(monkeypatch, fake, "hours", "dr1", *(a for s in specs for a in ("--period", s)))
    assert result.exit_code == 2 and fake.sent == []


def test_inverted_hours_on_five_days_are_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeClient(AVAILABILITY)
    result = run(monkeypatch, fake, "hours", "dr1", "--period", "mon-fri=12:00-08:00")
    assert result.exit_code == 2 and fake.sent == []
    text = " ".join(result.output.replace("│", " ").split())
    assert text.count("end before they start") == 1
    assert "Monday to Friday" in text


def test_book_sends_the_local_time_with_its_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeClient(APPOINTMENT)
    result = run(
        monkeypatch,
        fake,
        "book",
        "--patient",
        "p1",
        "--physician",
        "dr1",
        "--start",
        "2030-01-07T09:00+01:00",
        "--minutes",
        "20",
        "--reason",
        "Sore throat",
    )
    assert result.exit_code == 0, result.output
    ((verb, path, body),) = fake.sent
    assert (verb, path) == ("POST", "/api/v1/appointments")
    start, end = datetime.fromisoformat(body["start"]), datetime.fromisoformat(body["end"])
    assert start == datetime(2030, 1, 7, 8, tzinfo=UTC) and (end - start).seconds == 1200
    assert "[a1]" in result.output and "Sore throat" in result.output
    naive = run(
        monkeypatch,
        fake,
        "book",
        "--patient",
        "p1",
        "--physician",
        "dr1",
        "--start",
        "2030-01-07 09:00",
        "--reason",
        "x",
    )
    assert naive.exit_code == 0
    assert datetime.fromisoformat(fake.sent[-1][2]["start"]).tzinfo is not None


def test_commands_map_to_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    calendar = {"first_day": "2030-01-07", "last_day": "2030-01-13", "appointments": [APPOINTMENT]}
    slots = {"slots": [{"start": "2030-01-07T09:00:00Z", "end": "x"}], "truncated": False}
    cases: list[tuple[list[str], Any, tuple[str, str]]] = [
        (
            ["calendar", "dr1", "--day", "2030-01-09", "--week"],
            calendar,
            ("GET", "/api/v1/physicians/dr1/calendar"),
        ),
        (
            ["slots", "dr1", "--from", "2030-01-07"],
            slots,
            ("GET", "/api/v1/physicians/dr1/free-slots"),
        ),
        (["availability", "dr1"], AVAILABILITY, ("GET", "/api/v1/physicians/dr1/availability")),
        (
            ["days-off", "dr1", "--add", "2030-01-08"],
            AVAILABILITY,
            ("POST", "/api/v1/physicians/dr1/days-off"),
        ),
        (["show", "a1"], APPOINTMENT, ("GET", "/api/v1/appointments/a1")),
        (
            ["reschedule", "a1", "--start", "2030-01-07T10:00Z", "--minutes", "30"],
            APPOINTMENT,
            ("POST", "/api/v1/appointments/a1/reschedule"),
        ),
        (
            ["cancel", "a1", "--reason", "ill"],
            APPOINTMENT,
            ("POST", "/api/v1/appointments/a1/cancel"),
        ),
        *(
            ([step, "a1"], APPOINTMENT, ("POST", f"/api/v1/appointments/a1/{step}"))
            for step in ("check-in", "no-show", "start", "finish")
        ),
        (
            ["breaks", "dr1", "--period", "mon-fri=12:30-13:30"],
            AVAILABILITY,
            ("PUT", "/api/v1/physicians/dr1/breaks"),
        ),
        (
            ["absence", "dr1", "--from-day", "2030-12-24", "--to-day", "2030-12-26"],
            AVAILABILITY,
            ("POST", "/api/v1/physicians/dr1/absences"),
        ),
        (["today"], TODAY, ("GET", "/api/v1/appointments/today")),
    ]
    for args, answer, (verb, path) in cases:
        fake = FakeClient(answer)
        result = run(monkeypatch, fake, *args)
        assert result.exit_code == 0, (args, result.output)
        assert fake.sent[-1][:2] == (verb, path), args
    absence = FakeClient(AVAILABILITY)
    run(
        monkeypatch,
        absence,
        "absence",
        "dr1",
        "--start",
        "2030-01-07T13:00Z",
        "--end",
        "2030-01-07T17:00Z",
        "--kind",
        "training",
    )
    ((_, _, sent),) = absence.sent
    assert sent == {
        "add": [
            {
                "kind": "training",
                "start": "2030-01-07T13:00:00+00:00",
                "end": "2030-01-07T17:00:00+00:00",
            }
        ],
        "remove": [],
    }
    week = FakeClient(calendar)
    run(monkeypatch, week, "calendar", "dr1", "--day", "2030-01-09", "--week")
    assert week.sent[0][2]["span"] == "week" and week.sent[0][2]["day"] == "2030-01-09"
    slot_query = FakeClient(slots)
    run(monkeypatch, slot_query, "slots", "dr1", "--from", "2030-01-07")
    assert slot_query.sent[0][2]["last_day"] == "2030-01-13"


def test_gateway_refusals_are_one_readable_line(monkeypatch: pytest.MonkeyPatch) -> None:
    conflict = ApiError(409, "conflict", "the physician already has an appointment", {"a": 1})
    result = run(monkeypatch, FakeClient(error=conflict), "cancel", "a1", "--reason", "x")
    assert result.exit_code == 1
    assert "error 409 (conflict)" in result.output
