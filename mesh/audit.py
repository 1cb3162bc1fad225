"""Publishing audit events, the same way from every service.

With a transaction's connection the event goes through the outbox (it exists exactly
when the write commits). Without one it is published at once with publisher confirms;
if the broker does not confirm, this raises `Unavailable`, so a caller that must not
return patient data unaudited fails closed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from contracts.audit import (
    AUDIT_RECORDED,
    AuditAction,
    AuditAgent,
    AuditEvent,
    AuditOutcome,
    AuditType,
)
from contracts.base import Principal
from contracts.errors import ErrorCode
from mesh import outbox
from mesh.context import current_call
from mesh.db import Connection
from mesh.errors import RpcError, Unavailable
from mesh.logging import get_logger
from mesh.runtime import Runtime

log = get_logger("mesh.audit")


def make_event(
    source: str,
    type: AuditType,
    action: AuditAction,
    outcome: AuditOutcome,
    *,
    principal: Principal | None = None,
    address: str | None = None,
    patient_id: str | None = None,
    patients: list[str] | None = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
    purpose_of_use: str | None = None,
    detail: str | None = None,
) -> AuditEvent:
    """An audit event; principal and trace default to those of the call being served."""
    call = current_call.get()
    if principal is None and call is not None:
        principal = call.principal
    return AuditEvent(
        event_id=str(uuid.uuid4()),
        type=type,
        action=action,
        outcome=outcome,
        recorded=datetime.now(UTC),
        agent=AuditAgent(
            account_id=principal.account_id if principal else None,
            role=principal.role if principal else None,
            address=address,
        ),
        source=source,
        patient_id=patient_id,
        patients=patients or [],
        entity_type=entity_type,
        entity_id=entity_id,
        purpose_of_use=purpose_of_use,
        detail=detail[:1000] if detail else None,
        trace_id=call.trace_id if call else None,
    )


async def record(runtime: Runtime, event: AuditEvent, *, conn: Connection | None = None) -> None:
    """Make `event` durable: in the outbox of `conn`'s transaction, or confirmed now."""
    if conn is not None:
        await outbox.add_event(conn, AUDIT_RECORDED, event)
        return
    try:
        await runtime.events.publish(AUDIT_RECORDED, event, message_id=event.event_id)
    except Exception as exc:
        log.error("audit.publish_failed", type=event.type, error=str(exc))
        raise Unavailable("the audit trail is unavailable; the action was not performed") from exc


FAILURES = frozenset(
    {
        ErrorCode.internal,
        ErrorCode.unavailable,
        ErrorCode.no_route,
        ErrorCode.timeout,
        ErrorCode.sealed,
        ErrorCode.integrity,
    }
)
"""Error codes that mean something failed (or was tampered with), not a refused request."""


async def record_unsuccessful(
    runtime: Runtime,
    source: str,
    type: AuditType,
    action: AuditAction,
    exc: BaseException,
    *,
    patient_id: str | None = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
) -> None:
    """Audit an action that raised: `refused` for a 4xx, `failure` for anything else.

    Published at once (the transaction it happened in is rolled back), best effort: the
    action has already not happened, so a missing audit trail must not hide its error.
    """
    refused = isinstance(exc, RpcError) and exc.code not in FAILURES
    detail = f"{exc.code.value}: {exc.message}" if isinstance(exc, RpcError) else "error"
    event = make_event(
        source,
        type,
        action,
        AuditOutcome.refused if refused else AuditOutcome.failure,
        patient_id=patient_id,
        entity_type=entity_type,
        entity_id=entity_id,
        detail=detail,
    )
    try:
        await record(runtime, event)
    except RpcError as audit_error:
        log.error("audit.refusal_not_recorded", type=type, error=audit_error.message)


async def record_refusal(runtime: Runtime, source: str, type: AuditType, detail: str) -> None:
    """Audit a refused call or event (best effort: refusing is already the safe outcome)."""
    event = make_event(source, type, AuditAction.execute, AuditOutcome.refused, detail=detail)
    try:
        await record(runtime, event)
    except RpcError:
        log.warning("audit.refusal_not_recorded", type=type)


async def record_rejected_row(
    runtime: Runtime, source: str, *, table: str, pk: str, why: str, patient_id: str | None = None
) -> None:
    """Audit a stored row that is not served (it fails its MAC, or does not decrypt):
    an edit outside Medihaven. Logged as `<source>.integrity_failure` too."""
    log.error(f"{source}.integrity_failure", table=table, pk=pk)
    await record(
        runtime,
        make_event(
            source,
            AuditType.integrity_row_rejected,
            AuditAction.read,
            AuditOutcome.failure,
            patient_id=patient_id,
            entity_type=table,
            entity_id=pk,
            detail=f"{table} row {pk} {why}",
        ),
    )
