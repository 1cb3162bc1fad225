"""`scheduling.care_relationship`: the appointment window records and the keyvault use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest_asyncio

from contracts import scheduling as sched
from tests.scheduling.support import World, world


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("schedcare") as w:
        yield w


async def related(w: World, doctor: str, patient: str, before: float, after: float) -> bool:
    reply = await w.clinic.client.rpc.call(
        sched.CARE_RELATIONSHIP,
        sched.CareRelationshipRequest(
            physician_id=doctor, patient_id=patient, before_days=before, after_days=after
        ),
    )
    return reply.exists


async def test_the_window_opens_before_and_closes_after_the_appointment(w: World) -> None:
    doctor = await w.physician("dr-window")
    start = (datetime.now(UTC) + timedelta(days=2)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    booked = await w.book(doctor, start)
    patient = booked.patient_id
    assert not await related(w, doctor.account_id, patient, before=1, after=30)  # too early
    assert await related(w, doctor.account_id, patient, before=3, after=30)
    assert not await related(w, "someone-else", patient, before=3, after=30)
    await w.clinic.call(
        sched.CANCEL,
        sched.CancelRequest(appointment_id=booked.appointment_id, reason="patient called"),
        await w.desk(),
        idempotency_key=f"cancel-{booked.appointment_id}",
    )
    assert not await related(w, doctor.account_id, patient, before=3, after=30)


async def test_after_the_window_access_ends(w: World) -> None:
    doctor = await w.physician("dr-after")
    appointment_id = await w.seed_past(doctor)  # started an hour ago
    appointment = await w.clinic.call(
        sched.GET_APPOINTMENT,
        sched.AppointmentRequest(appointment_id=appointment_id),
        await w.desk(),
    )
    patient = appointment.patient_id
    assert await related(w, doctor.account_id, patient, before=7, after=1)
    assert not await related(w, doctor.account_id, patient, before=7, after=0.01)  # 14 min
