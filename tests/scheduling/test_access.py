"""The role matrix of every scheduling method, over the bus, and forged principals.

Roles come from the contract (checked by the runtime) and "own calendar only" from the
handlers. A principal in the headers proves nothing by itself: every method also checks
the caller's forwarded signature (writes and reads that decrypt nothing here, reads that
decrypt through the keyvault's gate), so a forged request gets 401, not data.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from pydantic import BaseModel

from contracts import keyvault as kv
from contracts import scheduling as sched
from contracts.base import Principal, Role, RpcMethod
from mesh.errors import Forbidden, Unauthenticated
from mesh.runtime import Runtime
from tests.scheduling.support import World, at, key, today, world
from tests.support.clinic import StaffMember

CALLERS = ("administrator", "owner", "other physician", "receptionist", "nobody")
ROSTER = {"administrator", "owner", "receptionist"}
ALLOWED: dict[str, set[str]] = {
    sched.SET_WORKING_HOURS.name: ROSTER,
    sched.SET_BREAKS.name: ROSTER,
    sched.SET_DAYS_OFF.name: ROSTER,
    sched.CHANGE_ABSENCES.name: ROSTER,
    sched.GET_AVAILABILITY.name: ROSTER,
    sched.BOOK.name: {"receptionist"},
    sched.RESCHEDULE.name: {"receptionist"},
    sched.CANCEL.name: {"receptionist"},
    # the front desk checks patients in and records no-shows; only the appointment's own
    # physician starts and finishes the visit (a receptionist cannot mark it done)
    sched.CHECK_IN.name: {"receptionist"},
    sched.MARK_NO_SHOW.name: {"receptionist"},
    sched.START_VISIT.name: {"owner"},
    sched.FINISH_VISIT.name: {"owner"},
    sched.GET_APPOINTMENT.name: {"owner", "receptionist"},
    sched.CALENDAR.name: {"owner", "receptionist"},
    sched.TODAY.name: {"receptionist"},
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
        if method is sched.SET_BREAKS:
            # before the hours the matrix books in (08:00-18:00), so nothing moves
            early = [
                sched.WorkingPeriod(weekday=d, start="07:00", end="07:30") for d in sched.Weekday
            ]
            return sched.SetBreaksRequest(physician_id=owner_id, breaks=early)
        if method is sched.SET_DAYS_OFF:
            return sched.SetDaysOffRequest(
                physician_id=owner_id, add=[today() + timedelta(days=300)]
            )
        if method is sched.CHANGE_ABSENCES:
            return sched.ChangeAbsencesRequest(
                physician_id=owner_id,
                add=[
                    sched.NewAbsence(
                        kind=sched.AbsenceKind.training, first_day=today() + timedelta(days=301)
                    )
                ],
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
        if method in STEP_FROM:
            status = STEP_FROM[method]
            if method is sched.MARK_NO_SHOW:
                return sched.AppointmentRequest(appointment_id=await self.w.seed_past(self.owner))
            return sched.AppointmentRequest(
                appointment_id=await self.w.seed_now(self.owner, status)
            )
        if method is sched.GET_APPOINTMENT:
            return sched.AppointmentRequest(appointment_id=await self.booked())
        if method is sched.CALENDAR:
            await self.booked()
            return sched.CalendarRequest(physician_id=owner_id, day=self.day)
        if method is sched.TODAY:
            await self.w.seed_now(self.owner)
            return sched.TodayRequest()
        assert method is sched.FREE_SLOTS
        return sched.FreeSlotsRequest(physician_id=owner_id, first_day=self.day, last_day=self.day)


STEP_FROM: dict[RpcMethod[Any, Any], str] = {
    sched.CHECK_IN: "booked",
    sched.MARK_NO_SHOW: "booked",
    sched.START_VISIT: "arrived",
    sched.FINISH_VISIT: "in_progress",
}
"""The status each step of the appointment's day starts from, in the matrix."""


