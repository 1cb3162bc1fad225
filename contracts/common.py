"""What spans the contracts: the services, the broker identities, ping, every method and
event, and the index of routed methods (which operation a signed request is for)."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

import contracts
from contracts import attendance, audit, auth, chat, keyvault, records, scheduling
from contracts.base import GATEWAY, OPERATOR, EventType, Model, RpcMethod
from contracts.http import RouteIndex


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

IDENTITIES: tuple[str, ...] = (GATEWAY, OPERATOR, *SERVICES, attendance.TIMECLOCK)
"""Every broker identity of the mesh: one RabbitMQ user each (see `mesh.broker`)."""

SERVED_BY: dict[str, str] = {records.ACCESS_SERVICE: records.SERVICE}
"""Request queues served by another identity than their own name (records' access rule)."""


def served_by(service: str) -> str:
    """The broker identity that consumes `service`'s request queue (and signs its replies)."""
    return SERVED_BY.get(service, service)


CONSUMES: dict[str, tuple[EventType[Any], ...]] = {
    GATEWAY: (
        auth.ACCOUNT_CHANGED,
        chat.MESSAGE_SENT,
        chat.MESSAGES_READ,
        *scheduling.CALENDAR_EVENTS,
        records.BREAK_GLASS_OPENED,
        *attendance.EVENTS,
    ),
    auth.SERVICE: attendance.EVENTS,
    audit.SERVICE: (audit.AUDIT_RECORDED,),
    keyvault.SERVICE: (auth.ACCOUNT_CHANGED,),
    records.SERVICE: (auth.ACCOUNT_CHANGED,),
    scheduling.SERVICE: (auth.ACCOUNT_CHANGED,),
    chat.SERVICE: (auth.ACCOUNT_CHANGED,),
}
"""The events each identity binds queues to; the broker refuses any other binding (topic
permissions), so a taken-over service cannot listen to events it has no use for."""


def ping(service: str) -> RpcMethod[PingRequest, PingReply]:
    """The `ping` method of `service` (answered by the shared runtime itself, to anyone on
    the bus: it tells only that a replica is there)."""
    return RpcMethod(service, f"{service}.ping", PingRequest, PingReply)


@cache
def collect() -> tuple[tuple[RpcMethod[Any, Any], ...], tuple[EventType[Any], ...]]:
    """Every RPC method and event type defined in `contracts/` (and every ping)."""
    methods: dict[str, RpcMethod[Any, Any]] = {p.name: p for p in map(ping, SERVICES)}
    events: dict[str, EventType[Any]] = {}
    for info in pkgutil.iter_modules(contracts.__path__):
        module = importlib.import_module(f"contracts.{info.name}")
        for value in vars(module).values():
            if isinstance(value, RpcMethod):
                methods[value.name] = value
            elif isinstance(value, EventType):
                events[value.routing_key] = value
    return (
        tuple(sorted(methods.values(), key=lambda m: m.name)),
        tuple(sorted(events.values(), key=lambda e: e.routing_key)),
    )


@cache
def routes() -> RouteIndex:
    """Which routed method a signed `@method` + `@target-uri` belongs to."""
    return RouteIndex(collect()[0])
