"""The audit log's FHIR export (NDJSON, not JSON): the other audit routes are declared in
`contracts.audit` and made by `gateway.routing`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse

from contracts import audit
from gateway.deps import forward, signed
from gateway.routing import signed_request
from gateway.security import Caller

router = APIRouter(tags=["audit"])
EXPORT = audit.EXPORT.route
assert EXPORT is not None


@router.get(EXPORT.path, response_class=PlainTextResponse)
async def export(
    request: Request,
    query: Annotated[audit.AuditQuery, Query()],
    who: Caller = Depends(signed()),
) -> PlainTextResponse:
    """FHIR AuditEvent resources as NDJSON (one page; `X-Next-Offset` names the next)."""
    reply = await forward(request, who, audit.EXPORT, signed_request(audit.EXPORT, who))
    headers = {} if reply.next_offset is None else {"X-Next-Offset": str(reply.next_offset)}
    return PlainTextResponse(reply.ndjson, media_type="application/fhir+ndjson", headers=headers)
