"""Descriptors that name every RPC method and event type in one place.

A service, the gateway and the tests all refer to these objects, never to the string
names, so renaming a method is a one-line change here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """Base for every wire model: unknown fields are refused, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Role(StrEnum):
    administrator = "administrator"
    physician = "physician"
    receptionist = "receptionist"


class Principal(Model):
    """The acting staff member, as verified by the gateway, carried with every message."""

    account_id: str
    role: Role
    username: str | None = None


ReqT = TypeVar("ReqT", bound=BaseModel)
RespT = TypeVar("RespT", bound=BaseModel)
EvT = TypeVar("EvT", bound=BaseModel)

EVENTS_EXCHANGE = "medihaven.events"
"""Topic exchange that carries every event."""
UNROUTED_EXCHANGE = "medihaven.unrouted"
"""Alternate exchange of EVENTS_EXCHANGE: keeps events nobody subscribes to yet."""
UNROUTED_QUEUE = "medihaven.unrouted"
DEAD_LETTER_EXCHANGE = "medihaven.dlx"
"""Where unparseable requests and poison events go, each to its own `.dlq` queue."""


def rpc_queue(service: str) -> str:
    """The request queue of a service; replicas compete on it."""
    return f"rpc.{service}"


def instance_queue(service: str, instance: str) -> str:
    """The queue of one replica (e.g. to unseal that keyvault replica)."""
    return f"rpc.{service}@{instance}"


def broadcast_exchange(service: str) -> str:
    """Fanout to every replica's own queue (for calls that every replica must answer)."""
    return f"rpc.{service}.broadcast"


def event_queue(group: str) -> str:
    """The durable queue of one consumer group."""
    return f"events.{group}"


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dlq"


@dataclass(frozen=True)
class RpcMethod(Generic[ReqT, RespT]):
    """One RPC method: where it goes, what it takes and returns, who may call it.

    `roles=None` means any caller (including other services with no principal);
    otherwise the handler runs only for a principal with one of these roles.
    `write=True` methods require an idempotency key: a redelivered request is
    answered from the first result instead of writing twice. `keep_reply=False` for a
    write whose reply holds a secret or patient data (a token shown once, a message's
    text): the reply is then not stored, and a repeat is refused with `conflict`.
    """

    service: str
    name: str
    request: type[ReqT]
    response: type[RespT]
    write: bool = False
    roles: frozenset[Role] | None = None
    keep_reply: bool = True

    @property
    def queue(self) -> str:
        return rpc_queue(self.service)


@dataclass(frozen=True)
class EventType(Generic[EvT]):
    """One event: its routing key on EVENTS_EXCHANGE and its payload model."""

    routing_key: str
    model: type[EvT]


ALL_ROLES = frozenset(Role)
