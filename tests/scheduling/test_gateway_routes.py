"""The gateway's scheduling routes: HTTP in, the right RPC out, the route table's roles.

The gateway's signature checks and its real mesh are tested in tests/gateway; here the
verified caller and the RPC client are stand-ins, so what is checked is this module's
own mapping: paths, parameters, bodies, status codes, roles and 422s (never a 500).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from pydantic import BaseModel

from contracts import scheduling as sched
from contracts.base import ALL_ROLES, Principal, Role, RpcMethod
from gateway import access, errors
from gateway.routes import scheduling as routes
from gateway.security import Caller
from mesh.httpsig import RequestProof

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
    sched.SET_DAYS_OFF.name: AVAILABILITY,
    sched.GET_AVAILABILITY.name: AVAILABILITY,
    sched.BOOK.name: APPOINTMENT,
    sched.RESCHEDULE.name: APPOINTMENT,
    sched.CANCEL.name: APPOINTMENT,
    sched.RECORD_OUTCOME.name: APPOINTMENT,
    sched.GET_APPOINTMENT.name: APPOINTMENT,
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


class World:
    def __init__(self, app: FastAPI, http: httpx.AsyncClient) -> None:
        self.app, self.http = app, http
        self.role = Role.receptionist

    @property
    def rpc(self) -> FakeRpc:
        rpc: FakeRpc = self.app.state.runtime.rpc
        return rpc


@pytest_asyncio.fixture
async def w(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    app = FastAPI()
    errors.install(app)
    app.include_router(routes.router, prefix="/api/v1")
    app.state.runtime = FakeRuntime()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
    ) as http:
        world = World(app, http)

        async def verified() -> Caller:
            proof = RequestProof(
                method="GET", target_uri="x", content_digest="x", signature_input="x", signature="x"
            )
            return Caller(Principal(account_id="me", role=world.role), proof, "nonce-1")

        app.dependency_overrides[routes.caller.dependency] = verified
        app.dependency_overrides[routes.reader.dependency] = verified
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
        {"day": date(2030, 1, 9), "span": sched.CalendarSpan.week, "include_cancelled": False},
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
    (
        "POST",
        "/appointments/a1/outcome",
        {"outcome": "no_show"},
        sched.RECORD_OUTCOME.name,
        {"outcome": sched.Outcome.no_show},
        200,
    ),
]


async def test_each_route_calls_its_method_with_the_request(w: World) -> None:
    assert {name for _, _, _, name, _, _ in CASES} == {
        n for n in access.ACCESS if n.startswith(f"{sched.SERVICE}.")
    }
    for verb, path, body, name, fields, status in CASES:
        w.rpc.calls.clear()
        response = await w.http.request(verb, "/api/v1" + path, json=body)
        assert response.status_code == status, (path, response.text)
        ((called, request, idem),) = w.rpc.calls
        assert called == name
        for field, value in fields.items():
            assert getattr(request, field) == value, (path, field)
        method = next(v for v in vars(sched).values() if getattr(v, "name", None) == name)
        assert (idem is not None) == method.write


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
        ("POST", "/appointments/a1/outcome", {"outcome": "cancelled"}),
    ],
)
async def test_bad_requests_are_422_and_never_reach_the_service(
    w: World, verb: str, path: str, body: Any
) -> None:
    response = await w.http.request(verb, "/api/v1" + path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation"
    assert w.rpc.calls == []
