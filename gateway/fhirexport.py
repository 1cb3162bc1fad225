"""FHIR Bulk Data `$export` routes at the gateway (`contracts.fhirexport`).

Kick-off and approval answer 202 with `Content-Location` (the status URL); the status
answers 202 with `X-Progress` until the job is complete, then the manifest; an output
file (one per resource type and page) is the sealed box as stored
(`application/octet-stream`): the gateway never holds a key that opens it. Every
request is signed by an administrator and relayed like any FHIR interaction; errors
are OperationOutcomes (`gateway.errors`).
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request, Response

from contracts import fhirexport as fx
from contracts.base import RpcMethod
from contracts.fhir import FHIR_PREFIX
from gateway.deps import forward, signed
from gateway.errors import ApiError
from gateway.fhir import FhirResponse
from gateway.routing import signed_request
from gateway.security import Caller

ENCRYPTION = "urn:medihaven:export:x25519-sealedbox"
"""How each output file is sealed: libsodium's crypto_box_seal to the recipient key."""


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + FHIR_PREFIX


def _outcome(text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": text}],
    }


def _accepted(request: Request, job: fx.ExportJob) -> Response:
    response = FhirResponse(_outcome(job.progress), status_code=202)
    response.headers["Content-Location"] = f"{_base(request)}/$export-status/{job.job_id}"
    response.headers["X-Progress"] = job.progress
    return response


def manifest(request: Request, job: fx.ExportJob) -> dict[str, Any]:
    """The Bulk Data manifest; `extension` says how the files are sealed, and to whom."""
    kind = f"Group/{job.group_id}" if job.group_id else "Patient"
    base = _base(request)
    query = {}
    if list(job.types) != list(fx.EXPORT_TYPES):
        query["_type"] = ",".join(job.types)
    if job.since is not None:
        query["_since"] = job.since.isoformat()
    asked = f"{base}/{kind}/$export" + (f"?{urlencode(query)}" if query else "")
    return {
        "transactionTime": job.requested_at.isoformat(),
        "request": asked,
        "requiresAccessToken": True,
        "output": [
            {
                "type": o.type,
                "url": f"{base}/$export-file/{job.job_id}/{o.type}/{o.part}",
                "count": o.count,
            }
            for o in job.output
        ],
        "error": [],
        "extension": {
            "encryption": ENCRYPTION,
            "recipientPublicKey": job.recipient_public_key,
            "requestedBy": job.requested_by,
            "approvedBy": job.approved_by,
        },
    }


def _relay(method: RpcMethod[Any, Any]) -> Any:
    async def call(request: Request, who: Caller) -> Any:
        return await forward(request, who, method, signed_request(method, who))

    return call


def router() -> APIRouter:
    """Kick-offs, approval, status and files (included before the FHIR read routes)."""
    api = APIRouter(tags=["fhir"])
    kickoff = _relay(fx.PATIENT_EXPORT)
    group_kickoff = _relay(fx.GROUP_EXPORT)
    approve = _relay(fx.APPROVE_EXPORT)
    status = _relay(fx.EXPORT_STATUS)
    fetch = _relay(fx.EXPORT_FILE)

    @api.post("/Patient/$export", include_in_schema=False)
    async def patient_export(request: Request, who: Caller = Depends(signed())) -> Response:
        return _accepted(request, await kickoff(request, who))

    @api.post("/Group/{group_id}/$export", include_in_schema=False)
    async def group_export(request: Request, who: Caller = Depends(signed())) -> Response:
        return _accepted(request, await group_kickoff(request, who))

    @api.post("/$export-approval/{job_id}", include_in_schema=False)
    async def export_approval(request: Request, who: Caller = Depends(signed())) -> Response:
        return _accepted(request, await approve(request, who))

    @api.get("/$export-status/{job_id}", include_in_schema=False)
    async def export_status(request: Request, who: Caller = Depends(signed())) -> Response:
        job: fx.ExportJob = await status(request, who)
        if job.state is fx.ExportState.failed:
            raise ApiError(422, f"the export failed: {job.error or 'no reason given'}")
        if job.state is not fx.ExportState.complete:
            return _accepted(request, job)
        body = json.dumps(manifest(request, job), separators=(",", ":"))
        return Response(body.encode(), media_type="application/json")

    @api.get("/$export-file/{job_id}/{resource_type}/{part}", include_in_schema=False)
    async def export_file(request: Request, who: Caller = Depends(signed())) -> Response:
        found: fx.ExportFile = await fetch(request, who)
        return Response(base64.b64decode(found.sealed), media_type="application/octet-stream")

    return api
