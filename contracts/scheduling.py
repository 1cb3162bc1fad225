"""Wire contracts of the scheduling service: availability, appointments, calendars.

Times on the wire are timezone-aware datetimes, answered in UTC (any offset is accepted
on input and converted). Working hours and calendar days are wall-clock times in the
clinic's time zone (`MEDIHAVEN_CLINIC_TIMEZONE`), DST-aware: "09:00" is 08:00 UTC in
winter and 07:00 UTC in summer in Europe/Berlin.

Working time is one joined plan per physician: weekly hours, minus weekly breaks, minus
days off and absences (whole days, or from one instant to another). The slot finder and
the booking rule use the same plan (`services.scheduling.timeplan.available`), with
touching periods joined across midnight, so whatever the finder offers can be booked.

An appointment's day: booked, then arrived (the desk checks the patient in), in progress
(the physician starts), completed (the physician finishes); or no-show (the desk, once
its time has come) or cancelled (the desk, before it starts). Every change is an event
(`CALENDAR_EVENTS`), which the gateway pushes to the physician and to the front desk.

Who sees what (minimum necessary):
- receptionists book, reschedule, cancel, check in and mark no-shows, and see any
  physician's calendar and the day's list, including the reasons for visit (they take
  them down at the desk and need them to rebook);
- physicians see their own calendar (with reasons) and start and finish their own
  appointments; they and receptionists may set a physician's working time;
- administrators manage working time (staff rosters) but never see appointments.

Refusals are sentences a clinic worker understands, each problem once, times in the
clinic's time zone ("Dr Berg already has 10:00-10:30 on Thu 3 Dec.").

Replies of writes never carry the reason in clear: the runtime keeps a write's reply in
the service's database for idempotent replay, and the database holds only ciphertext.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from contracts.base import EventType, HttpRoute, Model, Role, RpcMethod
from contracts.grants import Decrypt, Grant

SERVICE = "scheduling"

DESK = frozenset({Role.receptionist})
PHYSICIANS = frozenset({Role.physician})
DESK_AND_PHYSICIANS = frozenset({Role.receptionist, Role.physician})
ROSTER = frozenset({Role.receptionist, Role.physician, Role.administrator})
"""Who may set availability (physicians only their own: checked by the handler)."""

MIN_APPOINTMENT_MINUTES = 5
MAX_APPOINTMENT_MINUTES = 8 * 60
MAX_BOOKING_DAYS_AHEAD = 366
MAX_REASON_CHARS = 500
MAX_SLOT_RANGE_DAYS = 31
MAX_PERIODS_PER_WEEK = 56
MAX_ABSENCES_PER_CHANGE = 50
MAX_ABSENCE_DAYS = 366
MAX_TODAY_APPOINTMENTS = 500
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
DASH = "\u2013"
"""The en dash of "10:00-10:30" in messages."""
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
    if WALL_TIME.match(value) is None:
        raise PydanticCustomError(
            "wall_time", "Write times as HH:MM, from 00:00 to 24:00 (the end of the day)."
        )
    return value


WallTime = Annotated[
    str, Field(max_length=5, examples=["08:30", "24:00"]), AfterValidator(_check_wall_time)
]


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


def weekday_names(numbers: Iterable[int]) -> str:
    """ "Monday", "Monday and Wednesday", "Monday to Friday", "Monday, Wednesday and Friday"."""
    days = sorted(set(numbers))
    names = [list(Weekday)[d].value.capitalize() for d in days]
    if len(days) > 2 and days == list(range(days[0], days[-1] + 1)):
        return f"{names[0]} to {names[-1]}"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


class AppointmentStatus(StrEnum):
    booked = "booked"
    arrived = "arrived"
    """Checked in at the desk."""
    in_progress = "in_progress"
    """The physician has started the visit."""
    completed = "completed"
    """Done: the physician has finished the visit."""
    no_show = "no_show"
    cancelled = "cancelled"


class CalendarSpan(StrEnum):
    day = "day"
    week = "week"
    """The ISO week (Monday to Sunday) that contains the given day."""


class WorkingPeriod(Model):
    """One block of working hours (or one break) on a weekday, in the clinic's wall-clock
    time; it ends after it starts, on the same day ("24:00" at the latest). Work past
    midnight is two periods: to 24:00, and from 00:00 the next day (they are joined).

    A wall time that a DST change skips maps to the instant of the change; one it
    repeats maps to its first occurrence.
    """

    weekday: Weekday
    start: WallTime
    end: WallTime


def period_problems(
    periods: Sequence[WorkingPeriod], breaks: bool = False
) -> tuple[str, list[str]]:
    """What is wrong with a week of periods: (error type, one sentence per distinct
    problem); the same inverted hours on five weekdays are one problem, named once with
    their days. Overlaps are looked for only among periods that are in order."""
    inverted: dict[tuple[str, str], list[int]] = {}
    for p in periods:
        if wall_minutes(p.end) <= wall_minutes(p.start):
            inverted.setdefault((p.start, p.end), []).append(p.weekday.number)
    what = "The break" if breaks else "The working hours"
    problems = []
    for (start, end), days in inverted.items():
        on = f"{what} {start}{DASH}{end} on {weekday_names(days)}"
        if start == end:
            problems.append(f"{on} {'starts and ends' if breaks else 'start and end'} at once.")
        else:
            problems.append(
                f"{on} {'ends before it starts' if breaks else 'end before they start'} "
                "(for work past midnight, end at 24:00 and go on from 00:00 the next day)."
            )
    if problems:
        return "end_before_start", problems
    overlaps: dict[tuple[str, str, str, str], list[int]] = {}
    reach: WorkingPeriod | None = None  # the period of the day that ends last so far
    for p in sorted(periods, key=lambda p: (p.weekday.number, wall_minutes(p.start))):
        if reach is not None and reach.weekday == p.weekday:
            if wall_minutes(p.start) < wall_minutes(reach.end):
                key = (reach.start, reach.end, p.start, p.end)
                overlaps.setdefault(key, []).append(p.weekday.number)
            if wall_minutes(p.end) <= wall_minutes(reach.end):
                continue
        reach = p
    what = "Breaks" if breaks else "Working hours"
    return "overlapping_periods", [
        f"{what} on {weekday_names(days)} overlap: {a}{DASH}{b} and {c}{DASH}{d}."
        for (a, b, c, d), days in overlaps.items()
    ]


def _week_checker(breaks: bool) -> Callable[[list[WorkingPeriod]], list[WorkingPeriod]]:
    def check(periods: list[WorkingPeriod]) -> list[WorkingPeriod]:
        kind, problems = period_problems(periods, breaks)
        if problems:
            raise PydanticCustomError(kind, " ".join(problems))
        return periods

    return check


WeeklyHours = Annotated[
    list[WorkingPeriod],
    Field(max_length=MAX_PERIODS_PER_WEEK),
    AfterValidator(_week_checker(breaks=False)),
]
WeeklyBreaks = Annotated[
    list[WorkingPeriod],
    Field(max_length=MAX_PERIODS_PER_WEEK),
    AfterValidator(_week_checker(breaks=True)),
]


class AbsenceKind(StrEnum):
    holiday = "holiday"
    leave = "leave"
    training = "training"
    other = "other"


class NewAbsence(Model):
    """An absence: whole days in the clinic's calendar (`first_day`, and `last_day` if it
    lasts more than one day), or from one instant to another (`start`, `end`)."""

    kind: AbsenceKind = AbsenceKind.leave
    first_day: date | None = None
    last_day: date | None = Field(default=None, description="Default: the first day.")
    start: UtcDatetime | None = None
    end: UtcDatetime | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        days = self.first_day is not None or self.last_day is not None
        times = self.start is not None or self.end is not None
        if days and times:
            raise PydanticCustomError(
                "absence_form", "Give an absence either as days or as times, not both."
            )
        if not days and not times:
            raise PydanticCustomError(
                "absence_form", "Give the absence's first day, or its start and end times."
            )
        if days:
            if self.first_day is None:
                raise PydanticCustomError("absence_form", "Give the absence's first day.")
            if self.last_day is not None and self.last_day < self.first_day:
                raise PydanticCustomError(
                    "absence_order", "The absence's last day is before its first day."
                )
        else:
            if self.start is None or self.end is None:
                raise PydanticCustomError(
                    "absence_form", "An absence by time needs both a start and an end."
                )
            if self.end <= self.start:
                raise PydanticCustomError("absence_order", "The absence must end after it starts.")
        return self


class Absence(Model):
    absence_id: str
    kind: AbsenceKind
    first_day: date | None = Field(description="Whole-day absences: the first day.")
    last_day: date | None = Field(description="Whole-day absences: the last day.")
    start: datetime = Field(description="When it begins (UTC; whole days: local midnight).")
    end: datetime


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
    arrived_at: datetime | None = Field(default=None, description="When the desk checked in.")
    started_at: datetime | None = Field(default=None, description="When the visit started.")
    finished_at: datetime | None = Field(
        default=None, description="When the visit was finished, or the no-show recorded."
    )


class Availability(Model):
    physician_id: str
    time_zone: str
    weekly: list[WorkingPeriod]
    breaks: list[WorkingPeriod] = Field(default=[], description="Weekly breaks (e.g. lunch).")
    days_off: list[date] = Field(description="Days off from today on.")
    absences: list[Absence] = Field(default=[], description="Absences that have not ended.")
    affected: list[AppointmentSlot] = Field(
        default=[],
        description="After a change: booked future appointments that no longer fit the "
        "working time (hours, breaks, days off, absences); they stay booked: rebook or "
        "cancel them.",
    )


class SetWorkingHoursRequest(Model):
    """Replaces the physician's weekly working hours."""

    physician_id: Id
    weekly: WeeklyHours


