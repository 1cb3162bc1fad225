"""RPC handlers of the auth service (ping is answered by the shared runtime)."""

from __future__ import annotations

from contracts.auth import SERVICE
from mesh.rpc import RpcRouter

router = RpcRouter(SERVICE)
