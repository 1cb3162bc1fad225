"""RPC handlers of the chat service (ping is answered by the shared runtime)."""

from __future__ import annotations

from contracts.chat import SERVICE
from mesh.rpc import RpcRouter

router = RpcRouter(SERVICE)
