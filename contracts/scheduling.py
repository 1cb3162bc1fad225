"""Wire contracts of the scheduling service: availability, appointments, calendars.

Times on the wire are timezone-aware datetimes, answered in UTC (any offset is accepted
on input and converted). Working hours and calendar days are wall-clock times in the
clinic's time zone (`MEDIHAVEN_CLINIC_TIMEZONE`), DST-aware: "09:00" is 08:00 UTC in
winter and 07:00 UTC in summer in Europe/Berlin.

Who sees what (minimum necessary):
- receptionists book, reschedule and cancel, and see any physician's calendar, including
  the reasons for visit (they take them down at the desk and need them to rebook);
- physicians see their own calendar (with reasons) and record outcomes of their own
  appointments; they and receptionists may set a physician's availability;
- administrators manage availability (staff rosters) but never see appointments.

Replies of writes never carry the reason in clear: the runtime keeps a write's reply in
the service's database for idempotent replay, and the database holds only ciphertext.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints, model_validator

from contracts.base import EventType, Model, Role, RpcMethod

SERVICE = "scheduling"

DESK = frozenset({Role.receptionist})
DESK_AND_PHYSICIANS = frozenset({Role.receptionist, Role.physician})
ROSTER = frozenset({Role.receptionist, Role.physician, Role.administrator})
"""Who may set availability (physicians only their own: checked by the handler)."""

MIN_APPOINTMENT_MINUTES = 5
MAX_APPOINTMENT_MINUTES = 8 * 60
MAX_BOOKING_DAYS_AHEAD = 366
MAX_REASON_CHARS = 500
MAX_SLOT_RANGE_DAYS = 31
MAX_PERIODS_PER_WEEK = 56
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
WALL_TIME = re.compile(r"^(?:([01]\d|2[0-3]):([0-5]\d)|(24):(00))$")


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime (naive ones are refused), normalised to UTC."""
Id = Annotated[str, Field(pattern=ID_PATTERN)]
Reason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_REASON_CHARS)
]


def wall_minutes(value: str) -> int:
    """Minutes after midnight of a "HH:MM" wall time ("24:00" = 1440, the day's end)."""
    match = WALL_TIME.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a wall time HH:MM (00:00 to 24:00)")
    hours, minutes = (match.group(1), match.group(2)) if match.group(1) else ("24", "00")
    return int(hours) * 60 + int(minutes)


def _check_wall_time(value: str) -> str:
    wall_minutes(value)
    return value


WallTime = Annotated[str, Field(examples=["08:30", "24:00"]), AfterValidator(_check_wall_time)]


class Weekday(StrEnum):
    monday = "monday"
    tuesday = "tuesday"
    wednesday = "wednesday"
    thursday = "thursday"
    friday = "friday"
    saturday = "saturday"
    sunday = "sunday"

    @property
    def number(self) -> int:
        """0 for Monday, as `date.weekday()`."""
        return list(Weekday).index(self)


class AppointmentStatus(StrEnum):
    booked = "booked"
    cancelled = "cancelled"
    completed = "completed"
    no_show = "no_show"


class Outcome(StrEnum):
    """What happened to an appointment once its time came."""

    completed = "completed"
    no_show = "no_show"


class CalendarSpan(StrEnum):
    day = "day"
    week = "week"
    """The ISO week (Monday to Sunday) that contains the given day."""


class WorkingPeriod(Model):
    """One block of working hours on a weekday, in the clinic's wall-clock time.

    A wall time that a DST change skips maps to the instant of the change; one it
    repeats maps to its first occurrence.
    """

    weekday: Weekday
    start: WallTime
    end: WallTime

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if wall_minutes(self.end) <= wall_minutes(self.start):
            raise ValueError("end must be after start (periods do not cross midnight)")
        return self


class TimeRange(Model):
    start: datetime
    end: datetime


class AppointmentSlot(Model):
    """An appointment's id and time, without any patient data."""

    appointment_id: str
    start: datetime
    end: datetime


class Appointment(Model):
    appointment_id: str
    patient_id: str
    physician_id: str
    start: datetime
    end: datetime
    status: AppointmentStatus
    reason: str | None = Field(
        default=None, description="Reason for visit; only in reads by someone allowed to see it."
    )
    cancellation_reason: str | None = None
    booked_by: str
    created_at: datetime
    updated_at: datetime


class Availability(Model):
    physician_id: str
    time_zone: str
    weekly: list[WorkingPeriod]
    days_off: list[date] = Field(description="Days off from today on.")
    affected: list[AppointmentSlot] = Field(
        default=[],
        description="After a change: booked future appointments that no longer fit the "
        "working hours or fall on a day off (they stay booked; rebook or cancel them).",
    )


class SetWorkingHoursRequest(Model):
    """Replaces the physician's weekly working hours."""

    physician_id: Id
    weekly: list[WorkingPeriod] = Field(max_length=MAX_PERIODS_PER_WEEK)


class SetDaysOffRequest(Model):
    physician_id: Id
    add: list[date] = Field(default=[], max_length=MAX_BOOKING_DAYS_AHEAD)
    remove: list[date] = Field(default=[], max_length=MAX_BOOKING_DAYS_AHEAD)

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.add and not self.remove:
            raise ValueError("give days to add or to remove")
        if set(self.add) & set(self.remove):
            raise ValueError("a day cannot be both added and removed")
        return self


