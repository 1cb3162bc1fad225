"""Auth's tables for the online rewrap (`mesh.rewrap`): staff accounts and registration
tokens are MAC'd, nothing is encrypted. The keyvault never MACs such rows on request; a
rewrap re-MACs one only after its stored tag verified (proof that the keyvault made it),
over exactly the same row. The layouts are `contracts.auth.account_mac_row` and
`token_mac_row`."""

from __future__ import annotations

from contracts.auth import ACCOUNTS_TABLE, SERVICE, TOKENS_TABLE
from mesh.rewrap import Col, Mac, RewrapJob, Table
from services.auth.handlers import router as handlers_router

TABLES = (
    Table(
        ACCOUNTS_TABLE,
        pk=("account_id",),
        mac=Mac(
            "mac",
            (
                Col("username"),
                Col("display_name"),
                Col("role"),
                Col("status"),
                Col("public_key"),
                Col("specialty"),
            ),
        ),
    ),
    Table(
        TOKENS_TABLE,
        pk=("token_id",),
        mac=Mac(
            "mac",
            (
                Col("token_hash"),
                Col("role"),
                Col("expires_at", "iso"),
                Col("issued_by"),
                Col("created_at", "iso"),
                Col("revoked_at", "iso"),
                Col("used_by"),
                Col("used_at", "iso"),
            ),
        ),
    ),
)

JOB = RewrapJob(SERVICE, TABLES)
router = JOB.serve(handlers_router)
"""Auth's handlers, with its `key_usage` scan and the rewrap worker."""
