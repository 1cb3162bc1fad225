"""A clinic with a scheduling service: stand-in records, staff, calendars, collected events.

Each test module gets its own namespace (vhost, databases, keyvault). The scheduling
service runs in-process as two replicas (`Runtime`s on the same queue and database), as
production runs several; the clinic's stand-in auth answers `resolve_key` and a stand-in
records service answers `patient_ref` from `World.patients`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from contracts import keyvault as kv
from contracts import records as rec
from contracts import scheduling as sched
from contracts.audit import AUDIT_RECORDED, AuditEvent
from contracts.base import EventType, Role
from contracts.records import PATIENT_REF, PatientRef, PatientRefRequest
from mesh.context import CallContext
from mesh.events import ReceivedEvent
from mesh.rpc import RpcRouter
from mesh.runtime import ConsumerSpec, Runtime
from services.records.handlers import router as records_router
from services.scheduling import store
from services.scheduling.handlers import router
from tests.support.clinic import Clinic, StaffMember, clinic

SERVICES = Path(__file__).resolve().parents[2] / "services"
MIGRATIONS = SERVICES / "scheduling" / "migrations"
RECORDS_MIGRATIONS = SERVICES / "records" / "migrations"
TIMEZONE = "Europe/Berlin"
TZ = ZoneInfo(TIMEZONE)
ALL_WEEK = [sched.WorkingPeriod(weekday=d, start="08:00", end="18:00") for d in sched.Weekday]
SCHEDULING_EVENTS: list[EventType[Any]] = list(sched.CALENDAR_EVENTS)


def key() -> str:
    return str(uuid.uuid4())


def today() -> date:
    return datetime.now(TZ).date()


def at(day: date, hhmm: str) -> datetime:
    """A wall time in the clinic's zone as a UTC instant (the day must not be a DST edge)."""
    hours, minutes = map(int, hhmm.split(":"))
    return datetime(day.year, day.month, day.day, hours, minutes, tzinfo=TZ).astimezone(UTC)


def stand_in_records(patients: set[str]) -> RpcRouter:
    """Answers `records.patient_ref` from `patients`, as the records service would."""
    records = RpcRouter(rec.SERVICE)

    @records.handler(PATIENT_REF)
    async def patient_ref(req: PatientRefRequest, ctx: CallContext) -> PatientRef:
        return PatientRef(patient_id=req.patient_id, exists=req.patient_id in patients)

    return records


