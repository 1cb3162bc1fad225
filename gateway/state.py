"""What the gateway process holds beside its runtime: the live hub and the security layer
(`service_state`: a dataclass, never a dict of names)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mesh.runtime import Runtime, service_state

if TYPE_CHECKING:
    from gateway.live import Hub
    from gateway.security import Security


@dataclass
class GatewayState:
    hub: Hub | None = None
    """The live-event hub (set by its start-up hook)."""
    security: Security | None = None


def state_of(runtime: Runtime) -> GatewayState:
    return service_state(runtime, GatewayState)
