"""Every method and event in contracts/, tried from the wrong side of the bus.

Each service's request queue is served by the shared runtime with handlers that must never
run (each records that it did): the sweep proves the runtime refuses, before any handler,
a call from a broker identity the contract does not list, and a call for a user without
the user's signature for that very operation. Every event type is published by an
identity that may not publish it and is refused before its consumer's handler. Real
broker, real broker users (the session's), nothing faked on the wire.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel

from contracts import auth, chat, keyvault
from contracts.audit import AuditAction, AuditAgent, AuditEvent, AuditOutcome
from contracts.auth import Account, AccountStatus, TokenRow
from contracts.base import GATEWAY, Role, RpcMethod
from contracts.common import IDENTITIES, collect, served_by
from contracts.http import target_of
from mesh.context import CallContext
from mesh.errors import Forbidden, NotFound, RpcTimeout, Unauthenticated
from mesh.events import ReceivedEvent
from mesh.rpc import RpcRouter
from mesh.runtime import ConsumerSpec, Runtime
from mesh.settings import Settings
from tests.conftest import isolated_settings
from tests.support.clinic import TEST_ORIGIN, Clinic, StaffMember, clinic
from tests.support.polling import until

# Some sample requests are placeholders the models refuse (they are refused unread).
pytestmark = pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
METHODS, EVENTS = collect()
GUARDED = [m for m in METHODS if m.callers is not None]
FOR_USER = [m for m in GUARDED if m.for_user]
RAN: list[str] = []


def _stub(method: RpcMethod[Any, Any]) -> Any:
    async def handler(req: BaseModel, ctx: CallContext) -> BaseModel:
        if method is auth.RESOLVE_KEY:  # the runtimes' own signer lookups: nobody is known
            raise NotFound("no such account")
        RAN.append(method.name)
        raise AssertionError(f"{method.name}'s handler ran")

    return handler


def _routers() -> dict[str, RpcRouter]:
    """A router per service (but the keyvault) whose every handler records that it ran."""
    routers: dict[str, RpcRouter] = {}
    for method in GUARDED:
        if method.service != keyvault.SERVICE:
            router = routers.setdefault(method.service, RpcRouter(method.service))
            router.handler(method)(_stub(method))
    return routers


NOW = datetime.now(UTC)
TOKEN = TokenRow(
    token_id=str(uuid.uuid4()),
    token_hash="0" * 64,
    role=Role.physician,
    expires_at=NOW,
    issued_by=None,
    created_at=NOW,
)
ACCOUNT = Account(
    account_id=str(uuid.uuid4()),
    username="someone",
    display_name="Someone",
    role=Role.administrator,
    status=AccountStatus.active,
    public_key="A" * 43 + "=",
    created_at=NOW,
    updated_at=NOW,
)
SAMPLES: dict[type[BaseModel], BaseModel] = {
    keyvault.DecryptRequest: keyvault.DecryptRequest(rows=[]),
    keyvault.BlindIndexRequest: keyvault.BlindIndexRequest(queries=[]),
    keyvault.MacTokenRequest: keyvault.MacTokenRequest(token=TOKEN),
    keyvault.MacAccountRequest: keyvault.MacAccountRequest(account=ACCOUNT),
    keyvault.CeremonyStartRequest: keyvault.CeremonyStartRequest(
        kind=keyvault.CeremonyKind.rekey, recipient_public_key="A" * 43 + "="
    ),
    keyvault.CeremonyCommitRequest: keyvault.CeremonyCommitRequest(
        ceremony_id=str(uuid.uuid4()), instance="keyvault-0", shares_digest="0" * 64
    ),
    chat.MessageSent: chat.MessageSent(
        message_id=1, conversation_id="c", sender_id="s", member_ids=["s"], sent_at=NOW
    ),
    chat.MessagesRead: chat.MessagesRead(
        conversation_id="c", account_id="a", read_up_to=1, member_ids=["a"]
    ),
    AuditEvent: AuditEvent(
        event_id=str(uuid.uuid4()),
        type="bus.sweep",
        action=AuditAction.execute,
        outcome=AuditOutcome.success,
        recorded=NOW,
        agent=AuditAgent(),
        source="audit",
    ),
}
"""Valid instances of the models whose required fields need more than a placeholder."""


def sample(method: RpcMethod[Any, Any]) -> BaseModel:
    """A request the method's model accepts (defaults; required fields filled in)."""
    if method.request in SAMPLES:
        return SAMPLES[method.request]
    values: dict[str, Any] = {}
    for name, info in method.request.model_fields.items():
        if info.is_required():
            values[name] = _value(info.annotation)
    model: type[BaseModel] = method.request
    try:
        return model.model_validate(values)
    except ValueError:  # a placeholder the model refuses: the body is refused before use
        return model.model_construct(**values)


def _value(annotation: Any) -> Any:
    text = str(annotation)
    if "Role" in text:
        return Role.physician
    if "int" in text:
        return 1
    if "bool" in text:
        return False
    if "date" in text:
        return "2030-01-07"
    return str(uuid.uuid4())


