"""The benchmark's echo method (bench-only; not part of the product's contracts)."""

from __future__ import annotations

from contracts.base import Model, RpcMethod
from mesh.context import CallContext
from mesh.rpc import RpcRouter

RAW_QUEUE = "bench.raw-echo"


class Echo(Model):
    text: str


ECHO = RpcMethod("benchecho", "benchecho.echo", Echo, Echo)


def make_router() -> RpcRouter:
    router = RpcRouter("benchecho")

    @router.handler(ECHO)
    async def echo(req: Echo, ctx: CallContext) -> Echo:
        return req

    return router
