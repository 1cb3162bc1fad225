"""Audit events of the scheduling service: who did what to whose appointment, and how it ended.

Successful writes put their event in the outbox of their own transaction. Successful
reads publish theirs (confirmed) before any data is returned: `Unavailable` otherwise, so
a read fails closed. A refusal or failure is published at once, since the transaction
it happened in is rolled back with everything in it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from contracts.audit import AuditAction, AuditOutcome
from contracts.scheduling import SERVICE
from mesh import audit
from mesh.context import CallContext
from mesh.logging import get_logger
from mesh.runtime import Runtime

log = get_logger("scheduling.audit")

ENTITY = "appointment"


@dataclass
class Subject:
    """What an action concerns; filled in as the handler learns it (e.g. the patient)."""

    type: str
    action: AuditAction
    patient_id: str | None = None
    entity_id: str | None = None
    entity_type: str = ENTITY


def _runtime(ctx: CallContext) -> Runtime:
    assert ctx.runtime is not None
    return ctx.runtime


async def written(ctx: CallContext, subject: Subject, detail: str | None = None) -> None:
    """A successful write: durable exactly when its transaction commits."""
    event = audit.make_event(
        SERVICE,
        subject.type,
        subject.action,
        AuditOutcome.success,
        patient_id=subject.patient_id,
        entity_type=subject.entity_type,
        entity_id=subject.entity_id,
        detail=detail,
    )
    await audit.record(_runtime(ctx), event, conn=ctx.tx)


async def read(ctx: CallContext, subject: Subject, patient_ids: Iterable[str]) -> None:
    """One confirmed event per patient whose data is about to be returned (fail closed)."""
    events = [
        audit.make_event(
            SERVICE,
            subject.type,
            AuditAction.read,
            AuditOutcome.success,
            patient_id=patient_id,
            entity_type=subject.entity_type,
            entity_id=subject.entity_id,
        )
        for patient_id in sorted(set(patient_ids))
    ]
    await asyncio.gather(*(audit.record(_runtime(ctx), e) for e in events))


@asynccontextmanager
async def audited(
    ctx: CallContext,
    type: str,
    action: AuditAction,
    *,
    patient_id: str | None = None,
    entity_id: str | None = None,
    entity_type: str = ENTITY,
) -> AsyncIterator[Subject]:
    """Records a refusal (4xx) or failure (5xx, crash) of the block, then re-raises it."""
    subject = Subject(type, action, patient_id, entity_id, entity_type)
    try:
        yield subject
    except Exception as exc:
        await audit.record_unsuccessful(
            _runtime(ctx),
            SERVICE,
            subject.type,
            subject.action,
            exc,
            patient_id=subject.patient_id,
            entity_type=subject.entity_type,
            entity_id=subject.entity_id,
        )
        raise
