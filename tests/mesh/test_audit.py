"""mesh/audit.py over real RabbitMQ and MariaDB: an event published at once is confirmed
or the action fails closed; one given a transaction exists exactly when it commits; an
unsuccessful action is audited as refused (a 4xx) or failure (anything else), best
effort; an event names the principal and trace of the call being served."""

from __future__ import annotations

import uuid

import pytest

from contracts.audit import AuditAction, AuditEvent, AuditOutcome, AuditType
from contracts.base import Principal, Role
from contracts.errors import HTTP_STATUS, ErrorCode
from mesh import audit
from mesh.context import CallContext, current_call
from mesh.errors import RpcError, Unavailable
from mesh.settings import Settings
from tests.mesh.fixtures import audit_publisher, audit_trail
from tests.support.polling import until

DOCTOR = Principal(account_id=str(uuid.uuid4()), role=Role.physician, username="drwho")


def event(entity_id: str, **kwargs: object) -> AuditEvent:
    return audit.make_event(
        "records",
        AuditType.patient_read,
        AuditAction.read,
        AuditOutcome.success,
        entity_type="Patient",
        entity_id=entity_id,
        **kwargs,  # type: ignore[arg-type]
    )


def with_id(seen: list[AuditEvent], entity_id: str) -> list[AuditEvent]:
    return [e for e in seen if e.entity_id == entity_id]


def test_an_event_names_the_principal_and_trace_of_the_call_being_served() -> None:
    call = CallContext("records.get_patient", principal=DOCTOR)
    token = current_call.set(call)
    try:
        made = event("p1", detail="x" * 5000)
    finally:
        current_call.reset(token)
    assert made.agent.account_id == DOCTOR.account_id and made.agent.role is Role.physician
    assert made.trace_id == call.trace_id
    assert made.detail == "x" * 1000
    assert event("p2").agent.account_id is None and event("p2").trace_id is None


async def test_an_event_published_at_once_is_received_as_made(settings: Settings) -> None:
    async with audit_trail(settings) as seen, audit_publisher(settings) as records:
        made = event(str(uuid.uuid4()), principal=DOCTOR)
        await audit.record(records, made)
        [received] = await until(lambda: with_id(seen, made.entity_id or ""))
    assert received == made


async def test_unconfirmed_the_action_fails_closed(settings: Settings) -> None:
    async with audit_publisher(settings) as records:
        pass  # stopped: its broker connection is closed
    with pytest.raises(Unavailable, match="not performed"):
        await audit.record(records, event("p"))
    # a refusal's audit is best effort: the refusal itself still goes through
    await audit.record_unsuccessful(
        records,
        "records",
        AuditType.patient_read,
        AuditAction.read,
        RpcError("no", code=ErrorCode.forbidden),
    )
    await audit.record_refusal(records, "records", AuditType.bus_call_refused, "from outsider")


async def test_with_a_transaction_the_event_exists_exactly_when_it_commits(
    settings: Settings,
) -> None:
    rolled_back, committed = str(uuid.uuid4()), str(uuid.uuid4())
    async with audit_trail(settings) as seen, audit_publisher(settings, use_database=True) as rt:
        assert rt.db is not None
        with pytest.raises(RuntimeError):
            async with rt.db.transaction() as tx:
                await audit.record(rt, event(rolled_back), conn=tx)
                raise RuntimeError("the write failed")
        async with rt.db.transaction() as tx:
            await audit.record(rt, event(committed), conn=tx)
        rt.written()
        await until(lambda: with_id(seen, committed))
    assert with_id(seen, rolled_back) == []


async def test_an_unsuccessful_action_is_refused_for_a_4xx_else_a_failure(
    settings: Settings,
) -> None:
    run = uuid.uuid4().hex[:8]
    raised: dict[str, BaseException] = {
        f"{run}-{code.value}": RpcError("why", code=code) for code in ErrorCode
    }
    raised[f"{run}-crash"] = KeyError("secret-looking detail")
    async with audit_trail(settings) as seen, audit_publisher(settings) as records:
        for entity_id, exc in raised.items():
            await audit.record_unsuccessful(
                records,
                "records",
                AuditType.patient_read,
                AuditAction.read,
                exc,
                entity_id=entity_id,
            )
        await until(
            lambda: len([e for e in seen if (e.entity_id or "").startswith(run)]) == len(raised)
        )
    outcomes = {e.entity_id: e for e in seen if (e.entity_id or "").startswith(run)}
    for code in ErrorCode:
        got = outcomes[f"{run}-{code.value}"]
        refused = HTTP_STATUS[code] < 500 and code is not ErrorCode.integrity
        assert got.outcome is (AuditOutcome.refused if refused else AuditOutcome.failure), code
        assert got.detail == f"{code.value}: why"
    crash = outcomes[f"{run}-crash"]
    assert crash.outcome is AuditOutcome.failure and crash.detail == "error"
