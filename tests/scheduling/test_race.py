"""No double booking under concurrency, across two replicas of the scheduling service.

Each round, several receptionists (each with their own key and signature) book
overlapping times for one physician at the same moment. Exactly one wins; every other
gets 409 naming the winner's slot. The replicas share only the database, so this holds
only if the database decides.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio

from contracts import scheduling as sched
from contracts.base import Role
from mesh.errors import Conflict
from mesh.rpc import RpcServer
from tests.scheduling.support import World, at, key, today, world

ROUNDS = 30
EVERY_HOUR = [sched.WorkingPeriod(weekday=d, start="00:00", end="24:00") for d in sched.Weekday]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("schedrace", replicas=2) as w:
        yield w


@pytest.fixture
def deciders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The replica instance that handled each scheduling write."""
    seen: list[str] = []
    dispatch = RpcServer._dispatch

    async def counting(self: RpcServer, route: Any, body: bytes, ctx: Any, *rest: Any) -> bytes:
        if route.method.write and route.method.service == sched.SERVICE:
            seen.append(self.instance)
        return await dispatch(self, route, body, ctx, *rest)

    monkeypatch.setattr(RpcServer, "_dispatch", counting)
    return seen


def check_round(results: list[Any], winner_ids: set[str] | None = None) -> str:
    """Exactly one winner; each loser a 409 naming the winner's slot. The winner's id."""
    winners = [r for r in results if isinstance(r, sched.Appointment)]
    losers = [r for r in results if isinstance(r, Conflict)]
    others = [r for r in results if r not in winners and r not in losers]
    assert not others, others
    assert len(winners) == 1, results
    (winner,) = winners
    for loser in losers:
        assert isinstance(loser.details, dict)
        conflict = loser.details["conflict"]
        assert conflict == {
            "appointment_id": winner.appointment_id,
            "start": winner.start.isoformat(),
            "end": winner.end.isoformat(),
        }
    return winner.appointment_id


async def no_overlaps(w: World, physician_id: str) -> None:
    assert w.service.db is not None
    rows = await w.service.db.fetchall(
        "SELECT a.appointment_id, b.appointment_id FROM appointments a JOIN appointments b "
        "ON a.physician_id = b.physician_id AND a.appointment_id < b.appointment_id "
        "AND a.start_at < b.end_at AND b.start_at < a.end_at "
        "WHERE a.physician_id = %s AND a.status <> 'cancelled' AND b.status <> 'cancelled'",
        (physician_id,),
    )
    assert rows == []


async def test_concurrent_bookings_have_exactly_one_winner(w: World, deciders: list[str]) -> None:
    doctor = await w.physician("dr-race", EVERY_HOUR)
    desks = [await w.member(f"desk-{i}", Role.receptionist) for i in range(5)]
    first_day = today() + timedelta(days=10)
    for round_no in range(ROUNDS):
        bookers = 2 + round_no % 4  # 2 to 5 at once
        start = at(first_day + timedelta(days=round_no // 12), "06:00") + timedelta(
            hours=round_no % 12
        )
        # Every request overlaps every other: starts 5 minutes apart, 30 minutes long.
        requests = [
            sched.BookRequest(
                patient_id=w.patient(),
                physician_id=doctor.account_id,
                start=start + timedelta(minutes=5 * i),
                end=start + timedelta(minutes=5 * i + 30),
                reason=f"race {round_no}/{i}",
            )
            for i in range(bookers)
        ]
        results = await asyncio.gather(
            *(
                w.clinic.call(sched.BOOK, request, desk, idempotency_key=key())
                for request, desk in zip(requests, desks, strict=False)
            ),
            return_exceptions=True,
        )
        check_round(results)
    await no_overlaps(w, doctor.account_id)
    assert len(set(deciders)) == 2, "both replicas should have decided bookings"


async def test_concurrent_reschedules_and_bookings_into_one_slot(w: World) -> None:
    doctor = await w.physician("dr-race-moves", EVERY_HOUR)
    desks = [await w.member(f"desk-{i}", Role.receptionist) for i in range(3)]
    day = today() + timedelta(days=20)
    for round_no in range(10):
        slot = at(day, "06:00") + timedelta(hours=round_no)
        a = await w.book(doctor, slot + timedelta(days=1))
        b = await w.book(doctor, slot + timedelta(days=1, minutes=30))
        calls = [
            w.clinic.call(
                sched.RESCHEDULE,
                sched.RescheduleRequest(
                    appointment_id=a.appointment_id, start=slot, end=slot + timedelta(minutes=20)
                ),
                desks[0],
                idempotency_key=key(),
            ),
            w.clinic.call(
                sched.RESCHEDULE,
                sched.RescheduleRequest(
                    appointment_id=b.appointment_id,
                    start=slot + timedelta(minutes=10),
                    end=slot + timedelta(minutes=40),
                ),
                desks[1],
                idempotency_key=key(),
            ),
            w.clinic.call(
                sched.BOOK,
                sched.BookRequest(
                    patient_id=w.patient(),
                    physician_id=doctor.account_id,
                    start=slot + timedelta(minutes=15),
                    end=slot + timedelta(minutes=25),
                    reason="walk-in",
                ),
                desks[2],
                idempotency_key=key(),
            ),
        ]
        check_round(list(await asyncio.gather(*calls, return_exceptions=True)))
    await no_overlaps(w, doctor.account_id)
