"""Physician calendars: availability, appointments, calendars and free slots.

Times are ISO 8601 with an offset (answered in UTC); working hours and calendar days are
in the clinic's time zone. Calendars and single appointments carry reasons for visit, so
they draw from the stricter patient-data bucket. Who may call each
route is in the gateway's one route table, `gateway/access.py`.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from contracts import scheduling as sched
from gateway.deps import relay, rpc_request, signed
from gateway.security import Caller

router = APIRouter(tags=["scheduling"])
caller = Depends(signed())
reader = Depends(signed(patient_data=True))
PhysicianId = Annotated[str, Path(pattern=sched.ID_PATTERN)]
AppointmentId = Annotated[str, Path(pattern=sched.ID_PATTERN)]
M = TypeVar("M", bound=BaseModel)


class WorkingHours(BaseModel):
    weekly: list[sched.WorkingPeriod] = Field(max_length=sched.MAX_PERIODS_PER_WEEK)


class DaysOff(BaseModel):
    add: list[date] = Field(default=[], max_length=sched.MAX_BOOKING_DAYS_AHEAD)
    remove: list[date] = Field(default=[], max_length=sched.MAX_BOOKING_DAYS_AHEAD)


class NewTime(BaseModel):
    start: sched.UtcDatetime
    end: sched.UtcDatetime


class Cancellation(BaseModel):
    reason: sched.Reason


class OutcomeChange(BaseModel):
    outcome: sched.Outcome


@router.put("/physicians/{physician_id}/working-hours", response_model=sched.Availability)
async def set_working_hours(
    physician_id: PhysicianId, body: WorkingHours, request: Request, who: Caller = caller
) -> Response:
    """Replace the weekly working hours (physicians: their own)."""
    return await relay(
        request,
        who,
        sched.SET_WORKING_HOURS,
        rpc_request(sched.SetWorkingHoursRequest, physician_id=physician_id, weekly=body.weekly),
    )


@router.post("/physicians/{physician_id}/days-off", response_model=sched.Availability)
async def set_days_off(
    physician_id: PhysicianId, body: DaysOff, request: Request, who: Caller = caller
) -> Response:
    return await relay(
        request,
        who,
        sched.SET_DAYS_OFF,
        rpc_request(
            sched.SetDaysOffRequest, physician_id=physician_id, add=body.add, remove=body.remove
        ),
    )


@router.get("/physicians/{physician_id}/availability", response_model=sched.Availability)
async def availability(
    physician_id: PhysicianId, request: Request, who: Caller = caller
) -> Response:
    return await relay(
        request,
        who,
        sched.GET_AVAILABILITY,
        rpc_request(sched.AvailabilityRequest, physician_id=physician_id),
    )


@router.get("/physicians/{physician_id}/calendar", response_model=sched.Calendar)
async def calendar(
    physician_id: PhysicianId,
    request: Request,
    day: date = Query(),
    span: sched.CalendarSpan = Query(default=sched.CalendarSpan.day),
    include_cancelled: bool = Query(default=False),
    who: Caller = reader,
) -> Response:
    """A day or an ISO week (Monday to Sunday) of appointments, with reasons for visit."""
    return await relay(
        request,
        who,
        sched.CALENDAR,
        rpc_request(
            sched.CalendarRequest,
            physician_id=physician_id,
            day=day,
            span=span,
            include_cancelled=include_cancelled,
        ),
    )


@router.get("/physicians/{physician_id}/free-slots", response_model=sched.FreeSlots)
async def free_slots(
    physician_id: PhysicianId,
    request: Request,
    first_day: date = Query(),
    last_day: date = Query(),
    duration_minutes: int = Query(
        default=30, ge=sched.MIN_APPOINTMENT_MINUTES, le=sched.MAX_APPOINTMENT_MINUTES
    ),
    limit: int = Query(default=200, ge=1, le=1000),
    who: Caller = caller,
) -> Response:
    return await relay(
        request,
        who,
        sched.FREE_SLOTS,
        rpc_request(
            sched.FreeSlotsRequest,
            physician_id=physician_id,
            first_day=first_day,
            last_day=last_day,
            duration_minutes=duration_minutes,
            limit=limit,
        ),
    )


@router.post("/appointments", response_model=sched.Appointment, status_code=201)
async def book(body: sched.BookRequest, request: Request, who: Caller = caller) -> Response:
    """Book (receptionists). 409 names the appointment in the way; 422 says what is wrong."""
    return await relay(request, who, sched.BOOK, body)


@router.get("/appointments/{appointment_id}", response_model=sched.Appointment)
async def appointment(
    appointment_id: AppointmentId, request: Request, who: Caller = reader
) -> Response:
    return await relay(
        request,
        who,
        sched.GET_APPOINTMENT,
        rpc_request(sched.AppointmentRequest, appointment_id=appointment_id),
    )


@router.post("/appointments/{appointment_id}/reschedule", response_model=sched.Appointment)
async def reschedule(
    appointment_id: AppointmentId, body: NewTime, request: Request, who: Caller = caller
) -> Response:
    return await relay(
        request,
        who,
        sched.RESCHEDULE,
        rpc_request(
            sched.RescheduleRequest, appointment_id=appointment_id, start=body.start, end=body.end
        ),
    )


@router.post("/appointments/{appointment_id}/cancel", response_model=sched.Appointment)
async def cancel(
    appointment_id: AppointmentId, body: Cancellation, request: Request, who: Caller = caller
) -> Response:
    return await relay(
        request,
        who,
        sched.CANCEL,
        rpc_request(sched.CancelRequest, appointment_id=appointment_id, reason=body.reason),
    )


@router.post("/appointments/{appointment_id}/outcome", response_model=sched.Appointment)
async def record_outcome(
    appointment_id: AppointmentId, body: OutcomeChange, request: Request, who: Caller = caller
) -> Response:
    """Completed or no-show, once the appointment's time has come."""
    return await relay(
        request,
        who,
        sched.RECORD_OUTCOME,
        rpc_request(
            sched.RecordOutcomeRequest, appointment_id=appointment_id, outcome=body.outcome
        ),
    )