class SetBreaksRequest(Model):
    """Replaces the physician's weekly breaks (taken out of the working hours)."""

    physician_id: Id
    breaks: WeeklyBreaks


class SetDaysOffRequest(Model):
    physician_id: Id
    add: list[date] = Field(default=[], max_length=MAX_BOOKING_DAYS_AHEAD)
    remove: list[date] = Field(default=[], max_length=MAX_BOOKING_DAYS_AHEAD, validate_default=True)

    @field_validator("remove")
    @classmethod
    def _something(cls, remove: list[date], info: ValidationInfo) -> list[date]:
        add = info.data.get("add")
        if add is None:  # `add` itself was refused: that is the problem to report
            return remove
        if not add and not remove:
            raise PydanticCustomError("nothing_to_change", "Give days to add or to remove.")
        both = sorted(set(add) & set(remove))
        if both:
            raise PydanticCustomError(
                "added_and_removed",
                f"A day cannot be both added and removed ({', '.join(map(str, both))}).",
            )
        return remove


class ChangeAbsencesRequest(Model):
    physician_id: Id
    add: list[NewAbsence] = Field(default=[], max_length=MAX_ABSENCES_PER_CHANGE)
    remove: list[Id] = Field(
        default=[],
        max_length=MAX_ABSENCES_PER_CHANGE,
        validate_default=True,
        description="Absence ids.",
    )

    @field_validator("remove")
    @classmethod
    def _something(cls, remove: list[str], info: ValidationInfo) -> list[str]:
        add = info.data.get("add")
        if add is not None and not add and not remove:
            raise PydanticCustomError("nothing_to_change", "Give absences to add or to remove.")
        return remove


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


