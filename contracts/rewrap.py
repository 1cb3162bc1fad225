"""What each service that owns encrypted or MAC'd tables answers for the key lifecycle.

`<service>.key_usage` is a fresh scan of the service's own tables (declared once, in
`services/<service>/rewrap.py`, run by `mesh.rewrap`): how many fields and MAC tags are
under each key. The keyvault asks every owning service before it destroys a key, and
destroys none that any row still uses. Only the keyvault may ask.
"""

from __future__ import annotations

from typing import Any

from contracts import audit, auth, chat, records, scheduling
from contracts.base import RpcMethod
from contracts.keyvault import REWRAP_SERVICES, KeyUsageReply, KeyUsageRequest
from contracts.keyvault import SERVICE as KEYVAULT


def _key_usage(service: str) -> RpcMethod[KeyUsageRequest, KeyUsageReply]:
    return RpcMethod(
        service,
        f"{service}.key_usage",
        KeyUsageRequest,
        KeyUsageReply,
        callers=frozenset({KEYVAULT}),
    )


AUTH_KEY_USAGE = _key_usage(auth.SERVICE)
RECORDS_KEY_USAGE = _key_usage(records.SERVICE)
SCHEDULING_KEY_USAGE = _key_usage(scheduling.SERVICE)
CHAT_KEY_USAGE = _key_usage(chat.SERVICE)
AUDIT_KEY_USAGE = _key_usage(audit.SERVICE)

KEY_USAGE: dict[str, RpcMethod[Any, Any]] = {
    m.service: m
    for m in (
        AUTH_KEY_USAGE,
        RECORDS_KEY_USAGE,
        SCHEDULING_KEY_USAGE,
        CHAT_KEY_USAGE,
        AUDIT_KEY_USAGE,
    )
}
"""Per owning service, its scan method."""

assert set(KEY_USAGE) == REWRAP_SERVICES, "every owner of a keyvault table scans its own"