class AvailabilityRequest(Model):
    physician_id: Id


class BookRequest(Model):
    patient_id: Id
    physician_id: Id
    start: UtcDatetime
    end: UtcDatetime
    reason: Reason


class RescheduleRequest(Model):
    appointment_id: Id
    start: UtcDatetime
    end: UtcDatetime


class CancelRequest(Model):
    appointment_id: Id
    reason: Reason


class RecordOutcomeRequest(Model):
    appointment_id: Id
    outcome: Outcome


class AppointmentRequest(Model):
    appointment_id: Id


class CalendarRequest(Model):
    physician_id: Id | None = Field(
        default=None, description="Required for receptionists; physicians: their own."
    )
    day: date
    span: CalendarSpan = CalendarSpan.day
    include_cancelled: bool = False


class Calendar(Model):
    physician_id: str
    time_zone: str
    span: CalendarSpan
    first_day: date
    last_day: date
    start: datetime
    end: datetime
    working: list[TimeRange] = Field(description="Working hours in the span (UTC instants).")
    appointments: list[Appointment]


class FreeSlotsRequest(Model):
    physician_id: Id | None = Field(
        default=None, description="Required for receptionists; physicians: their own."
    )
    first_day: date
    last_day: date
    duration_minutes: int = Field(
        default=30, ge=MIN_APPOINTMENT_MINUTES, le=MAX_APPOINTMENT_MINUTES
    )
    limit: int = Field(default=200, ge=1, le=1000)

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.last_day < self.first_day:
            raise ValueError("last_day is before first_day")
        if (self.last_day - self.first_day).days >= MAX_SLOT_RANGE_DAYS:
            raise ValueError(f"at most {MAX_SLOT_RANGE_DAYS} days at a time")
        return self


class FreeSlots(Model):
    physician_id: str
    time_zone: str
    duration_minutes: int
    slots: list[TimeRange]
    truncated: bool = Field(description="More slots exist than `limit`.")


class AppointmentEvent(Model):
    """Ids and times only: consumers fetch details with a signed request if they may."""

    appointment_id: str
    physician_id: str
    patient_id: str
    start: datetime
    end: datetime
    by: str | None = Field(description="The staff member who acted.")


class AppointmentBooked(AppointmentEvent):
    pass


class AppointmentRescheduled(AppointmentEvent):
    previous_start: datetime
    previous_end: datetime


class AppointmentCancelled(AppointmentEvent):
    pass


SET_WORKING_HOURS = RpcMethod(
    SERVICE,
    "scheduling.set_working_hours",
    SetWorkingHoursRequest,
    Availability,
    write=True,
    roles=ROSTER,
)
SET_DAYS_OFF = RpcMethod(
    SERVICE, "scheduling.set_days_off", SetDaysOffRequest, Availability, write=True, roles=ROSTER
)
GET_AVAILABILITY = RpcMethod(
    SERVICE, "scheduling.availability", AvailabilityRequest, Availability, roles=ROSTER
)
BOOK = RpcMethod(SERVICE, "scheduling.book", BookRequest, Appointment, write=True, roles=DESK)
RESCHEDULE = RpcMethod(
    SERVICE, "scheduling.reschedule", RescheduleRequest, Appointment, write=True, roles=DESK
)
CANCEL = RpcMethod(SERVICE, "scheduling.cancel", CancelRequest, Appointment, write=True, roles=DESK)
RECORD_OUTCOME = RpcMethod(
    SERVICE,
    "scheduling.record_outcome",
    RecordOutcomeRequest,
    Appointment,
    write=True,
    roles=DESK_AND_PHYSICIANS,
)
GET_APPOINTMENT = RpcMethod(
    SERVICE, "scheduling.appointment", AppointmentRequest, Appointment, roles=DESK_AND_PHYSICIANS
)
CALENDAR = RpcMethod(
    SERVICE, "scheduling.calendar", CalendarRequest, Calendar, roles=DESK_AND_PHYSICIANS
)
FREE_SLOTS = RpcMethod(
    SERVICE, "scheduling.free_slots", FreeSlotsRequest, FreeSlots, roles=DESK_AND_PHYSICIANS
)

APPOINTMENT_BOOKED = EventType("scheduling.appointment.booked", AppointmentBooked)
APPOINTMENT_RESCHEDULED = EventType("scheduling.appointment.rescheduled", AppointmentRescheduled)
APPOINTMENT_CANCELLED = EventType("scheduling.appointment.cancelled", AppointmentCancelled)


class CareRelationshipRequest(Model):
    physician_id: str = Field(max_length=64)
    patient_id: str = Field(max_length=64)
    before_days: float = Field(ge=0, le=366)
    after_days: float = Field(ge=0, le=366)


class CareRelationship(Model):
    """Whether now lies within [start - before_days, start + after_days] of a (not
    cancelled) appointment of this physician with this patient."""

    exists: bool


CARE_RELATIONSHIP = RpcMethod(
    SERVICE, "scheduling.care_relationship", CareRelationshipRequest, CareRelationship
)
"""Service to service (records' and the keyvault's access checks): ids in, a yes or no out."""
