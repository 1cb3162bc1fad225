"""RPC handlers of the records service (ping is answered by the shared runtime)."""

from __future__ import annotations

from contracts.records import SERVICE
from mesh.rpc import RpcRouter

router = RpcRouter(SERVICE)
