"""A full dump of the scheduling database holds no reason for visit, in any encoding.

The attacker's view: `mysqldump` of the scheduling database after booking, rescheduling
and cancelling, with every table the service and its runtime keep (appointments, the
outbox of events and audit events, the stored replies of idempotent writes).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio

from contracts import scheduling as sched
from tests.scheduling.support import World, at, key, today, world
from tests.support.dump import DUMP, dump

REASONS = [
    "Suspected pregnancy, wishes discretion",
    "HIV test result discussion",
    "Panic attacks since divorce",
]
CANCEL_REASON = "Admitted to psychiatric ward"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("scheddump") as w:
        yield w


def encodings(text: str) -> list[bytes]:
    raw = text.encode()
    words = [word.encode() for word in text.split() if len(word) > 5]
    return [
        raw,
        raw.lower(),
        raw.hex().encode(),
        raw.hex().upper().encode(),
        base64.b64encode(raw),
        *words,
    ]


@pytest.mark.skipif(DUMP is None, reason="mysqldump / mariadb-dump is not installed")
async def test_a_database_dump_holds_no_reason_for_visit(w: World) -> None:
    doctor = await w.physician("dr-dump")
    desk = await w.desk()
    day = today() + timedelta(days=2)
    booked = [
        await w.book(doctor, at(day, f"{9 + i}:00"), reason=reason)
        for i, reason in enumerate(REASONS)
    ]
    await w.clinic.call(
        sched.RESCHEDULE,
        sched.RescheduleRequest(
            appointment_id=booked[0].appointment_id,
            start=at(day, "15:00"),
            end=at(day, "15:30"),
        ),
        desk,
        idempotency_key=key(),
    )
    await w.clinic.call(
        sched.CANCEL,
        sched.CancelRequest(appointment_id=booked[1].appointment_id, reason=CANCEL_REASON),
        desk,
        idempotency_key=key(),
    )
    # The reasons are there, for those allowed to read them...
    calendar = await w.clinic.call(
        sched.CALENDAR,
        sched.CalendarRequest(physician_id=doctor.account_id, day=day, include_cancelled=True),
        doctor,
    )
    assert {a.reason for a in calendar.appointments} == set(REASONS)
    assert CANCEL_REASON in {a.cancellation_reason for a in calendar.appointments}
    # ... and nowhere in the database.
    database = w.clinic.settings.database(sched.SERVICE)
    dumps = [dump(w.clinic.settings, database), dump(w.clinic.settings, database, "--hex-blob")]
    for d in dumps:
        assert b"INSERT INTO `appointments`" in d
        assert b"INSERT INTO `mesh_idempotency`" in d and b"INSERT INTO `mesh_outbox`" in d
        for text in [*REASONS, CANCEL_REASON]:
            for form in encodings(text):
                assert form not in d, f"{form!r} found in the dump"
