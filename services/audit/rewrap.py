"""Audit's table for the online rewrap (`mesh.rewrap`): each checkpoint's MAC over the
chain head it marks (`services.audit.chain.head_mac_row`), re-MAC'd only after it
verified."""

from __future__ import annotations

from contracts.audit import SERVICE
from mesh.rewrap import Col, Mac, RewrapJob, Table
from services.audit.chain import HEAD_TABLE
from services.audit.handlers import router as handlers_router

TABLES = (
    Table(
        "audit_checkpoints",
        pk=("seq",),
        vault_table=HEAD_TABLE,
        mac=Mac("mac", (Col("hash", "hex"),)),
    ),
)

JOB = RewrapJob(SERVICE, TABLES)
router = JOB.serve(handlers_router)
"""Audit's handlers, with its `key_usage` scan and the rewrap worker."""
