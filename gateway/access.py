"""Who may call what through the gateway: made from the contracts, checked before any RPC.

Each routed method's roles (`RpcMethod.roles`) are checked here, at the edge, and again
by the service's runtime, which derives the principal from the user's own signature; a
principal forged on the bus meets the same rules, and a signature made for another
operation is refused there (`mesh.proofs`).
"""

from __future__ import annotations

from typing import Any

from contracts.base import ALL_ROLES, Role, RpcMethod
from contracts.common import collect

ACCESS: dict[str, frozenset[Role]] = {
    m.name: m.roles or ALL_ROLES for m in collect()[0] if m.route is not None
}
"""Method name -> roles that may call it through a signed route."""

PATIENT_DATA: frozenset[str] = frozenset(
    m.name for m in collect()[0] if m.route is not None and m.route.patient_data
)
"""Methods that read patient data: they also draw from the stricter per-account bucket."""


def allowed(method: RpcMethod[Any, Any], role: Role) -> bool:
    roles = ACCESS.get(method.name)
    return roles is not None and role in roles
