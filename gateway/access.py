"""Who may call what through the gateway: one table, checked before any RPC is made.

Each service enforces the same roles again (`RpcMethod.roles`, checked by the runtime),
and a test asserts that this table and the contracts agree, so a forged principal sent
straight to a service over the bus meets the same rules.
"""

from __future__ import annotations

from typing import Any

from contracts import audit, auth, chat
from contracts import keyvault as kv
from contracts import records as rec
from contracts import scheduling as sched
from contracts.base import ALL_ROLES, Role, RpcMethod

ADMIN = frozenset({Role.administrator})

# Method name -> roles that may call it through a signed route.
ACCESS: dict[str, frozenset[Role]] = {
    auth.ME.name: ALL_ROLES,
    auth.DIRECTORY.name: ALL_ROLES,
    auth.ISSUE_TOKEN.name: ADMIN,
    auth.LIST_TOKENS.name: ADMIN,
    auth.REVOKE_TOKEN.name: ADMIN,
    auth.LIST_STAFF.name: ADMIN,
    auth.SET_ACCOUNT_STATUS.name: ADMIN,
    auth.ROTATE_KEY.name: ALL_ROLES,
    kv.SEAL.name: ADMIN,
    kv.ROTATE.name: ADMIN,
    chat.OPEN_DIRECT.name: ALL_ROLES,
    chat.CREATE_GROUP.name: ALL_ROLES,
    chat.LIST_CONVERSATIONS.name: ALL_ROLES,
    chat.SEND.name: ALL_ROLES,
    chat.HISTORY.name: ALL_ROLES,
    chat.MARK_READ.name: ALL_ROLES,
    chat.RECEIPTS.name: ALL_ROLES,
    audit.QUERY.name: ADMIN,
    audit.PATIENT_HISTORY.name: ADMIN,
    audit.EXPORT.name: ADMIN,
    audit.VERIFY.name: ADMIN,
    sched.SET_WORKING_HOURS.name: sched.ROSTER,
    sched.SET_DAYS_OFF.name: sched.ROSTER,
    sched.GET_AVAILABILITY.name: sched.ROSTER,
    sched.BOOK.name: sched.DESK,
    sched.RESCHEDULE.name: sched.DESK,
    sched.CANCEL.name: sched.DESK,
    sched.RECORD_OUTCOME.name: sched.DESK_AND_PHYSICIANS,
    sched.GET_APPOINTMENT.name: sched.DESK_AND_PHYSICIANS,
    sched.CALENDAR.name: sched.DESK_AND_PHYSICIANS,
    sched.FREE_SLOTS.name: sched.DESK_AND_PHYSICIANS,
    **{m.name: m.roles or ALL_ROLES for m in rec.PATIENT_DATA_METHODS},
    **{m.name: m.roles or ALL_ROLES for m in rec.CATALOG_METHODS},
    **{
        m.name: m.roles or ALL_ROLES
        for m in (rec.BREAK_GLASS, rec.BREAK_GLASS_REPORT, rec.ACKNOWLEDGE_BREAK_GLASS)
    },
}

# Methods that read patient data: they also draw from the stricter per-account bucket.
PATIENT_DATA: frozenset[str] = frozenset(
    {
        sched.CALENDAR.name,
        sched.GET_APPOINTMENT.name,
        *(m.name for m in rec.PATIENT_DATA_METHODS if not m.write),
    }
)


def allowed(method: RpcMethod[Any, Any], role: Role) -> bool:
    roles = ACCESS.get(method.name)
    return roles is not None and role in roles