class AppointmentRequest(Model):
    appointment_id: Id


class CalendarRequest(Model):
    physician_id: Id | None = Field(
        default=None, description="Required for receptionists; physicians: their own."
    )
    day: date
    span: CalendarSpan = CalendarSpan.day
    include_cancelled: bool = Field(
        default=True,
        description="Cancelled appointments are shown (with their status and reason) "
        "unless this is false.",
    )


class Calendar(Model):
    physician_id: str
    time_zone: str
    span: CalendarSpan
    first_day: date
    last_day: date
    start: datetime
    end: datetime
    working: list[TimeRange] = Field(
        description="Working time in the span (UTC instants): hours without breaks, days "
        "off and absences, touching periods joined (also across midnight)."
    )
    days_off: list[date] = Field(default=[], description="Days off in the span.")
    absences: list[Absence] = Field(default=[], description="Absences overlapping the span.")
    appointments: list[Appointment]


class TodayRequest(Model):
    physician_id: Id | None = Field(default=None, description="One physician; default: all.")


class Today(Model):
    """Today's appointments in the clinic's time zone, by start time, every status."""

    day: date
    time_zone: str
    start: datetime
    end: datetime
    appointments: list[Appointment]
    truncated: bool = Field(description=f"More than {MAX_TODAY_APPOINTMENTS} appointments.")


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

    @field_validator("last_day")
    @classmethod
    def _range(cls, last_day: date, info: ValidationInfo) -> date:
        first_day = info.data.get("first_day")
        if first_day is None:
            return last_day
        if last_day < first_day:
            raise PydanticCustomError("range_order", "The last day is before the first day.")
        if (last_day - first_day).days >= MAX_SLOT_RANGE_DAYS:
            raise PydanticCustomError(
                "range_length", f"Search at most {MAX_SLOT_RANGE_DAYS} days at a time."
            )
        return last_day


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