@dataclass
class World:
    clinic: Clinic
    replicas: list[Runtime]
    patients: set[str]
    audits: list[AuditEvent] = field(default_factory=list)
    events: list[ReceivedEvent[Any]] = field(default_factory=list)
    staff: dict[str, StaffMember] = field(default_factory=dict)

    @property
    def service(self) -> Runtime:
        return self.replicas[0]

    async def member(self, name: str, role: Role, **kwargs: Any) -> StaffMember:
        if name not in self.staff:
            self.staff[name] = await self.clinic.add_staff(name, role, **kwargs)
        return self.staff[name]

    async def desk(self) -> StaffMember:
        return await self.member("desk", Role.receptionist)

    async def admin(self) -> StaffMember:
        return await self.member("admin", Role.administrator)

    async def physician(
        self, name: str, weekly: list[sched.WorkingPeriod] | None = None
    ) -> StaffMember:
        """A physician with working hours (default: every day 08:00-18:00)."""
        doctor = await self.member(name, Role.physician, specialty="general practice")
        await self.clinic.call(
            sched.SET_WORKING_HOURS,
            sched.SetWorkingHoursRequest(physician_id=doctor.account_id, weekly=weekly or ALL_WEEK),
            await self.admin(),
            idempotency_key=key(),
        )
        return doctor

    def patient(self) -> str:
        patient_id = f"pat-{uuid.uuid4().hex[:12]}"
        self.patients.add(patient_id)
        return patient_id

    async def book(
        self, doctor: StaffMember, start: datetime, minutes: int = 30, reason: str = "check-up"
    ) -> sched.Appointment:
        return await self.clinic.call(
            sched.BOOK,
            sched.BookRequest(
                patient_id=self.patient(),
                physician_id=doctor.account_id,
                start=start,
                end=start + timedelta(minutes=minutes),
                reason=reason,
            ),
            await self.desk(),
            idempotency_key=key(),
        )

    async def seed_past(self, doctor: StaffMember, reason: str = "seeded") -> str:
        """An appointment that already started (booking cannot make one): written directly."""
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        return await self.seed(doctor, now - timedelta(hours=1), 30, reason=reason)

    async def seed_now(self, doctor: StaffMember, status: str = "booked") -> str:
        """An appointment starting this minute (so on today's date in the clinic's zone),
        in `status` (arrived, in_progress ...): written directly."""
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        return await self.seed(doctor, now, 30, status=status)

    async def seed(
        self,
        doctor: StaffMember,
        start: datetime,
        minutes: int,
        *,
        status: str = "booked",
        reason: str = "seeded",
        cancel_reason: str | None = None,
        patient_id: str | None = None,
    ) -> str:
        """An appointment written straight into the database (any time, any status), its
        reasons encrypted by the clinic's keyvault as the service would."""
        appointment_id = str(uuid.uuid4())
        patient_id = patient_id or self.patient()
        fields = {"reason": reason} | ({"cancel_reason": cancel_reason} if cancel_reason else {})
        (encrypted,) = await self.clinic.encrypt(
            [
                kv.FieldRow(
                    table="appointments",
                    row_id=appointment_id,
                    fields=fields,
                    binding={"patient": patient_id, "physician": doctor.account_id},
                )
            ]
        )
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        assert self.service.db is not None
        async with self.service.db.transaction() as conn:
            await store.insert_appointment(
                conn,
                store.AppointmentRow(
                    appointment_id=appointment_id,
                    physician_id=doctor.account_id,
                    patient_id=patient_id,
                    start=start,
                    end=start + timedelta(minutes=minutes),
                    status=status,
                    reason_enc=encrypted["reason"],
                    cancel_reason_enc=encrypted.get("cancel_reason"),
                    booked_by="seed",
                    updated_by="seed",
                    created_at=now,
                    updated_at=now,
                ),
            )
        return appointment_id


@asynccontextmanager
async def world(tag: str, replicas: int = 1, *, real_records: bool = False) -> AsyncIterator[World]:
    """`real_records`: the records service itself instead of the stand-in (patients are
    then made through it, and `World.patient()` must not be used)."""
    audits: list[AuditEvent] = []
    events: list[ReceivedEvent[Any]] = []

    def collect_audits(_: Runtime):  # type: ignore[no-untyped-def]
        async def handle(event: ReceivedEvent[AuditEvent]) -> None:
            audits.append(event.payload)

        return handle

    def collect_events(_: Runtime):  # type: ignore[no-untyped-def]
        async def handle(event: ReceivedEvent[Any]) -> None:
            events.append(event)

        return handle

    consumers = [
        ConsumerSpec(f"{tag}-audit", [AUDIT_RECORDED], collect_audits),
        ConsumerSpec(f"{tag}-events", SCHEDULING_EVENTS, collect_events),
    ]
    async with clinic(tag, client_consumers=consumers) as c:
        settings = c.settings.model_copy(update={"clinic_timezone": TIMEZONE})
        patients: set[str] = set()
        if real_records:
            records = await Runtime.start(
                rec.SERVICE, settings, router=records_router, migrations=RECORDS_MIGRATIONS
            )
        else:
            records = await Runtime.start(
                rec.SERVICE, settings, router=stand_in_records(patients), use_database=False
            )
        started: list[Runtime] = []
        try:
            for _ in range(replicas):
                started.append(
                    await Runtime.start(
                        sched.SERVICE, settings, router=router, migrations=MIGRATIONS
                    )
                )
            c.services.extend([*started, records])
            yield World(c, started, patients, audits, events)
        finally:
            for runtime in started:
                await runtime.stop()
            await records.stop()
