"""Methods every service answers."""

from __future__ import annotations

from contracts import audit, auth, chat, keyvault, records, scheduling
from contracts.base import Model, RpcMethod


class PingRequest(Model):
    pass


class PingReply(Model):
    service: str
    instance: str
    version: str


SERVICES: tuple[str, ...] = (
    auth.SERVICE,
    keyvault.SERVICE,
    records.SERVICE,
    scheduling.SERVICE,
    chat.SERVICE,
    audit.SERVICE,
)
"""Every service of the mesh, in the order the runner starts them."""


def ping(service: str) -> RpcMethod[PingRequest, PingReply]:
    """The `ping` method of `service` (answered by the shared runtime itself)."""
    return RpcMethod(service, f"{service}.ping", PingRequest, PingReply)
