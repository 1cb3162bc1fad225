"""Audit events of a service's handlers: who did what to whose record, and how it ended.

Successful writes put their event in the outbox of their own transaction (durable exactly
when the write commits). Successful reads publish theirs, confirmed, before any data is
returned; if that fails the read raises `Unavailable` (fail closed). A refusal or a
failure is published at once, since the transaction it happened in is rolled back.
Details never hold patient data: ids, versions and error codes only.

The source of every event is the serving process's broker identity (the audit service
accepts an event only from the service its source names).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from contracts.audit import MAX_PATIENTS, AuditAction, AuditOutcome, AuditType
from mesh import audit
from mesh.context import CallContext, runtime_of
from mesh.runtime import Runtime


@dataclass
class Subject:
    """What an action concerns; the handler fills in what it learns (e.g. the patient)."""

    type: AuditType
    action: AuditAction
    entity_type: str | None = None
    patient_id: str | None = None
    entity_id: str | None = None


def _source(runtime: Runtime) -> str:
    return runtime.identity or runtime.name


async def written(ctx: CallContext, subject: Subject, detail: str | None = None) -> None:
    """A successful write: its event commits (or not) with the write's transaction."""
    runtime = runtime_of(ctx, database=False)
    event = audit.make_event(
        _source(runtime),
        subject.type,
        subject.action,
        AuditOutcome.success,
        patient_id=subject.patient_id,
        entity_type=subject.entity_type,
        entity_id=subject.entity_id,
        detail=detail,
    )
    await audit.record(runtime, event, conn=ctx.tx)


async def read(
    ctx: CallContext,
    subject: Subject,
    patient_ids: Iterable[str],
    detail: str | None = None,
) -> None:
    """One confirmed event naming every patient whose data is about to be returned (fail
    closed): `patient_id` for one, `patients` for several (pages of more than
    MAX_PATIENTS make one event per MAX_PATIENTS); one without a patient if there is none
    (e.g. a search that found nobody)."""
    runtime = runtime_of(ctx, database=False)
    ids = sorted(set(patient_ids))
    groups = [ids[i : i + MAX_PATIENTS] for i in range(0, len(ids), MAX_PATIENTS)] or [[]]
    for group in groups:
        event = audit.make_event(
            _source(runtime),
            subject.type,
            AuditAction.read,
            AuditOutcome.success,
            patient_id=group[0] if len(group) == 1 else None,
            patients=group if len(group) > 1 else [],
            entity_type=subject.entity_type,
            entity_id=subject.entity_id,
            detail=detail,
        )
        await audit.record(runtime, event)


@asynccontextmanager
async def audited(
    ctx: CallContext,
    type: AuditType,
    action: AuditAction,
    entity_type: str | None = None,
    *,
    patient_id: str | None = None,
    entity_id: str | None = None,
) -> AsyncIterator[Subject]:
    """Records a refusal (4xx) or failure (5xx, tampering, crash) of the block, re-raised."""
    subject = Subject(type, action, entity_type, patient_id, entity_id)
    try:
        yield subject
    except Exception as exc:
        runtime = runtime_of(ctx, database=False)
        await audit.record_unsuccessful(
            runtime,
            _source(runtime),
            subject.type,
            subject.action,
            exc,
            patient_id=subject.patient_id,
            entity_type=subject.entity_type,
            entity_id=subject.entity_id,
        )
        raise
