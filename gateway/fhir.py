"""FHIR R4 at `/fhir/R4`: the routes of `contracts.fhir`, and the CapabilityStatement.

Each route is signed and checked like every API route (`gateway.deps.signed`: signature,
replay, rate limits, the stricter patient-data bucket), relayed to the service that owns
the data (which checks the signature again, the role, the care relationship, decrypts
through the keyvault under the route's grant and audits, failing closed), and its reply,
the service's own contract model, is mapped to FHIR here with `mesh.fhirmap` and wrapped
with `mesh.fhir`. Errors are OperationOutcomes (`gateway.errors`). `metadata` is public,
as FHIR clients expect, and costs a token of the anonymous bucket.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from contracts import audit as aud
from contracts import auth as au
from contracts import fhir as f
from contracts import fhirexport as fx
from contracts import records as rec
from contracts import scheduling as sch
from contracts.base import RpcMethod
from gateway.deps import forward, security, signed
from gateway.errors import ApiError
from gateway.routing import signed_request
from gateway.security import Caller
from mesh import fhirmap
from mesh.fhir import Entry, Hit, collection, searchset

Resource = dict[str, Any]
Render = Callable[[Any, Any, str], Resource]
"""(service reply, the signed request, the signed target URI) -> the FHIR resource."""


class FhirResponse(Response):
    media_type = f.FHIR_JSON

    def __init__(self, content: Resource, status_code: int = 200) -> None:
        body = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
        super().__init__(body.encode("utf-8"), status_code=status_code)


def _page(hits: list[Hit], req: Any, target: str) -> Resource:
    return searchset(target, hits, offset=req.offset, count=req.count)


def _patients(reply: rec.PatientList, req: f.PatientSearch, target: str) -> Resource:
    return _page([Hit(fhirmap.patient_brief(p)) for p in reply.patients], req, target)


def _encounters(reply: rec.EncounterList, req: f.ClinicalSearch, target: str) -> Resource:
    return _page([Hit(fhirmap.encounter(e)) for e in reply.encounters], req, target)


def _conditions(reply: rec.EncounterList, req: f.ClinicalSearch, target: str) -> Resource:
    hits = [Hit(c) for e in reply.encounters for c in fhirmap.conditions(e)]
    return _page(hits, req, target)


def _observations(reply: rec.EncounterList, req: f.ClinicalSearch, target: str) -> Resource:
    hits = [Hit(o) for e in reply.encounters for o in fhirmap.observations(e)]
    return _page(hits, req, target)


def _allergies(reply: rec.AllergyList, req: f.ClinicalSearch, target: str) -> Resource:
    hits = [Hit(fhirmap.allergy(reply.patient_id, a)) for a in reply.allergies]
    return _page(hits, req, target)


def _prescription_hit(p: rec.Prescription) -> Hit:
    return Hit(fhirmap.medication_request(p), (fhirmap.provenance(p),))


def _prescriptions(reply: rec.PrescriptionList, req: f.ClinicalSearch, target: str) -> Resource:
    return _page([_prescription_hit(p) for p in reply.prescriptions], req, target)


def _appointments(reply: sch.Calendar, req: f.AppointmentSearch, target: str) -> Resource:
    return _page([Hit(fhirmap.appointment(a)) for a in reply.appointments], req, target)


def _practitioners(reply: au.Directory, req: f.PractitionerSearch, target: str) -> Resource:
    return _page([Hit(fhirmap.practitioner(s)) for s in reply.staff], req, target)


def _practitioner(reply: au.Directory, req: f.PractitionerRead, target: str) -> Resource:
    if not reply.staff:
        raise ApiError(404, "there is no active physician with that id")
    return fhirmap.practitioner(reply.staff[0])


def _audit_events(reply: aud.AuditPage, req: f.AuditEventSearch, target: str) -> Resource:
    hits = [Hit(fhirmap.audit_event(e)) for e in reply.entries]
    return searchset(target, hits, offset=req.offset, count=req.count, total=reply.total)


def _one(found: list[Resource], wanted: str, kind: str) -> Resource:
    for resource in found:
        if resource["id"] == wanted:
            return resource
    raise ApiError(404, f"the encounter has no {kind} with that id")


def _condition(reply: rec.EncounterHistory, req: f.ConditionRead, target: str) -> Resource:
    return _one(fhirmap.conditions(reply.current), req.condition_id, "diagnosis")


def _observation(reply: rec.EncounterHistory, req: f.ObservationRead, target: str) -> Resource:
    return _one(fhirmap.observations(reply.current), req.observation_id, "such vital sign")


def _everything(reply: rec.PatientSummary, req: f.Everything, target: str) -> Resource:
    """The patient's compartment: the Patient, then encounters with their conditions and
    observations, allergies, and prescriptions with their signatures."""
    resources = [fhirmap.patient(reply.patient)]
    for e in reply.encounters:
        resources += [fhirmap.encounter(e), *fhirmap.conditions(e), *fhirmap.observations(e)]
    resources += [fhirmap.allergy(reply.patient.patient_id, a) for a in reply.allergies]
    for p in reply.active_prescriptions:
        resources += [fhirmap.medication_request(p), fhirmap.provenance(p)]
    entries = [Entry(r) for r in resources]
    return collection(target, entries, "searchset", total=len(entries))


RENDER: dict[str, Render] = {
    f.PATIENT_READ.name: lambda reply, req, target: fhirmap.patient(reply),
    f.PATIENT_SEARCH.name: _patients,
    f.EVERYTHING.name: _everything,
    f.ENCOUNTER_READ.name: lambda reply, req, target: fhirmap.encounter(reply.current),
    f.ENCOUNTER_SEARCH.name: _encounters,
    f.CONDITION_SEARCH.name: _conditions,
    f.CONDITION_READ.name: _condition,
    f.OBSERVATION_SEARCH.name: _observations,
    f.OBSERVATION_READ.name: _observation,
    f.PROVENANCE_READ.name: lambda reply, req, target: fhirmap.provenance(reply),
    f.ALLERGY_SEARCH.name: _allergies,
    f.MEDICATION_REQUEST_READ.name: lambda reply, req, target: fhirmap.medication_request(reply),
    f.MEDICATION_REQUEST_SEARCH.name: _prescriptions,
    f.APPOINTMENT_READ.name: lambda reply, req, target: fhirmap.appointment(reply),
    f.APPOINTMENT_SEARCH.name: _appointments,
    f.PRACTITIONER_READ.name: _practitioner,
    f.PRACTITIONER_SEARCH.name: _practitioners,
    f.AUDIT_EVENT_SEARCH.name: _audit_events,
}
"""How each interaction's reply becomes FHIR: the mapping itself is `mesh.fhirmap`."""


