"""Booking against the real records service: a patient registered at the desk can be
booked; an id records does not know is refused with 422, as with the stand-in."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta

import pytest
import pytest_asyncio

from contracts import records as rec
from contracts import scheduling as sched
from mesh.errors import InvalidRequest
from tests.scheduling.support import World, at, key, today, world


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("schedrec", real_records=True) as w:
        yield w


async def test_book_a_patient_the_records_service_knows(w: World) -> None:
    desk = await w.desk()
    doctor = await w.physician("dr-records")
    written = await w.clinic.call(
        rec.CREATE_PATIENT,
        rec.CreatePatientRequest(
            demographics=rec.Demographics(
                given_name="Amara",
                family_name="Okafor",
                date_of_birth=date(1984, 5, 17),
                sex=rec.Sex.female,
            )
        ),
        desk,
        idempotency_key=key(),
    )
    day = today() + timedelta(days=2)

    async def book(patient_id: str) -> sched.Appointment:
        return await w.clinic.call(
            sched.BOOK,
            sched.BookRequest(
                patient_id=patient_id,
                physician_id=doctor.account_id,
                start=at(day, "10:00"),
                end=at(day, "10:30"),
                reason="Annual check-up",
            ),
            desk,
            idempotency_key=key(),
        )

    with pytest.raises(InvalidRequest, match="unknown patient"):
        await book(str(uuid.uuid4()))
    booked = await book(written.patient_id)
    calendar = await w.clinic.call(
        sched.CALENDAR, sched.CalendarRequest(physician_id=doctor.account_id, day=day), doctor
    )
    assert [(a.appointment_id, a.patient_id, a.reason) for a in calendar.appointments] == [
        (booked.appointment_id, written.patient_id, "Annual check-up")
    ]
