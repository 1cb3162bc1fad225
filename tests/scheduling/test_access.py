"""The role matrix of every scheduling method, over the bus, and forged principals.

Roles come from the contract (checked by the runtime) and "own calendar only" from the
handlers. A principal in the headers proves nothing by itself: every method also checks
the caller's forwarded signature (writes and reads that decrypt nothing here, reads that
decrypt through the keyvault's gate), so a forged request gets 401, not data.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from pydantic import BaseModel

from contracts import scheduling as sched
from contracts.base import Principal, Role, RpcMethod
from mesh.errors import Forbidden, Unauthenticated
from tests.scheduling.support import World, at, key, today, world
from tests.support.clinic import StaffMember

CALLERS = ("administrator", "owner", "other physician", "receptionist", "nobody")
ALLOWED: dict[str, set[str]] = {
    sched.SET_WORKING_HOURS.name: {"administrator", "owner", "receptionist"},
    sched.SET_DAYS_OFF.name: {"administrator", "owner", "receptionist"},
    sched.GET_AVAILABILITY.name: {"administrator", "owner", "receptionist"},
    sched.BOOK.name: {"receptionist"},
    sched.RESCHEDULE.name: {"receptionist"},
    sched.CANCEL.name: {"receptionist"},
    sched.RECORD_OUTCOME.name: {"owner", "receptionist"},
    sched.GET_APPOINTMENT.name: {"owner", "receptionist"},
    sched.CALENDAR.name: {"owner", "receptionist"},
    sched.FREE_SLOTS.name: {"owner", "receptionist"},
}

Factory = Callable[[], Awaitable[BaseModel]]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def w() -> AsyncIterator[World]:
    async with world("schedaccess") as w:
        yield w


class Cases:
    """A fresh, valid request per method (each write needs its own appointment)."""

    def __init__(self, w: World, owner: StaffMember) -> None:
        self.w, self.owner = w, owner
        self.day = today() + timedelta(days=2)
        self.next_start = at(self.day, "08:00")

    def slot(self) -> tuple[Any, Any]:
        """The next free 10 minutes of the owner's working hours (08:00-18:00)."""
        start = self.next_start
        if start >= at(self.day, "17:50"):
            self.day += timedelta(days=1)
            start = at(self.day, "08:00")
        self.next_start = start + timedelta(minutes=10)
        return start, start + timedelta(minutes=10)

    async def booked(self) -> str:
        start, _ = self.slot()
        return (await self.w.book(self.owner, start, 10)).appointment_id

    async def build(self, method: RpcMethod[Any, Any]) -> BaseModel:
        owner_id = self.owner.account_id
        if method is sched.SET_WORKING_HOURS:
            weekly = [
                sched.WorkingPeriod(weekday=d, start="08:00", end="18:00") for d in sched.Weekday
            ]
            return sched.SetWorkingHoursRequest(physician_id=owner_id, weekly=weekly)
        if method is sched.SET_DAYS_OFF:
            return sched.SetDaysOffRequest(
                physician_id=owner_id, add=[today() + timedelta(days=300)]
            )
        if method is sched.GET_AVAILABILITY:
            return sched.AvailabilityRequest(physician_id=owner_id)
        if method is sched.BOOK:
            start, end = self.slot()
            return sched.BookRequest(
                patient_id=self.w.patient(),
                physician_id=owner_id,
                start=start,
                end=end,
                reason="matrix",
            )
        if method is sched.RESCHEDULE:
            appointment_id = await self.booked()
            start, end = self.slot()
            return sched.RescheduleRequest(appointment_id=appointment_id, start=start, end=end)
        if method is sched.CANCEL:
            return sched.CancelRequest(appointment_id=await self.booked(), reason="matrix")
        if method is sched.RECORD_OUTCOME:
            return sched.RecordOutcomeRequest(
                appointment_id=await self.w.seed_past(self.owner), outcome=sched.Outcome.completed
            )
        if method is sched.GET_APPOINTMENT:
            return sched.AppointmentRequest(appointment_id=await self.booked())
        if method is sched.CALENDAR:
            await self.booked()
            return sched.CalendarRequest(physician_id=owner_id, day=self.day)
        assert method is sched.FREE_SLOTS
        return sched.FreeSlotsRequest(physician_id=owner_id, first_day=self.day, last_day=self.day)