@dataclass
class World:
    clinic: Clinic
    """A real keyvault (its runtime guards its methods like any other) and staff."""
    stubs: Settings
    """The namespace of the stub servers of every other service."""

    def settings_for(self, method: RpcMethod[Any, Any]) -> Settings:
        return self.clinic.settings if method.service == keyvault.SERVICE else self.stubs


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world() -> AsyncIterator[World]:
    with isolated_settings("sweep") as stubs:
        servers = [
            await Runtime.start(
                f"sweep-{service}",
                stubs,
                router=router,
                use_database=False,
                identity=served_by(service),
            )
            for service, router in _routers().items()
        ]
        try:
            async with clinic("sweepkv") as c:
                yield World(c, stubs)
        finally:
            for server in servers:
                await server.stop()


async def caller(settings: Settings, identity: str) -> Runtime:
    return await Runtime.start(f"sweep-{identity}", settings, use_database=False, identity=identity)


def outsider_of(method: RpcMethod[Any, Any]) -> str:
    """A broker identity of the mesh that the method does not list as a caller."""
    assert method.callers is not None
    return next(i for i in ("outsider", *IDENTITIES) if i not in method.callers)


@pytest.mark.parametrize("method", GUARDED, ids=[m.name for m in GUARDED])
async def test_a_caller_outside_the_contract_is_refused(
    method: RpcMethod[Any, Any], world: World
) -> None:
    runtime = await caller(world.settings_for(method), outsider_of(method))
    try:
        # The body does not matter: the caller is refused before it is read.
        with pytest.raises((Forbidden, RpcTimeout)) as refused:
            await runtime.rpc.call_raw(
                method.queue, method.name, b"{}", idempotency_key=str(uuid.uuid4()), timeout=3
            )
        assert isinstance(refused.value, Forbidden), f"{method.name} was not refused in time"
    finally:
        await runtime.stop()
    assert method.name not in RAN


@pytest.mark.parametrize("method", FOR_USER, ids=[m.name for m in FOR_USER])
async def test_a_call_for_a_user_without_a_proof_for_it_is_refused(
    method: RpcMethod[Any, Any], world: World
) -> None:
    assert method.callers is not None
    identity = GATEWAY if GATEWAY in method.callers else sorted(method.callers)[0]
    runtime = await caller(world.settings_for(method), identity)
    member = await world.clinic.add_staff(f"sweeper-{uuid.uuid4().hex[:6]}", Role.administrator)
    try:
        request = sample(method)
        me = auth.MeRequest()
        verb, path, body = target_of(auth.ME, me)
        other = member.proof(verb, f"{TEST_ORIGIN}{path}", body)  # a real proof, other route
        forged = StaffMember(Ed25519PrivateKey.generate(), member.account)
        for proof in (None, other, forged.proof()):
            with pytest.raises((Unauthenticated, Forbidden)):
                await runtime.rpc.call(
                    method,
                    request,
                    principal=member.principal,
                    proof=proof,
                    idempotency_key=str(uuid.uuid4()),
                    timeout=3,
                )
    finally:
        await runtime.stop()
    assert method.name not in RAN


GUARDED_EVENTS = [e for e in EVENTS if e.publishers is not None]


@pytest.mark.parametrize("event", GUARDED_EVENTS, ids=[e.routing_key for e in GUARDED_EVENTS])
async def test_an_event_from_a_service_not_allowed_to_publish_it_is_refused(
    event: Any, world: World
) -> None:
    c = world.clinic
    delivered: list[ReceivedEvent[Any]] = []

    def watch(_: Runtime) -> Any:
        async def handle(received: ReceivedEvent[Any]) -> None:
            delivered.append(received)

        return handle

    watcher = await Runtime.start(
        "sweep-watcher",
        c.settings,
        use_database=False,
        identity="observer",
        consumers=[ConsumerSpec(f"sweep-{uuid.uuid4().hex[:6]}", [event], watch, False)],
    )
    intruder = next(i for i in ("outsider", *IDENTITIES) if not event.may_publish(i))
    publisher = await caller(c.settings, intruder)
    rightful = await caller(c.settings, sorted(event.publishers)[0])
    try:
        fields = event.model.model_fields.items()
        payload = SAMPLES.get(event.model) or event.model.model_validate(
            {k: _value(f.annotation) for k, f in fields}
        )
        body = payload.model_dump_json().encode()
        await publisher.events.publish_raw(
            event.routing_key, body, message_id=str(uuid.uuid4()), headers={}
        )
        await rightful.events.publish_raw(
            event.routing_key, body, message_id="rightful", headers={}
        )
        await until(lambda: any(d.message_id == "rightful" for d in delivered), timeout=10)
        assert [d.publisher for d in delivered] == [sorted(event.publishers)[0]]
    finally:
        for runtime in (publisher, rightful, watcher):
            await runtime.stop()
