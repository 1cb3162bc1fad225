"""The front desk's and the physician's day, over the real bus, keyvault and database:
check-in, start, finish and no-show, each by its role, each an event and an audit entry;
today's list (clinic time) with every status, cancelled and no-show appointments kept
with their reasons; calendars keep cancelled appointments too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from contracts import scheduling as sched
from contracts.audit import AuditAction, AuditOutcome
from contracts.base import EventType
from mesh.errors import Conflict, Forbidden
from tests.scheduling.support import TZ, World, key, today, world
from tests.support.polling import until

S = sched.AppointmentStatus


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("schedday") as w:
        yield w


async def step(w: World, method: Any, appointment_id: str, who: Any) -> sched.Appointment:
    reply: sched.Appointment = await w.clinic.call(
        method, sched.AppointmentRequest(appointment_id=appointment_id), who, idempotency_key=key()
    )
    return reply


async def test_check_in_start_finish_and_no_show(w: World) -> None:
    doctor = await w.physician("dr-day")
    desk = await w.desk()
    visit, late, missed = [await w.seed_now(doctor) for _ in range(3)]

    arrived = await step(w, sched.CHECK_IN, visit, desk)
    assert arrived.status is S.arrived and arrived.arrived_at is not None
    started = await step(w, sched.START_VISIT, visit, doctor)
    assert started.status is S.in_progress and started.started_at is not None
    done = await step(w, sched.FINISH_VISIT, visit, doctor)
    assert done.status is S.completed and done.finished_at is not None
    with pytest.raises(Conflict, match="Cannot finish an appointment that is completed"):
        await step(w, sched.FINISH_VISIT, visit, doctor)
    with pytest.raises(Conflict, match="Cannot check in an appointment that is completed"):
        await step(w, sched.CHECK_IN, visit, desk)

    # A no-show, then the patient turns up after all: checked in, the no-show time gone.
    no_show = await step(w, sched.MARK_NO_SHOW, late, desk)
    assert no_show.status is S.no_show and no_show.finished_at is not None
    came = await step(w, sched.CHECK_IN, late, desk)
    assert came.status is S.arrived and came.finished_at is None
    with pytest.raises(Conflict, match="checked in"):
        await step(w, sched.MARK_NO_SHOW, late, desk)
    await step(w, sched.MARK_NO_SHOW, missed, desk)
    with pytest.raises(Conflict, match="a no-show"):
        await step(w, sched.START_VISIT, missed, doctor)

    # Who did what, from the reads: statuses and the times of each step.
    read = await w.clinic.call(
        sched.GET_APPOINTMENT, sched.AppointmentRequest(appointment_id=visit), doctor
    )
    assert read.status is S.completed
    assert read.arrived_at and read.started_at and read.finished_at
    assert read.arrived_at <= read.started_at <= read.finished_at

    # Events: every status change, ids and times only, by whom.
    expected: dict[str, list[EventType[Any]]] = {
        visit: [
            sched.APPOINTMENT_CHECKED_IN,
            sched.APPOINTMENT_STARTED,
            sched.APPOINTMENT_COMPLETED,
        ],
        late: [sched.APPOINTMENT_NO_SHOW, sched.APPOINTMENT_CHECKED_IN],
        missed: [sched.APPOINTMENT_NO_SHOW],
    }
    for appointment_id, kinds in expected.items():

        def of(a: str = appointment_id, n: int = len(kinds)) -> list[Any] | None:
            found = [e for e in w.events if getattr(e.payload, "appointment_id", None) == a]
            return found if len(found) == n else None

        mine: list[Any] = await until(of)
        assert [e.routing_key for e in mine] == [k.routing_key for k in kinds]
        for event, kind in zip(mine, kinds, strict=True):
            actor = (
                doctor if kind in (sched.APPOINTMENT_STARTED, sched.APPOINTMENT_COMPLETED) else desk
            )
            assert event.payload.by == actor.account_id
            assert event.principal is not None and event.principal.account_id == actor.account_id
            assert event.payload.physician_id == doctor.account_id
            assert "seeded" not in event.payload.model_dump_json()  # no reason for visit

    # Audit: each step, with its patient, as an update by the one who acted.
    steps = await until(
        lambda: (
            len(
                found := [
                    a
                    for a in w.audits
                    if a.entity_id == visit
                    and a.outcome is AuditOutcome.success
                    and a.type != "appointment.read"
                ]
            )
            >= 3
            and found
        )
    )
    assert {(a.type, a.agent.account_id) for a in steps} == {
        ("appointment.check_in", desk.account_id),
        ("appointment.start", doctor.account_id),
        ("appointment.finish", doctor.account_id),
    }
    assert all(a.action is AuditAction.update for a in steps)
    assert len({a.patient_id for a in steps}) == 1 and steps[0].patient_id is not None


async def test_today_shows_every_status_with_reasons(w: World) -> None:
    doctor, other = await w.physician("dr-today"), await w.physician("dr-today-other")
    desk = await w.desk()
    now_seen = await w.seed_now(doctor)
    gone = await w.seed(
        doctor,
        datetime.now(UTC).replace(second=0, microsecond=0),
        15,
        status="cancelled",
        reason="Blood test",
        cancel_reason="Patient has the flu",
    )
    missed = await w.seed_now(doctor)
    await step(w, sched.MARK_NO_SHOW, missed, desk)
    elsewhere = await w.seed_now(other)

    mine = await w.clinic.call(
        sched.TODAY, sched.TodayRequest(physician_id=doctor.account_id), desk
    )
    assert mine.day == today() and mine.time_zone == TZ.key
    assert mine.start.astimezone(TZ).hour == 0 and not mine.truncated
    by_id = {a.appointment_id: a for a in mine.appointments}
    assert set(by_id) == {now_seen, gone, missed}
    assert by_id[gone].status is S.cancelled
    assert (by_id[gone].reason, by_id[gone].cancellation_reason) == (
        "Blood test",
        "Patient has the flu",
    )
    assert by_id[missed].status is S.no_show and by_id[missed].reason == "seeded"
    starts = [a.start for a in mine.appointments]
    assert starts == sorted(starts)

    every = await w.clinic.call(sched.TODAY, sched.TodayRequest(), desk)
    assert {now_seen, gone, missed, elsewhere} <= {a.appointment_id for a in every.appointments}
    assert {a.physician_id for a in every.appointments} >= {doctor.account_id, other.account_id}

    # The physician's own day is their calendar: cancelled and no-shows stay in it.
    calendar = await w.clinic.call(
        sched.CALENDAR, sched.CalendarRequest(physician_id=doctor.account_id, day=today()), doctor
    )
    shown = {a.appointment_id: a for a in calendar.appointments}
    assert (
        shown[gone].status is S.cancelled
        and shown[gone].cancellation_reason == "Patient has the flu"
    )
    assert shown[missed].status is S.no_show
    without = await w.clinic.call(
        sched.CALENDAR,
        sched.CalendarRequest(physician_id=doctor.account_id, day=today(), include_cancelled=False),
        doctor,
    )
    assert gone not in {a.appointment_id for a in without.appointments}
    with pytest.raises(Forbidden):  # the day's list of every physician is the desk's
        await w.clinic.call(sched.TODAY, sched.TodayRequest(physician_id=doctor.account_id), doctor)

    # One read audit naming every patient shown, by the desk.
    reads = await until(
        lambda: [
            a
            for a in w.audits
            if a.type == "calendar.today"
            and a.agent.account_id == desk.account_id
            and a.entity_id == doctor.account_id
        ]
    )
    (read,) = reads
    assert read.action is AuditAction.read and read.patient_id is None
    assert set(read.patients) == {by_id[i].patient_id for i in (now_seen, gone, missed)}
