"""mesh/auditing.py over real RabbitMQ and MariaDB: a handler's block that raises is
audited (with what the handler learnt, e.g. the patient) and the error still reaches the
caller; a read names every patient returned, in events of at most MAX_PATIENTS; a write's
event commits with the write; every event's source is the serving process's identity."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import pytest

from contracts.audit import MAX_PATIENTS, AuditAction, AuditEvent, AuditOutcome, AuditType
from contracts.base import Principal, Role
from mesh import auditing
from mesh.context import CallContext, current_call
from mesh.db import Connection
from mesh.errors import Forbidden
from mesh.runtime import Runtime
from mesh.settings import Settings
from tests.mesh.fixtures import audit_publisher, audit_trail
from tests.support.polling import until

DOCTOR = Principal(account_id=str(uuid.uuid4()), role=Role.physician, username="drwho")


@contextmanager
def serving(runtime: Runtime, tx: Connection | None = None) -> Iterator[CallContext]:
    """The context of a call being served, current as the RPC server makes it."""
    ctx = CallContext("records.get_patient", principal=DOCTOR, runtime=runtime, transaction=tx)
    token = current_call.set(ctx)
    try:
        yield ctx
    finally:
        current_call.reset(token)


def about(seen: list[AuditEvent], entity_id: str) -> list[AuditEvent]:
    """This test's events: each test names its own entity (a fresh id)."""
    return [e for e in seen if e.entity_id == entity_id]


async def test_a_refused_block_is_audited_with_what_it_learnt_and_still_raises(
    settings: Settings,
) -> None:
    run, patient = uuid.uuid4().hex[:8], str(uuid.uuid4())
    read = AuditType.patient_read
    async with audit_trail(settings) as seen, audit_publisher(settings) as records:
        with serving(records) as ctx, pytest.raises(Forbidden):
            async with auditing.audited(ctx, read, AuditAction.read, "Patient", entity_id=run) as s:
                s.patient_id = patient
                raise Forbidden("not in your care")
        async with auditing.audited(ctx, read, AuditAction.read, entity_id=f"{run}.ok"):
            pass  # a block that succeeds records nothing by itself
        [event] = await until(lambda: about(seen, run))
    assert event.outcome is AuditOutcome.refused and event.patient_id == patient
    assert event.type == read
    assert event.source == "records" and event.agent.account_id == DOCTOR.account_id
    assert event.detail == "forbidden: not in your care"
    assert about(seen, f"{run}.ok") == []


async def test_a_read_names_every_patient_in_events_of_at_most_the_maximum(
    settings: Settings,
) -> None:
    run = uuid.uuid4().hex[:8]
    many = [str(uuid.uuid4()) for _ in range(2 * MAX_PATIENTS + 5)]
    one = str(uuid.uuid4())
    subject = auditing.Subject(AuditType.patient_list, AuditAction.read, "Patient", None, run)
    async with audit_trail(settings) as seen, audit_publisher(settings) as records:
        with serving(records) as ctx:
            await auditing.read(ctx, subject, many + many[:10], detail="many")
            await auditing.read(ctx, subject, [one], detail="one")
            await auditing.read(ctx, subject, [], detail="none")
        await until(lambda: len(about(seen, run)) == 5)
    by_detail: dict[str, list[AuditEvent]] = {}
    for event in about(seen, run):
        by_detail.setdefault(event.detail or "", []).append(event)
    groups = by_detail["many"]
    assert sorted(len(e.patients) for e in groups) == [5, MAX_PATIENTS, MAX_PATIENTS]
    assert sorted(p for e in groups for p in e.patients) == sorted(many)
    assert all(e.patient_id is None and e.action is AuditAction.read for e in groups)
    [single] = by_detail["one"]
    assert single.patient_id == one and single.patients == []
    [nobody] = by_detail["none"]
    assert nobody.patient_id is None and nobody.patients == []


async def test_a_writes_event_commits_with_the_write(settings: Settings) -> None:
    run = uuid.uuid4().hex[:8]
    async with audit_trail(settings) as seen, audit_publisher(settings, use_database=True) as rt:
        assert rt.db is not None
        for outcome in ("rolled back", "committed"):
            subject = auditing.Subject(
                AuditType.patient_update, AuditAction.update, "Patient", None, f"{run}.{outcome}"
            )
            with pytest.raises(RuntimeError) if outcome == "rolled back" else nullcontext():
                async with rt.db.transaction() as tx:
                    with serving(rt, tx) as ctx:
                        await auditing.written(ctx, subject, detail="v2")
                    if outcome == "rolled back":
                        raise RuntimeError("the write failed")
        rt.written()
        [event] = await until(lambda: about(seen, f"{run}.committed"))
    assert event.outcome is AuditOutcome.success and event.source == "records"
    assert about(seen, f"{run}.rolled back") == []
