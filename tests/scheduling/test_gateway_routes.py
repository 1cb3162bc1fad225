"""The gateway's scheduling routes: HTTP in, the right RPC out, the route table's roles.

The routes are made from the contracts (`gateway.routing.declared_router`); the gateway's
signature checks and its real mesh are tested in tests/gateway. Here the verified caller
(the `signed(...)` dependency) and the RPC client are stand-ins, so what is checked is the
mapping: paths, parameters, bodies, status codes, roles and 422s (never a 500), and that
the RPC request is the one built from the signed request, not from anything else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel

from contracts import fhir
from contracts import scheduling as sched
from contracts.base import ALL_ROLES, Principal, Role, RpcMethod
from contracts.common import routes
from contracts.http import build_request
from gateway import access, errors
from gateway.admission import Admission
from gateway.app import relayed_methods
from gateway.routing import declared_router
from gateway.security import Caller, signed_target
from mesh.httpsig import RequestProof
from mesh.settings import Settings

NOW = datetime(2030, 1, 7, 9, tzinfo=UTC)
APPOINTMENT = sched.Appointment(
    appointment_id="a1",
    patient_id="p1",
    physician_id="dr1",
    start=NOW,
    end=NOW,
    status=sched.AppointmentStatus.booked,
    booked_by="desk",
    created_at=NOW,
    updated_at=NOW,
)
AVAILABILITY = sched.Availability(physician_id="dr1", time_zone="UTC", weekly=[], days_off=[])
REPLIES: dict[str, BaseModel] = {
    sched.SET_WORKING_HOURS.name: AVAILABILITY,
    sched.SET_BREAKS.name: AVAILABILITY,
    sched.SET_DAYS_OFF.name: AVAILABILITY,
    sched.CHANGE_ABSENCES.name: AVAILABILITY,
    sched.GET_AVAILABILITY.name: AVAILABILITY,
    sched.BOOK.name: APPOINTMENT,
    sched.RESCHEDULE.name: APPOINTMENT,
    sched.CANCEL.name: APPOINTMENT,
    sched.CHECK_IN.name: APPOINTMENT,
    sched.MARK_NO_SHOW.name: APPOINTMENT,
    sched.START_VISIT.name: APPOINTMENT,
    sched.FINISH_VISIT.name: APPOINTMENT,
    sched.GET_APPOINTMENT.name: APPOINTMENT,
    sched.TODAY.name: sched.Today(
        day=NOW.date(), time_zone="UTC", start=NOW, end=NOW, appointments=[], truncated=False
    ),
    sched.CALENDAR.name: sched.Calendar(
        physician_id="dr1",
        time_zone="UTC",
        span=sched.CalendarSpan.day,
        first_day=NOW.date(),
        last_day=NOW.date(),
        start=NOW,
        end=NOW,
        working=[],
        appointments=[],
    ),
    sched.FREE_SLOTS.name: sched.FreeSlots(
        physician_id="dr1", time_zone="UTC", duration_minutes=30, slots=[], truncated=False
    ),
}


class FakeRpc:
    """Records what the gateway would send; answers with a canned reply."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, BaseModel, str | None]] = []

    async def call(self, method: RpcMethod[Any, Any], body: BaseModel, **kwargs: Any) -> BaseModel:
        self.calls.append((method.name, body, kwargs.get("idempotency_key")))
        return REPLIES[method.name]

    async def call_json(self, method: RpcMethod[Any, Any], body: BaseModel, **kwargs: Any) -> bytes:
        reply = await self.call(method, body, **kwargs)
        return reply.model_dump_json().encode()


class FakeRuntime:
    def __init__(self) -> None:
        self.rpc = FakeRpc()
        # attendance is its own matter (tests/attendance): no on-duty question here
        self.settings = Settings(attendance_required=False)


class World:
    def __init__(self, app: FastAPI, http: httpx.AsyncClient) -> None:
        self.app, self.http = app, http
        self.role = Role.receptionist
        self.signed_uri: str | None = None
        """A target URI the stand-in caller claims was signed instead of the one sent."""

    @property
    def rpc(self) -> FakeRpc:
        rpc: FakeRpc = self.app.state.runtime.rpc
        return rpc


def scheduling_methods() -> list[RpcMethod[Any, Any]]:
    """The scheduling methods the gateway relays (every routed one)."""
    return [m for m in relayed_methods() if m.service == sched.SERVICE]


def signed_dependencies(router: APIRouter) -> set[Any]:
    """Each route's `signed(...)` dependency (the parameter `who` of its endpoint)."""
    found = set()
    for route in router.routes:
        if isinstance(route, APIRoute):
            for dependency in route.dependant.dependencies:
                if dependency.name == "who" and dependency.call is not None:
                    found.add(dependency.call)
    return found


