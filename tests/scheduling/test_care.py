"""`scheduling.care_relationship`: the appointment window records and the keyvault use.

Only records may ask it (its callers in the contract): the tests ask as records' broker
identity, and check that anyone else (the gateway) is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from contracts import records as rec
from contracts import scheduling as sched
from mesh.errors import Forbidden
from mesh.runtime import Runtime
from tests.scheduling.support import World, world


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("schedcare") as w:
        yield w


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def records(w: World) -> AsyncIterator[Runtime]:
    """A caller on the bus as the records service (its broker identity)."""
    caller = await Runtime.start(
        "schedcare-records", w.clinic.settings, use_database=False, identity=rec.SERVICE
    )
    try:
        yield caller
    finally:
        await caller.stop()


def request(
    doctor: str, patient: str, before: float, after: float
) -> sched.CareRelationshipRequest:
    return sched.CareRelationshipRequest(
        physician_id=doctor, patient_id=patient, before_days=before, after_days=after
    )


async def related(records: Runtime, doctor: str, patient: str, before: float, after: float) -> bool:
    """Asked as the records service does."""
    reply = await records.rpc.call(sched.CARE_RELATIONSHIP, request(doctor, patient, before, after))
    return reply.exists


async def test_only_records_may_ask(w: World) -> None:
    with pytest.raises(Forbidden, match="may not call"):
        await w.clinic.client.rpc.call(
            sched.CARE_RELATIONSHIP, request("acc-someone", "pat-someone", 1, 1)
        )


async def test_the_window_opens_before_and_closes_after_the_appointment(
    w: World, records: Runtime
) -> None:
    doctor = await w.physician("dr-window")
    start = (datetime.now(UTC) + timedelta(days=2)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    booked = await w.book(doctor, start)
    patient = booked.patient_id
    assert not await related(records, doctor.account_id, patient, before=1, after=30)  # too early
    assert await related(records, doctor.account_id, patient, before=3, after=30)
    assert not await related(records, "someone-else", patient, before=3, after=30)
    await w.clinic.call(
        sched.CANCEL,
        sched.CancelRequest(appointment_id=booked.appointment_id, reason="patient called"),
        await w.desk(),
        idempotency_key=f"cancel-{booked.appointment_id}",
    )
    assert not await related(records, doctor.account_id, patient, before=3, after=30)


async def test_after_the_window_access_ends(w: World, records: Runtime) -> None:
    doctor = await w.physician("dr-after")
    appointment_id = await w.seed_past(doctor)  # started an hour ago
    appointment = await w.clinic.call(
        sched.GET_APPOINTMENT,
        sched.AppointmentRequest(appointment_id=appointment_id),
        await w.desk(),
    )
    patient = appointment.patient_id
    assert await related(records, doctor.account_id, patient, before=7, after=1)
    assert not await related(records, doctor.account_id, patient, before=7, after=0.01)  # 14 min
