"""Descriptors that name every RPC method and event type in one place.

A service, the gateway and the tests all refer to these objects, never to the string
names, so renaming a method is a one-line change here. Each descriptor also says who may
use it: the services (broker identities) that may call a method or publish an event, the
gateway route that carries a user's request for it, and what a user's signed request for
it lets the keyvault do (`contracts.grants`). The runtime enforces all of it before any
handler runs (`mesh.rpc`, `mesh.events`, `mesh.proofs`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from contracts.grants import Grant


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


# ---------------------------------------------------------------------------- identities

GATEWAY = "gateway"
"""The HTTP edge: the only caller of methods that carry a user's signed request."""
OPERATOR = "operator"
"""The operator's command-line tool on the bus (`medihaven admin bootstrap`, `vault init`)."""
ANY_CALLER: frozenset[str] | None = None
"""`callers=None`: any identity on the bus (test fixtures and benchmarks only; every
method in `contracts/` names its callers, which a test checks)."""


# ---------------------------------------------------------------------------- HTTP routes

API_PREFIX = "/api/v1"
HttpMethodName = Literal["GET", "POST", "PUT", "DELETE"]
_PARAM = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class HttpRoute:
    """The gateway route that carries a user's request for one RPC method.

    The RPC request is built from the signed HTTP request alone: the path parameters
    named in `path`, the query parameters listed in `query`, and, for POST and PUT, every
    other field from the JSON body (`contracts.http.build_request`). The gateway builds
    it that way, and the service (and the keyvault, for what the request lets it do)
    builds it again from the forwarded signature material, so a signature authorises
    exactly the one request it was made for.
    """

    method: HttpMethodName
    path: str
    """Under `prefix` (API_PREFIX), e.g. "/patients/{patient_id}/summary"."""
    query: tuple[str, ...] = ()
    status: int = 200
    patient_data: bool = False
    """Reads of patient data also draw from the stricter per-account bucket."""
    signer: Literal["account", "new_key"] = "account"
    """"new_key": signed by the key in the body (registration), keyid `register`."""
    summary: str = ""
    instance: str | None = None
    """A request field naming the one replica the call is for (a share sealed to that
    keyvault replica's own key): the gateway sends it to that replica's own queue."""
    prefix: str = API_PREFIX
    """Where the route lives at the gateway: the API, or the FHIR base (`contracts.fhir`)."""

    @property
    def full_path(self) -> str:
        return self.prefix + self.path

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(_PARAM.findall(self.path))

    @property
    def has_body(self) -> bool:
        return self.method in ("POST", "PUT")


ReqT = TypeVar("ReqT", bound=BaseModel)
RespT = TypeVar("RespT", bound=BaseModel)
EvT = TypeVar("EvT", bound=BaseModel)

EVENTS_EXCHANGE = "medihaven.events"
"""Topic exchange that carries every event."""
UNROUTED_EXCHANGE = "medihaven.unrouted"
"""Alternate exchange of EVENTS_EXCHANGE: keeps events nobody subscribes to yet."""
UNROUTED_QUEUE = "medihaven.unrouted.events"
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

    `callers`: the broker identities (services, `GATEWAY`, `OPERATOR`) allowed to call it,
    checked against the AMQP `user_id` the broker validated; a method with a `route` is
    called by the gateway only unless it says otherwise. `route`: the user's signed HTTP
    request that this method serves; the runtime then verifies the forwarded signature and
    that the request is the one it was made for. `on_behalf`: a method that serves a
    downstream step of some other user operation (keyvault decrypt): it needs a fresh
    proof of that operation, and `grant` (on the operation's method) bounds what it does.

    `roles=None` means any principal (or none); otherwise the handler runs only for a
    principal with one of these roles. `write=True` methods require an idempotency key: a
    redelivered request is answered from the first result instead of writing twice.
    `keep_reply=False` for a write whose reply holds a secret or patient data (a token
    shown once, a message's text): the reply is then not stored, and a repeat is refused
    with `conflict`.
    """

    service: str
    name: str
    request: type[ReqT]
    response: type[RespT]
    write: bool = False
    roles: frozenset[Role] | None = None
    keep_reply: bool = True
    callers: frozenset[str] | None = field(default=None)
    route: HttpRoute | None = None
    on_behalf: bool = False
    grant: Grant | None = None
    per_replica: bool = False
    """Served by every replica in turn for one user request (sealing): the keyvault then
    accepts a proof once per replica instead of once in all."""

    def __post_init__(self) -> None:
        if self.callers is None and self.route is not None:
            object.__setattr__(self, "callers", frozenset({GATEWAY}))

    @property
    def queue(self) -> str:
        return rpc_queue(self.service)

    @property
    def for_user(self) -> bool:
        """Served only on a user's own fresh signature (the runtime verifies it)."""
        return self.route is not None or self.on_behalf

    @property
    def route_text(self) -> str:
        """How people name this operation: its HTTP route, or the method's name."""
        return f"{self.route.method} {self.route.full_path}" if self.route else self.name

    def may_call(self, identity: str | None) -> bool:
        return self.callers is None or (identity is not None and identity in self.callers)


@dataclass(frozen=True)
class EventType(Generic[EvT]):
    """One event: its routing key on EVENTS_EXCHANGE, its payload model, and the broker
    identities allowed to publish it (None: any, for test fixtures only)."""

    routing_key: str
    model: type[EvT]
    publishers: frozenset[str] | None = None

    def may_publish(self, identity: str | None) -> bool:
        return self.publishers is None or (identity is not None and identity in self.publishers)


ALL_ROLES = frozenset(Role)
