"""mesh/attendance.py, what tests/attendance does not show: an off-duty physician reaches a
chart only on records' word that a break-glass grant covers that patient. Records down is
a 503, never a chart; a grant of ordinary care opens nothing off duty; a break-glass grant
serves the chart as emergency access (audited ETREAT); a receptionist never gets in off
duty. Stand-ins for auth and records' access rule answer on a real bus of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from contracts import attendance as att
from contracts import records
from contracts.audit import AuditEvent, AuditOutcome
from contracts.base import GATEWAY, Principal, Role
from mesh.attendance import EMERGENCY, enforce
from mesh.context import CallContext
from mesh.errors import OffDuty, Unavailable
from mesh.rpc import RpcRouter
from mesh.runtime import Runtime
from mesh.settings import Settings
from tests.conftest import isolated_settings
from tests.mesh.fixtures import audit_trail, client_runtime
from tests.support.polling import until


@dataclass
class RecordsAccess:
    """What records' access rule answers: a care basis for the physician, or none."""

    basis: records.CareBasis | None = None
    asked: list[records.MayReadRequest] = field(default_factory=list)


@asynccontextmanager
async def stand_in(
    settings: Settings, service: str, identity: str, router: RpcRouter
) -> AsyncIterator[Runtime]:
    runtime = await Runtime.start(
        f"{service}-stand-in", settings, router=router, use_database=False, identity=identity
    )
    try:
        yield runtime
    finally:
        await runtime.stop()


def off_duty_auth() -> RpcRouter:
    router = RpcRouter(att.ON_DUTY.service)

    @router.handler(att.ON_DUTY)
    async def on_duty(req: att.OnDutyRequest, ctx: CallContext) -> att.DutyStatus:
        return att.DutyStatus(account_id=req.account_id, on_duty=False, required=True)

    return router


def access_rule(state: RecordsAccess) -> RpcRouter:
    router = RpcRouter(records.ACCESS_SERVICE)

    @router.handler(records.MAY_READ)
    async def may_read(req: records.MayReadRequest, ctx: CallContext) -> records.MayReadReply:
        state.asked.append(req)
        return records.MayReadReply(allowed=state.basis is not None, basis=state.basis)

    return router


@pytest.fixture(scope="module")
def settings_of_its_own() -> Iterator[Settings]:
    """A bus of its own: the stand-ins serve auth's and records' queues."""
    with isolated_settings("attbg") as base:
        yield base.model_copy(update={"attendance_required": True})


def physician() -> Principal:
    return Principal(account_id=str(uuid.uuid4()), role=Role.physician, username="dr")


def chart() -> records.GetPatientRequest:
    return records.GetPatientRequest(patient_id=str(uuid.uuid4()))


async def test_records_unreachable_is_a_503_never_a_chart(settings_of_its_own: Settings) -> None:
    settings = settings_of_its_own
    async with (
        stand_in(settings, "auth", "auth", off_duty_auth()),
        client_runtime(settings, "att-gateway", GATEWAY) as gateway,
    ):
        with pytest.raises(Unavailable, match="emergency access cannot be checked"):
            await enforce(gateway, physician(), records.GET_PATIENT, chart())


async def test_only_a_break_glass_grant_opens_a_chart_off_duty(
    settings_of_its_own: Settings,
) -> None:
    settings, access = settings_of_its_own, RecordsAccess()
    async with (
        audit_trail(settings) as seen,
        stand_in(settings, "auth", "auth", off_duty_auth()),
        stand_in(settings, "recordsaccess", "records", access_rule(access)),
        client_runtime(settings, "att-gateway", GATEWAY) as gateway,
    ):
        doctor, request = physician(), chart()
        for basis in (None, records.CareBasis.encounter, records.CareBasis.appointment):
            access.basis = basis
            with pytest.raises(OffDuty):
                await enforce(gateway, doctor, records.GET_PATIENT, request)
        access.basis = records.CareBasis.break_glass
        assert await enforce(gateway, doctor, records.GET_PATIENT, request) is True
        assert all(
            a.physician_id == doctor.account_id and a.patient_id == str(request.patient_id)
            for a in access.asked
        )
        # the same grant does not open what is not one patient's chart
        with pytest.raises(OffDuty):
            await enforce(
                gateway, doctor, records.LIST_RECENT_PATIENTS, records.ListRecentPatientsRequest()
            )
        # nor lets a receptionist in, and records is not even asked
        asked = len(access.asked)
        clerk = Principal(account_id=str(uuid.uuid4()), role=Role.receptionist, username="c")
        with pytest.raises(OffDuty):
            await enforce(gateway, clerk, records.GET_PATIENT, request)
        assert len(access.asked) == asked

        def by(account_id: str, type: str) -> list[AuditEvent]:
            return [e for e in seen if e.agent.account_id == account_id and e.type == type]

        [served] = await until(lambda: by(doctor.account_id, "attendance.off_duty_emergency"))
        assert served.purpose_of_use == EMERGENCY and served.outcome is AuditOutcome.success
        assert served.patient_id == str(request.patient_id)
        await until(lambda: len(by(doctor.account_id, "attendance.off_duty_refused")) == 4)
        await until(lambda: by(clerk.account_id, "attendance.off_duty_refused"))
