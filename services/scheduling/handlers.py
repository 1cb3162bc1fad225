"""RPC handlers of the scheduling service (ping is answered by the shared runtime)."""

from __future__ import annotations

from contracts.scheduling import SERVICE
from mesh.rpc import RpcRouter

router = RpcRouter(SERVICE)