METHODS: list[RpcMethod[Any, Any]] = [
    sched.SET_WORKING_HOURS,
    sched.SET_BREAKS,
    sched.SET_DAYS_OFF,
    sched.CHANGE_ABSENCES,
    sched.GET_AVAILABILITY,
    sched.BOOK,
    sched.RESCHEDULE,
    sched.CANCEL,
    sched.CHECK_IN,
    sched.MARK_NO_SHOW,
    sched.START_VISIT,
    sched.FINISH_VISIT,
    sched.GET_APPOINTMENT,
    sched.CALENDAR,
    sched.TODAY,
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
            except Unauthenticated:
                outcomes[method.name, name] = "unauthenticated"
    # Nobody (no principal, no signature) is refused before any role check: every method
    # here serves a user's signed request, and there is none.
    expected = {
        (m.name, c): (
            "allowed"
            if c in ALLOWED[m.name]
            else "unauthenticated"
            if c == "nobody"
            else "forbidden"
        )
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


async def test_a_booking_proof_replayed_under_a_new_key_is_refused(w: World) -> None:
    """Someone on the bus saw a receptionist's signed booking go by and sends it again
    under a new idempotency key (which would make it a new write): refused; the
    original key is still a redelivery, answered from the first result."""
    doctor = await w.physician("dr-replayed")
    desk = await w.desk()
    cases = Cases(w, doctor)
    request = await cases.build(sched.BOOK)
    assert isinstance(request, sched.BookRequest)
    proof, body = desk.signed(sched.BOOK, request)

    async def send(idempotency_key: str) -> sched.Appointment:
        return await w.clinic.client.rpc.call(
            sched.BOOK,
            request,
            principal=desk.principal,
            proof=proof,
            signed_body=body,
            idempotency_key=idempotency_key,
        )

    first_key = key()
    first = await send(first_key)
    for _ in range(2):
        with pytest.raises(Unauthenticated, match="already used"):
            await send(key())
    assert await send(first_key) == first
    calendar = await w.clinic.call(
        sched.CALENDAR,
        sched.CalendarRequest(physician_id=doctor.account_id, day=cases.day),
        desk,
    )
    assert [a.appointment_id for a in calendar.appointments] == [first.appointment_id]


async def status_of(w: World, appointment_id: str) -> sched.AppointmentStatus:
    appointment = await w.clinic.call(
        sched.GET_APPOINTMENT,
        sched.AppointmentRequest(appointment_id=appointment_id),
        await w.desk(),
    )
    return appointment.status


async def test_a_step_proof_counts_for_its_appointment_and_its_step_once(w: World) -> None:
    """Someone on the bus holds a receptionist's signed check-in of one appointment: it
    checks in no other appointment, records no no-show, and works once."""
    doctor = await w.physician("dr-step-proof")
    desk = await w.desk()
    mine, other = await w.seed_now(doctor), await w.seed_now(doctor)
    request = sched.AppointmentRequest(appointment_id=mine)
    proof, body = desk.signed(sched.CHECK_IN, request)

    async def send(method: RpcMethod[Any, Any], req: BaseModel, idem: str) -> Any:
        return await w.clinic.client.rpc.call(
            method,
            req,
            principal=desk.principal,
            proof=proof,
            signed_body=body,
            idempotency_key=idem,
        )

    with pytest.raises(Unauthenticated):  # the signed URI names another appointment
        await send(sched.CHECK_IN, sched.AppointmentRequest(appointment_id=other), key())
    with pytest.raises(Unauthenticated):  # the signed URI is another step's route
        await send(sched.MARK_NO_SHOW, request, key())
    first_key = key()
    arrived = await send(sched.CHECK_IN, request, first_key)
    assert arrived.status is sched.AppointmentStatus.arrived
    with pytest.raises(Unauthenticated, match="already used"):
        await send(sched.CHECK_IN, request, key())
    assert await send(sched.CHECK_IN, request, first_key) == arrived  # a redelivery
    assert await status_of(w, other) is sched.AppointmentStatus.booked


async def test_nobody_but_the_appointments_physician_starts_or_finishes_it(w: World) -> None:
    """A receptionist cannot mark a visit done, nor claim to be a physician; another
    physician can neither start nor finish it; the refusals are audited."""
    doctor, stranger = await w.physician("dr-visit-owner"), await w.physician("dr-visit-other")
    desk = await w.desk()
    arrived = await w.seed_now(doctor, "arrived")
    in_progress = await w.seed_now(doctor, "in_progress")
    for method, appointment_id in ((sched.START_VISIT, arrived), (sched.FINISH_VISIT, in_progress)):
        request = sched.AppointmentRequest(appointment_id=appointment_id)
        for caller in (desk, stranger, await w.admin()):
            with pytest.raises(Forbidden):
                await w.clinic.call(method, request, caller, idempotency_key=key())
        # the desk's own signature, claiming a physician's role: the role is the signer's
        with pytest.raises((Forbidden, Unauthenticated)):
            await w.clinic.client.rpc.call(
                method,
                request,
                principal=Principal(account_id=desk.account_id, role=Role.physician),
                proof=desk.signed(method, request)[0],
                signed_body=desk.signed(method, request)[1],
                idempotency_key=key(),
            )
        with pytest.raises(Unauthenticated):  # the owner's principal, the stranger's proof
            await w.clinic.client.rpc.call(
                method,
                request,
                principal=doctor.principal,
                proof=stranger.signed(method, request)[0],
                signed_body=stranger.signed(method, request)[1],
                idempotency_key=key(),
            )
    assert await status_of(w, arrived) is sched.AppointmentStatus.arrived
    assert await status_of(w, in_progress) is sched.AppointmentStatus.in_progress
    refused = [
        a
        for a in w.audits
        if a.entity_id == in_progress
        and a.type == "appointment.finish"
        and a.outcome.value == "refused"
    ]
    assert {a.agent.account_id for a in refused} >= {stranger.account_id}
    # the physician themself: start, then finish
    done = await w.clinic.call(
        sched.FINISH_VISIT,
        sched.AppointmentRequest(appointment_id=in_progress),
        doctor,
        idempotency_key=key(),
    )
    assert done.status is sched.AppointmentStatus.completed and done.finished_at is not None


async def test_a_today_proof_lets_the_keyvault_do_no_more(w: World) -> None:
    """A taken-over scheduling service holding a receptionist's signed list of one
    physician's day cannot decrypt another physician's rows with it; and a physician's
    signature for the day's list (which the front desk alone may ask for, since it names
    no physician) decrypts nothing, not even their own rows."""
    mine, theirs = await w.physician("dr-today-a"), await w.physician("dr-today-b")
    desk = await w.desk()
    taken_over = await Runtime.start(
        "sched-taken-over", w.service.settings, use_database=False, identity=sched.SERVICE
    )
    try:

        async def rows_of(doctor: StaffMember) -> list[kv.FieldRow]:
            row = kv.FieldRow(
                table=sched.APPOINTMENTS_TABLE,
                row_id=str(uuid.uuid4()),
                fields={"reason": "Chest pain"},
                binding={"patient": w.patient(), "physician": doctor.account_id},
            )
            (enc,) = (await taken_over.rpc.call(kv.ENCRYPT, kv.EncryptRequest(rows=[row]))).rows
            return [row.model_copy(update={"fields": enc})]

        async def decrypt(
            signer: StaffMember, request: sched.TodayRequest, rows: list[kv.FieldRow]
        ) -> Any:
            proof, body = signer.signed(sched.TODAY, request)
            return await taken_over.rpc.call(
                kv.DECRYPT,
                kv.DecryptRequest(rows=rows),
                principal=signer.principal,
                proof=proof,
                signed_body=body,
            )

        one_physician = sched.TodayRequest(physician_id=mine.account_id)
        reply = await decrypt(desk, one_physician, await rows_of(mine))
        assert reply.rows == [{"reason": "Chest pain"}]  # what the desk may see
        with pytest.raises(Forbidden, match="another physician"):
            await decrypt(desk, one_physician, await rows_of(theirs))
        with pytest.raises(Forbidden, match="physician"):
            await decrypt(mine, sched.TodayRequest(), await rows_of(mine))
    finally:
        await taken_over.stop()
