"""RPC handlers of the keyvault service (ping is answered by the shared runtime)."""

from __future__ import annotations

from contracts.keyvault import SERVICE
from mesh.rpc import RpcRouter

router = RpcRouter(SERVICE)
