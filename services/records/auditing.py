"""Audit events of the records service: who did what to whose record, and how it ended.

Successful writes put their event in the outbox of their own transaction (durable exactly
when the write commits). Successful reads publish theirs, confirmed, before any data is
returned; if that fails the read raises `Unavailable` (fail closed). A refusal or a
failure is published at once, since the transaction it happened in is rolled back.
Details never hold patient data: ids, versions and error codes only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from contracts.audit import AuditAction, AuditOutcome
from contracts.records import SERVICE
from mesh import audit
from mesh.context import CallContext
from mesh.logging import get_logger
from services.records.access import runtime_of

log = get_logger("records.audit")


@dataclass
class Subject:
    """What an action concerns; the handler fills in what it learns (e.g. the patient)."""

    type: str
    action: AuditAction
    entity_type: str
    patient_id: str | None = None
    entity_id: str | None = None


async def written(ctx: CallContext, subject: Subject, detail: str | None = None) -> None:
    """A successful write: its event commits (or not) with the write's transaction."""
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
    await audit.record(runtime_of(ctx), event, conn=ctx.tx)


async def read(
    ctx: CallContext,
    subject: Subject,
    patient_ids: Iterable[str],
    detail: str | None = None,
) -> None:
    """One confirmed event per patient whose data is about to be returned (fail closed);
    one without a patient if there is none (e.g. a search that found nobody)."""
    runtime = runtime_of(ctx)
    ids: list[str | None] = [*sorted(set(patient_ids))] or [None]
    events = [
        audit.make_event(
            SERVICE,
            subject.type,
            AuditAction.read,
            AuditOutcome.success,
            patient_id=patient_id,
            entity_type=subject.entity_type,
            entity_id=subject.entity_id,
            detail=detail,
        )
        for patient_id in ids
    ]
    await asyncio.gather(*(audit.record(runtime, e) for e in events))


@asynccontextmanager
async def audited(
    ctx: CallContext,
    type: str,
    action: AuditAction,
    entity_type: str,
    *,
    patient_id: str | None = None,
    entity_id: str | None = None,
) -> AsyncIterator[Subject]:
    """Records a refusal (4xx) or failure (5xx, tampering, crash) of the block, re-raised."""
    subject = Subject(type, action, entity_type, patient_id, entity_id)
    try:
        yield subject
    except Exception as exc:
        await audit.record_unsuccessful(
            runtime_of(ctx),
            SERVICE,
            subject.type,
            subject.action,
            exc,
            patient_id=subject.patient_id,
            entity_type=subject.entity_type,
            entity_id=subject.entity_id,
        )
        raise