@pytest_asyncio.fixture
async def w(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    app = FastAPI()
    errors.install(app)
    router = declared_router(scheduling_methods())
    app.include_router(router, prefix="/api/v1")
    app.state.runtime = FakeRuntime()
    app.state.admission = Admission(limit=64, wait_s=1.0)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
    ) as http:
        world = World(app, http)

        async def verified(request: Request) -> Caller:
            """As `Security.verify` would answer for a good signature of this request."""
            proof = RequestProof(
                method=request.method,
                target_uri=world.signed_uri or signed_target(request.scope, request.url),
                content_digest="x",
                signature_input="x",
                signature="x",
            )
            body = await request.body()
            return Caller(Principal(account_id="me", role=world.role), proof, "nonce-1", body=body)

        dependencies = signed_dependencies(router)
        assert len(dependencies) == len(scheduling_methods())
        for dependency in dependencies:
            app.dependency_overrides[dependency] = verified
        yield world


def test_the_route_table_agrees_with_the_contracts() -> None:
    methods = {v.name: v for v in vars(sched).values() if isinstance(v, RpcMethod)}
    methods.pop(sched.CARE_RELATIONSHIP.name)  # service to service, not a route
    table = {name: roles for name, roles in access.ACCESS.items() if name in methods}
    assert set(table) == set(methods)
    for name, roles in table.items():
        assert (methods[name].roles or ALL_ROLES) == roles
    assert {sched.CALENDAR.name, sched.GET_APPOINTMENT.name} <= access.PATIENT_DATA


HOURS = {"weekly": [{"weekday": "monday", "start": "08:00", "end": "12:00"}]}
BOOKING = {
    "patient_id": "p1",
    "physician_id": "dr1",
    "start": "2030-01-07T09:00:00+01:00",
    "end": "2030-01-07T09:30:00+01:00",
    "reason": "check-up",
}
CASES: list[tuple[str, str, Any, str, dict[str, Any], int]] = [
    (
        "PUT",
        "/physicians/dr1/working-hours",
        HOURS,
        sched.SET_WORKING_HOURS.name,
        {"physician_id": "dr1"},
        200,
    ),
    (
        "PUT",
        "/physicians/dr1/breaks",
        {"breaks": [{"weekday": "monday", "start": "12:30", "end": "13:30"}]},
        sched.SET_BREAKS.name,
        {"physician_id": "dr1"},
        200,
    ),
    (
        "POST",
        "/physicians/dr1/absences",
        {"add": [{"kind": "holiday", "first_day": "2030-12-24", "last_day": "2030-12-26"}]},
        sched.CHANGE_ABSENCES.name,
        {"physician_id": "dr1", "remove": []},
        200,
    ),
    (
        "POST",
        "/physicians/dr1/days-off",
        {"add": ["2030-01-08"]},
        sched.SET_DAYS_OFF.name,
        {"add": [date(2030, 1, 8)], "remove": []},
        200,
    ),
    ("GET", "/physicians/dr1/availability", None, sched.GET_AVAILABILITY.name, {}, 200),
    (
        "GET",
        "/physicians/dr1/calendar?day=2030-01-09&span=week",
        None,
        sched.CALENDAR.name,
        {"day": date(2030, 1, 9), "span": sched.CalendarSpan.week, "include_cancelled": True},
        200,
    ),
    (
        "GET",
        "/physicians/dr1/free-slots?first_day=2030-01-07&last_day=2030-01-08&duration_minutes=20",
        None,
        sched.FREE_SLOTS.name,
        {"first_day": date(2030, 1, 7), "last_day": date(2030, 1, 8), "duration_minutes": 20},
        200,
    ),
    (
        "POST",
        "/appointments",
        BOOKING,
        sched.BOOK.name,
        {"start": datetime(2030, 1, 7, 8, tzinfo=UTC), "reason": "check-up"},
        201,
    ),
    ("GET", "/appointments/a1", None, sched.GET_APPOINTMENT.name, {"appointment_id": "a1"}, 200),
    # a literal path wins over /appointments/{appointment_id}
    ("GET", "/appointments/today", None, sched.TODAY.name, {"physician_id": None}, 200),
    (
        "GET",
        "/appointments/today?physician_id=dr1",
        None,
        sched.TODAY.name,
        {"physician_id": "dr1"},
        200,
    ),
    (
        "POST",
        "/appointments/a1/reschedule",
        {"start": "2030-01-07T10:00:00Z", "end": "2030-01-07T10:30:00Z"},
        sched.RESCHEDULE.name,
        {"appointment_id": "a1", "start": datetime(2030, 1, 7, 10, tzinfo=UTC)},
        200,
    ),
    (
        "POST",
        "/appointments/a1/cancel",
        {"reason": "ill"},
        sched.CANCEL.name,
        {"appointment_id": "a1", "reason": "ill"},
        200,
    ),
    *(
        ("POST", f"/appointments/a1/{step}", None, method.name, {"appointment_id": "a1"}, 200)
        for step, method in (
            ("check-in", sched.CHECK_IN),
            ("no-show", sched.MARK_NO_SHOW),
            ("start", sched.START_VISIT),
            ("finish", sched.FINISH_VISIT),
        )
    ),
]


