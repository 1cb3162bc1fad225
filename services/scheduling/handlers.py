"""RPC handlers of the scheduling service: one registration per method of contracts.scheduling.

The handlers themselves live by subject: `availability` (working hours, breaks, days off,
absences), `appointments` (book, reschedule, cancel, read), `visits` (the appointment's
day), `calendars` (a physician's days, the front desk's day, free slots, care
relationships), `fhir` (the FHIR reads, served by the reads above), `export` (a page of a
bulk export); the steps they share are in `steps`.

No double booking, across replicas: every change to a physician's calendar locks that
physician's row (`SELECT ... FOR UPDATE`) in the write's transaction, then checks working
time and overlaps and writes, so the database lets one booking at a time decide. Checks
that need other services (the caller's signature, physician, patient) and the keyvault
encryption run concurrently before the lock, so the lock is held only for SQL.

Working time is one plan (`timeplan.Plan`: hours, breaks, days off, absences) read by
`store.plan`; booking (`timeplan.bookable`), the slot finder (`timeplan.free_slots`),
calendars and the "affected appointments" of a roster change all join it the same way.

An appointment's day (check-in, start, finish, no-show) goes through `visits._transition`:
one method per step, each with its roles in the contract, each audited and published.

Reasons for visit are keyvault ciphertext at rest: one ENCRYPT per write that has text,
one DECRYPT batch per read, which the keyvault serves only on the reader's signature.
Every method checks the caller's forwarded signature: writes and reads that decrypt
nothing here (`access.require_signed`), reads that decrypt through the keyvault's gate.
"""

from __future__ import annotations

from contracts import fhir
from contracts import fhirexport as fx
from contracts import scheduling as sched
from mesh.rpc import RpcRouter
from services.scheduling import appointments, availability, calendars, export, visits
from services.scheduling import fhir as fhir_views

router = RpcRouter(sched.SERVICE)

router.handler(fx.EXPORT_APPOINTMENTS)(export.export_appointments)

router.handler(sched.SET_WORKING_HOURS)(availability.set_working_hours)
router.handler(sched.SET_BREAKS)(availability.set_breaks)
router.handler(sched.SET_DAYS_OFF)(availability.set_days_off)
router.handler(sched.CHANGE_ABSENCES)(availability.change_absences)
router.handler(sched.GET_AVAILABILITY)(availability.availability)

router.handler(sched.BOOK)(appointments.book)
router.handler(sched.RESCHEDULE)(appointments.reschedule)
router.handler(sched.CANCEL)(appointments.cancel)

router.handler(sched.CHECK_IN)(visits.check_in)
router.handler(sched.MARK_NO_SHOW)(visits.no_show)
router.handler(sched.START_VISIT)(visits.start_visit)
router.handler(sched.FINISH_VISIT)(visits.finish_visit)
router.handler(sched.GET_APPOINTMENT)(appointments.get_appointment)

router.handler(sched.CALENDAR)(calendars.calendar)
router.handler(sched.TODAY)(calendars.today)
router.handler(sched.FREE_SLOTS)(calendars.free_slots)
router.handler(sched.CARE_RELATIONSHIP)(calendars.care_relationship)

router.handler(fhir.APPOINTMENT_SEARCH)(fhir_views.fhir_appointment_search)
router.handler(fhir.APPOINTMENT_READ)(fhir_views.fhir_appointment)