METHODS: list[RpcMethod[Any, Any]] = [
    sched.SET_WORKING_HOURS,
    sched.SET_DAYS_OFF,
    sched.GET_AVAILABILITY,
    sched.BOOK,
    sched.RESCHEDULE,
    sched.CANCEL,
    sched.RECORD_OUTCOME,
    sched.GET_APPOINTMENT,
    sched.CALENDAR,
    sched.FREE_SLOTS,
]


def test_the_matrix_covers_every_method_of_the_contract() -> None:
    declared = {v.name for v in vars(sched).values() if isinstance(v, RpcMethod)}
    declared.discard(
        sched.CARE_RELATIONSHIP.name
    )  # service to service: tests/scheduling/test_care.py
    assert declared == {m.name for m in METHODS} == set(ALLOWED)
    roles = {
        "administrator": Role.administrator,
        "owner": Role.physician,
        "receptionist": Role.receptionist,
    }
    for method in METHODS:  # the contract's roles are the matrix's, seen from the role
        expected = frozenset(roles[c] for c in ALLOWED[method.name] if c in roles)
        assert method.roles == expected


async def test_role_matrix_over_the_bus(w: World) -> None:
    owner = await w.physician("dr-owner")
    callers: dict[str, StaffMember | None] = {
        "administrator": await w.admin(),
        "owner": owner,
        "other physician": await w.physician("dr-stranger"),
        "receptionist": await w.desk(),
        "nobody": None,
    }
    cases = Cases(w, owner)
    outcomes: dict[tuple[str, str], str] = {}
    for method in METHODS:
        for name, caller in callers.items():
            request = await cases.build(method)
            try:
                await w.clinic.call(
                    method, request, caller, idempotency_key=key() if method.write else None
                )
                outcomes[method.name, name] = "allowed"
            except Forbidden:
                outcomes[method.name, name] = "forbidden"
    expected = {
        (m.name, c): "allowed" if c in ALLOWED[m.name] else "forbidden"
        for m in METHODS
        for c in CALLERS
    }
    assert outcomes == expected


async def test_forged_principals_are_refused(w: World) -> None:
    """A compromised gateway or service can put any principal on the bus, but not sign."""
    owner = await w.physician("dr-forged")
    desk = await w.member("desk-forged", Role.receptionist)
    other = await w.member("desk-other", Role.receptionist)
    cases = Cases(w, owner)
    now = int(time.time())
    forgeries: dict[str, Callable[[], tuple[Principal, str | None]]] = {
        "no signature": lambda: (desk.principal, None),
        "signed by someone else's key": lambda: (desk.principal, desk.proof(key=other.key)),
        "someone else's signature": lambda: (desk.principal, other.proof()),
        "stale signature": lambda: (desk.principal, desk.proof(created=now - 600)),
        "a physician claiming the desk role": lambda: (
            Principal(account_id=owner.account_id, role=Role.receptionist),
            owner.proof(),
        ),
        "an account that does not exist": lambda: (
            Principal(account_id="acc-ghost", role=Role.receptionist),
            desk.proof(key_id="acc-ghost"),
        ),
        "garbage": lambda: (desk.principal, '{"method": "GET"}'),
    }
    for method in METHODS:
        if Role.receptionist not in (method.roles or ()):
            continue
        for name, forge in forgeries.items():
            request = await cases.build(method)
            principal, proof = forge()
            with pytest.raises(Unauthenticated):
                await w.clinic.client.rpc.call(
                    method,
                    request,
                    principal=principal,
                    proof=proof,
                    idempotency_key=key() if method.write else None,
                )
            # and the same request, properly signed, goes through
            if name == "no signature":
                await w.clinic.call(
                    method, request, desk, idempotency_key=key() if method.write else None
                )
    # A physician's principal on someone else's calendar, signed by its own key: 403.
    stranger = await w.physician("dr-forged-stranger")
    with pytest.raises(Forbidden):
        await w.clinic.call(
            sched.CALENDAR,
            sched.CalendarRequest(physician_id=owner.account_id, day=cases.day),
            stranger,
        )
    # The owner's principal signed by the stranger's key: the keyvault refuses to decrypt.
    await cases.booked()
    with pytest.raises(Unauthenticated):
        await w.clinic.client.rpc.call(
            sched.CALENDAR,
            sched.CalendarRequest(day=cases.day),
            principal=owner.principal,
            proof=owner.proof(key=stranger.key),
        )