async def test_each_route_calls_its_method_with_the_request(w: World) -> None:
    fhir_routes = {m.name for m in fhir.ROUTED}  # /fhir/R4: tests/gateway/test_fhir.py
    assert {name for _, _, _, name, _, _ in CASES} == {
        n for n in access.ACCESS if n.startswith(f"{sched.SERVICE}.") and n not in fhir_routes
    }
    for verb, path, body, name, fields, status in CASES:
        w.rpc.calls.clear()
        method = next(v for v in vars(sched).values() if getattr(v, "name", None) == name)
        w.role = Role.receptionist if Role.receptionist in method.roles else Role.physician
        response = await w.http.request(verb, "/api/v1" + path, json=body)
        assert response.status_code == status, (path, response.text)
        ((called, request, idem),) = w.rpc.calls
        assert called == name
        for field, value in fields.items():
            assert getattr(request, field) == value, (path, field)
        assert (idem is not None) == method.write
        # Exactly what the service will rebuild from the forwarded proof (mesh.proofs).
        found, params, query = routes().operation_of(verb, f"http://gateway.test/api/v1{path}")
        assert found is method
        assert request == build_request(method, params, query, response.request.content)


async def test_the_rpc_request_is_the_signed_one(w: World) -> None:
    """A proof signed for another URI than the one sent: refused (422), nothing is sent;
    a signed URI of this route with other values: the RPC carries the signed values."""
    w.signed_uri = "http://gateway.test/api/v1/appointments/other/cancel"
    response = await w.http.request("GET", "/api/v1/appointments/a1")
    assert response.status_code == 422, response.text
    assert w.rpc.calls == []
    response = await w.http.request("POST", "/api/v1/appointments/a1/cancel", json={"reason": "x"})
    assert response.status_code == 200, response.text
    ((_, request, _),) = w.rpc.calls
    assert request == sched.CancelRequest(appointment_id="other", reason="x")


async def test_roles_are_checked_before_any_call(w: World) -> None:
    for role in Role:
        w.role = role
        for verb, path, body, name, _, _ in CASES:
            w.rpc.calls.clear()
            response = await w.http.request(verb, "/api/v1" + path, json=body)
            if role in access.ACCESS[name]:
                assert response.status_code < 400, (role, path, response.text)
            else:
                assert response.status_code == 403, (role, path, response.text)
                assert w.rpc.calls == []


@pytest.mark.parametrize(
    ("verb", "path", "body"),
    [
        ("GET", "/physicians/dr%201/availability", None),
        ("GET", "/physicians/" + "x" * 65 + "/availability", None),
        ("GET", "/physicians/dr1/calendar", None),
        ("GET", "/physicians/dr1/calendar?day=2030-02-30", None),
        ("GET", "/physicians/dr1/free-slots?first_day=2030-01-09&last_day=2030-01-07", None),
        ("GET", "/physicians/dr1/free-slots?first_day=2030-01-01&last_day=2030-03-01", None),
        ("POST", "/physicians/dr1/days-off", {}),
        ("POST", "/physicians/dr1/days-off", {"add": ["2030-01-08"], "remove": ["2030-01-08"]}),
        ("PUT", "/physicians/dr1/working-hours", {"weekly": [{"weekday": "monday"}]}),
        ("POST", "/appointments", {**BOOKING, "start": "2030-01-07T09:00:00"}),
        ("POST", "/appointments", {**BOOKING, "reason": ""}),
        ("POST", "/appointments/a%3B1/cancel", {"reason": "x"}),
        ("POST", "/appointments/a1/reschedule", {"start": "soon"}),
        ("POST", "/appointments/a1/check-in", {"appointment_id": "a2"}),
        ("POST", "/appointments/a1/finish", {"outcome": "completed"}),
        ("GET", "/appointments/today?physician_id=dr%201", None),
        (
            "PUT",
            "/physicians/dr1/breaks",
            {"breaks": [{"weekday": "monday", "start": "13:30", "end": "12:30"}]},
        ),
        (
            "PUT",
            "/physicians/dr1/working-hours",
            {"weekly": [{"weekday": "monday", "start": "12:00", "end": "08:00"}]},
        ),
        ("POST", "/physicians/dr1/absences", {}),
        (
            "POST",
            "/physicians/dr1/absences",
            {"add": [{"first_day": "2030-01-09", "last_day": "2030-01-08"}]},
        ),
        (
            "POST",
            "/physicians/dr1/absences",
            {"add": [{"first_day": "2030-01-09", "start": "2030-01-09T10:00:00Z"}]},
        ),
        ("POST", "/physicians/dr1/absences", {"add": [{"start": "2030-01-09T10:00:00Z"}]}),
    ],
)
async def test_bad_requests_are_422_and_never_reach_the_service(
    w: World, verb: str, path: str, body: Any
) -> None:
    response = await w.http.request(verb, "/api/v1" + path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation"
    assert w.rpc.calls == []