class AppointmentCheckedIn(AppointmentEvent):
    pass


class AppointmentStarted(AppointmentEvent):
    pass


class AppointmentCompleted(AppointmentEvent):
    pass


class AppointmentNoShow(AppointmentEvent):
    pass


class AvailabilityChanged(Model):
    """A physician's working time changed (hours, breaks, days off or absences)."""

    physician_id: str
    by: str | None = Field(description="The staff member who acted.")


APPOINTMENTS_TABLE = "appointments"

SET_WORKING_HOURS = RpcMethod(
    SERVICE,
    "scheduling.set_working_hours",
    SetWorkingHoursRequest,
    Availability,
    write=True,
    roles=ROSTER,
    route=HttpRoute(
        "PUT",
        "/physicians/{physician_id}/working-hours",
        summary="Replace the weekly working hours (physicians: their own).",
    ),
)
SET_BREAKS = RpcMethod(
    SERVICE,
    "scheduling.set_breaks",
    SetBreaksRequest,
    Availability,
    write=True,
    roles=ROSTER,
    route=HttpRoute(
        "PUT",
        "/physicians/{physician_id}/breaks",
        summary="Replace the weekly breaks, e.g. lunch (physicians: their own).",
    ),
)
SET_DAYS_OFF = RpcMethod(
    SERVICE,
    "scheduling.set_days_off",
    SetDaysOffRequest,
    Availability,
    write=True,
    roles=ROSTER,
    route=HttpRoute("POST", "/physicians/{physician_id}/days-off"),
)
CHANGE_ABSENCES = RpcMethod(
    SERVICE,
    "scheduling.change_absences",
    ChangeAbsencesRequest,
    Availability,
    write=True,
    roles=ROSTER,
    route=HttpRoute(
        "POST",
        "/physicians/{physician_id}/absences",
        summary="Add absences (holidays, leave: whole days or times) and remove others by id.",
    ),
)
GET_AVAILABILITY = RpcMethod(
    SERVICE,
    "scheduling.availability",
    AvailabilityRequest,
    Availability,
    roles=ROSTER,
    route=HttpRoute("GET", "/physicians/{physician_id}/availability"),
)
BOOK = RpcMethod(
    SERVICE,
    "scheduling.book",
    BookRequest,
    Appointment,
    write=True,
    roles=DESK,
    route=HttpRoute(
        "POST",
        "/appointments",
        status=201,
        summary="Book (receptionists). 409 names the appointment in the way; 422 says what "
        "is wrong.",
    ),
)
RESCHEDULE = RpcMethod(
    SERVICE,
    "scheduling.reschedule",
    RescheduleRequest,
    Appointment,
    write=True,
    roles=DESK,
    route=HttpRoute("POST", "/appointments/{appointment_id}/reschedule"),
)
CANCEL = RpcMethod(
    SERVICE,
    "scheduling.cancel",
    CancelRequest,
    Appointment,
    write=True,
    roles=DESK,
    route=HttpRoute("POST", "/appointments/{appointment_id}/cancel"),
)
CHECK_IN = RpcMethod(
    SERVICE,
    "scheduling.check_in",
    AppointmentRequest,
    Appointment,
    write=True,
    roles=DESK,
    route=HttpRoute(
        "POST",
        "/appointments/{appointment_id}/check-in",
        summary="The patient has arrived (on the appointment's day; also after a no-show).",
    ),
)
MARK_NO_SHOW = RpcMethod(
    SERVICE,
    "scheduling.no_show",
    AppointmentRequest,
    Appointment,
    write=True,
    roles=DESK,
    route=HttpRoute(
        "POST",
        "/appointments/{appointment_id}/no-show",
        summary="The patient did not come (a booked appointment whose time has come).",
    ),
)
START_VISIT = RpcMethod(
    SERVICE,
    "scheduling.start",
    AppointmentRequest,
    Appointment,
    write=True,
    roles=PHYSICIANS,
    route=HttpRoute(
        "POST",
        "/appointments/{appointment_id}/start",
        summary="The physician starts the visit (their own appointments, from its day on).",
    ),
)
FINISH_VISIT = RpcMethod(
    SERVICE,
    "scheduling.finish",
    AppointmentRequest,
    Appointment,
    write=True,
    roles=PHYSICIANS,
    route=HttpRoute(
        "POST",
        "/appointments/{appointment_id}/finish",
        summary="The physician finishes a visit in progress: it is then completed.",
    ),
)
GET_APPOINTMENT = RpcMethod(
    SERVICE,
    "scheduling.appointment",
    AppointmentRequest,
    Appointment,
    roles=DESK_AND_PHYSICIANS,
    route=HttpRoute("GET", "/appointments/{appointment_id}", patient_data=True),
    grant=Grant(decrypt=Decrypt(tables=frozenset({APPOINTMENTS_TABLE}), row_id="appointment_id")),
)
CALENDAR = RpcMethod(
    SERVICE,
    "scheduling.calendar",
    CalendarRequest,
    Calendar,
    roles=DESK_AND_PHYSICIANS,
    route=HttpRoute(
        "GET",
        "/physicians/{physician_id}/calendar",
        query=("day", "span", "include_cancelled"),
        patient_data=True,
        summary="A day or an ISO week (Monday to Sunday) of appointments, with reasons for visit.",
    ),
    grant=Grant(decrypt=Decrypt(tables=frozenset({APPOINTMENTS_TABLE}), physician="physician_id")),
)
TODAY = RpcMethod(
    SERVICE,
    "scheduling.today",
    TodayRequest,
    Today,
    roles=DESK,
    route=HttpRoute(
        "GET",
        "/appointments/today",
        query=("physician_id",),
        patient_data=True,
        summary="Today's appointments (clinic time) of every physician, or of one, with "
        "statuses and reasons. Physicians: their own calendar of the day.",
    ),
    grant=Grant(
        decrypt=Decrypt(
            tables=frozenset({APPOINTMENTS_TABLE}),
            physician="physician_id",
            max_rows=MAX_TODAY_APPOINTMENTS,
        )
    ),
)
"""Front desk only: without `physician_id` the keyvault cannot bind the rows to one
physician, which a receptionist's signature may (they see every calendar); a physician's
signature for it would let a taken-over scheduling service read others' reasons."""
FREE_SLOTS = RpcMethod(
    SERVICE,
    "scheduling.free_slots",
    FreeSlotsRequest,
    FreeSlots,
    roles=DESK_AND_PHYSICIANS,
    route=HttpRoute(
        "GET",
        "/physicians/{physician_id}/free-slots",
        query=("first_day", "last_day", "duration_minutes", "limit"),
    ),
)

