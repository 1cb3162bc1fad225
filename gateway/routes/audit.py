"""The audit log, for administrators: queries, a patient's access history, FHIR export,
and verification of the hash chain."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import PlainTextResponse

from contracts import audit
from contracts.audit import AuditAction, AuditOutcome, SortField
from gateway.deps import forward, relay, signed
from gateway.security import Caller

router = APIRouter(prefix="/audit", tags=["audit"])
caller = Depends(signed())


def _query(
    recorded_from: datetime | None = Query(default=None),
    recorded_to: datetime | None = Query(default=None),
    account_id: str | None = Query(default=None, max_length=64),
    patient_id: str | None = Query(default=None, max_length=64),
    action: AuditAction | None = Query(default=None),
    outcome: AuditOutcome | None = Query(default=None),
    type: str | None = Query(default=None, max_length=100),
    sort: SortField = Query(default=SortField.seq),
    descending: bool = Query(default=False),
    offset: int = Query(default=0, ge=0),
    limit: int = Query(default=100, ge=1, le=audit.MAX_PAGE),
) -> audit.AuditQuery:
    return audit.AuditQuery(
        recorded_from=recorded_from,
        recorded_to=recorded_to,
        account_id=account_id,
        patient_id=patient_id,
        action=action,
        outcome=outcome,
        type=type,
        sort=sort,
        descending=descending,
        offset=offset,
        limit=limit,
    )


@router.get("/events", response_model=audit.AuditPage)
async def events(
    request: Request, query: audit.AuditQuery = Depends(_query), who: Caller = caller
) -> Response:
    return await relay(request, who, audit.QUERY, query)


@router.get("/patients/{patient_id}", response_model=audit.AuditPage)
async def patient_history(
    patient_id: str,
    request: Request,
    offset: int = Query(default=0, ge=0),
    limit: int = Query(default=100, ge=1, le=audit.MAX_PAGE),
    who: Caller = caller,
) -> Response:
    """Who read or changed this patient's record, and when."""
    return await relay(
        request,
        who,
        audit.PATIENT_HISTORY,
        audit.PatientHistoryRequest(patient_id=patient_id, offset=offset, limit=limit),
    )


@router.get("/export", response_class=PlainTextResponse)
async def export(
    request: Request, query: audit.AuditQuery = Depends(_query), who: Caller = caller
) -> PlainTextResponse:
    """FHIR AuditEvent resources as NDJSON (one page; `X-Next-Offset` names the next)."""
    reply = await forward(request, who, audit.EXPORT, query)
    headers = {} if reply.next_offset is None else {"X-Next-Offset": str(reply.next_offset)}
    return PlainTextResponse(reply.ndjson, media_type="application/fhir+ndjson", headers=headers)


@router.get("/verify", response_model=audit.VerifyReply)
async def verify(request: Request, who: Caller = caller) -> Response:
    return await relay(request, who, audit.VERIFY, audit.VerifyRequest())
