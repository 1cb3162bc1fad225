"""The FHIR reads (`contracts.fhir`).

Each FHIR read is its own signed operation, served by the read that it stands for (same
checks, decryption under its own grant, audit); the gateway maps the reply.
"""

from __future__ import annotations

from contracts import fhir
from contracts import scheduling as sched
from mesh.context import CallContext
from services.scheduling.appointments import get_appointment
from services.scheduling.calendars import calendar


async def fhir_appointment_search(req: fhir.AppointmentSearch, ctx: CallContext) -> sched.Calendar:
    """`Appointment?practitioner=&date=`: that physician's day, cancelled ones included."""
    return await calendar(sched.CalendarRequest(physician_id=req.practitioner, day=req.date), ctx)


async def fhir_appointment(req: fhir.AppointmentRead, ctx: CallContext) -> sched.Appointment:
    return await get_appointment(sched.AppointmentRequest(appointment_id=req.appointment_id), ctx)
