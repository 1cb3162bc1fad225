"""A page of a FHIR bulk export (`contracts.fhirexport`): the patients' appointments."""

from __future__ import annotations

from contracts import fhirexport as fx
from mesh.context import CallContext, runtime_of
from mesh.errors import Conflict
from services.scheduling import steps, store

EXPORT_PAGE_APPOINTMENTS = 4000
"""At most this many appointments per export page (one keyvault call)."""


async def export_appointments(
    req: fx.ExportAppointmentsRequest, ctx: CallContext
) -> fx.ExportAppointments:
    """One page of a bulk export (records asks; records audits each patient): reasons
    decrypted under the job's export session, which the keyvault alone opened on the
    two administrators' signatures (`contracts.fhirexport.EXPORT_DECRYPT`)."""
    runtime = runtime_of(ctx)
    rows = await store.appointments_of_patients(
        runtime.db, req.patient_ids, req.since, EXPORT_PAGE_APPOINTMENTS + 1
    )
    if len(rows) > EXPORT_PAGE_APPOINTMENTS:
        raise Conflict(
            f"these patients have more than {EXPORT_PAGE_APPOINTMENTS} appointments: "
            "export them in smaller pages"
        )
    if not rows:
        return fx.ExportAppointments(appointments=[])
    reply = await runtime.rpc.call(
        fx.EXPORT_DECRYPT,
        fx.ExportDecryptRequest(
            job_id=req.job_id, page_first=req.page_first, rows=steps.reason_batch(rows).rows
        ),
    )
    return fx.ExportAppointments(
        appointments=[
            steps.appointment(r, None if i in reply.failed else p)
            for i, (r, p) in enumerate(zip(rows, reply.rows, strict=True))
        ]
    )