_PUBLISHER = frozenset({SERVICE})
APPOINTMENT_BOOKED = EventType(
    "scheduling.appointment.booked", AppointmentBooked, publishers=_PUBLISHER
)
APPOINTMENT_RESCHEDULED = EventType(
    "scheduling.appointment.rescheduled", AppointmentRescheduled, publishers=_PUBLISHER
)
APPOINTMENT_CANCELLED = EventType(
    "scheduling.appointment.cancelled", AppointmentCancelled, publishers=_PUBLISHER
)
APPOINTMENT_CHECKED_IN = EventType(
    "scheduling.appointment.checked_in", AppointmentCheckedIn, publishers=_PUBLISHER
)
APPOINTMENT_STARTED = EventType(
    "scheduling.appointment.started", AppointmentStarted, publishers=_PUBLISHER
)
APPOINTMENT_COMPLETED = EventType(
    "scheduling.appointment.completed", AppointmentCompleted, publishers=_PUBLISHER
)
APPOINTMENT_NO_SHOW = EventType(
    "scheduling.appointment.no_show", AppointmentNoShow, publishers=_PUBLISHER
)
AVAILABILITY_CHANGED = EventType(
    "scheduling.availability.changed", AvailabilityChanged, publishers=_PUBLISHER
)
CALENDAR_EVENTS: tuple[EventType[Any], ...] = (
    APPOINTMENT_BOOKED,
    APPOINTMENT_RESCHEDULED,
    APPOINTMENT_CANCELLED,
    APPOINTMENT_CHECKED_IN,
    APPOINTMENT_STARTED,
    APPOINTMENT_COMPLETED,
    APPOINTMENT_NO_SHOW,
    AVAILABILITY_CHANGED,
)
"""Every change to a calendar, each as soon as its write commits (outbox): the gateway
pushes them (ids and times only) to the physician and to the connected front desk."""


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
    SERVICE,
    "scheduling.care_relationship",
    CareRelationshipRequest,
    CareRelationship,
    callers=frozenset({"records"}),
)
"""Service to service (records' and the keyvault's access checks): ids in, a yes or no out."""
