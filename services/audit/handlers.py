"""RPC handlers of the audit service (ping is answered by the shared runtime)."""

from __future__ import annotations

from contracts.audit import SERVICE
from mesh.rpc import RpcRouter

router = RpcRouter(SERVICE)