def _endpoint(method: RpcMethod[Any, Any]) -> Any:
    route = method.route
    assert route is not None
    render = RENDER[method.name]

    async def endpoint(
        request: Request, who: Caller = Depends(signed(patient_data=route.patient_data))
    ) -> FhirResponse:
        signed_req = signed_request(method, who)
        reply = await forward(request, who, method, signed_req)
        return FhirResponse(render(reply, signed_req, who.proof.target_uri))

    endpoint.__name__ = method.name.replace(".", "_")
    endpoint.__doc__ = route.summary or method.name
    return endpoint


# ---------------------------------------------------------------------------- metadata

PARAM_TYPES = {
    "identifier": "token",
    "family": "string",
    "birthdate": "date",
    "phone": "token",
    "patient": "reference",
    "practitioner": "reference",
    "date": "date",
}


def _resource_type(method: RpcMethod[Any, Any]) -> str:
    assert method.route is not None
    return method.route.path.strip("/").split("/")[0]


def capability_statement() -> Resource:
    """What this server answers, made from the routes themselves (never out of date)."""
    by_type: dict[str, Resource] = {}
    for method in f.ROUTED:
        route = method.route
        assert route is not None
        kind = _resource_type(method)
        entry = by_type.setdefault(kind, {"type": kind, "interaction": []})
        if route.path.endswith("$everything"):
            entry.setdefault("operation", []).append(
                {
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                }
            )
            continue
        code = "read" if route.path_params else "search-type"
        if {"code": code} not in entry["interaction"]:
            entry["interaction"].append({"code": code})
        for name in (p for p in route.query if p not in f.PAGE):
            param = {"name": name, "type": PARAM_TYPES[name]}
            entry.setdefault("searchParam", []).append(param)
    by_type["MedicationRequest"]["documentation"] = (
        "Each comes with its Provenance: the prescriber's Ed25519 signature."
    )
    for kind, means in fx.SINCE_MEANS.items():
        entry = by_type.setdefault(kind, {"type": kind, "interaction": []})
        said = f"Bulk $export with _since: changed after it by {means}."
        entry["documentation"] = " ".join(filter(None, [entry.get("documentation"), said]))
    export = {
        "name": "export",
        "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
        "documentation": "Asynchronous; needs a second administrator's approval "
        "($export-approval); each NDJSON file is sealed to the kick-off's X25519 key. "
        f"Kick-off parameters _type ({', '.join(fx.EXPORT_TYPES)}; any other is refused) "
        "and _since (an instant; what it compares is said per resource type).",
    }
    by_type["Patient"].setdefault("operation", []).append(export)
    group = dict(export, definition=export["definition"].replace("patient-", "group-"))
    by_type["Group"] = {"type": "Group", "operation": [group]}
    resources = list(by_type.values())
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).date().isoformat(),
        "publisher": "Medihaven",
        "kind": "instance",
        "software": {"name": "Medihaven"},
        "implementation": {"description": "Medihaven FHIR R4 (read and search)"},
        "fhirVersion": f.FHIR_VERSION,
        "format": [f.FHIR_JSON],
        "rest": [
            {
                "mode": "server",
                "documentation": "Every interaction but this one needs an Ed25519 RFC 9421 "
                "request signature of a registered staff account (see README, FHIR).",
                "resource": resources,
            }
        ],
    }


def router() -> APIRouter:
    """The FHIR routes (paths under `FHIR_PREFIX`), literal paths first."""
    api = APIRouter(tags=["fhir"])

    @api.get("/metadata", response_class=FhirResponse, include_in_schema=False)
    async def metadata(request: Request) -> FhirResponse:
        await security(request).anonymous_request(request)
        return FhirResponse(capability_statement())

    for method in sorted(f.ROUTED, key=lambda m: len(m.route.path_params) if m.route else 0):
        route = method.route
        assert route is not None
        api.add_api_route(
            route.path,
            _endpoint(method),
            methods=[route.method],
            response_class=FhirResponse,
            status_code=route.status,
            include_in_schema=False,
        )
    return api
