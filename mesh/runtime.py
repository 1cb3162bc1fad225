"""Everything a process of the mesh holds while it runs, started and stopped in order.

A service's lifespan builds one `Runtime`: settings, the RabbitMQ connection, the RPC
client, the event publisher, its database (with migrations applied) and outbox relay,
its RPC server and its event consumers. Handlers reach it through `ctx.runtime`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aio_pika.abc import AbstractRobustConnection

from contracts.audit import AuditType
from contracts.auth import ACCOUNT_CHANGED, AccountChanged
from contracts.base import EventType
from contracts.common import CONSUMES, IDENTITIES
from mesh import amqp, retention
from mesh.accounts import RemoteAccounts
from mesh.db import Database, ensure_database
from mesh.events import EventConsumer, EventHandler, EventPublisher, ReceivedEvent
from mesh.logging import get_logger
from mesh.migrations import apply_migrations
from mesh.outbox import OutboxRelay
from mesh.proofs import AccountSource, ProofLedger
from mesh.rpc import RpcClient, RpcRouter, RpcServer
from mesh.settings import Settings

log = get_logger("mesh.runtime")


@dataclass(frozen=True)
class ConsumerSpec:
    """A consumer group this process joins: the events it wants and its handler."""

    group: str
    events: Sequence[EventType[Any]]
    handler: Callable[[Runtime], EventHandler]
    durable: bool = True
    prefetch: int = 32
    """Events handled at once (a handler that batches, e.g. the audit chain, wants many)."""
    in_order: bool = False
    """One replica at a time takes the group's events (RabbitMQ's single active consumer;
    the others stand by and one takes over when it goes): they are handled in the order
    they were published, as the gateway's live log must hold them."""


@dataclass
class Runtime:
    name: str
    settings: Settings
    connection: AbstractRobustConnection
    rpc: RpcClient
    events: EventPublisher
    db: Database | None = None
    relay: OutboxRelay | None = None
    server: RpcServer | None = None
    consumers: list[EventConsumer] = field(default_factory=list)
    state: object = None
    """The service's own state: one dataclass per service (`service_state`)."""
    on_shutdown: Callable[[Runtime], Awaitable[None]] | None = None
    instance: str = field(default_factory=lambda: secrets.token_hex(3))
    """This process's replica id, e.g. `records-4242-a1b2c3` (set at start)."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    identity: str = ""
    """The broker identity this process connects as (a service, `gateway`, `operator`)."""
    accounts: AccountSource | None = None
    """Where signers' accounts are looked up to verify forwarded signatures."""
    ledger: ProofLedger | None = None
    """If set (the keyvault), every signed request it serves is accepted once only."""

    @property
    def database(self) -> Database:
        """The service's database, where a handler needs one (every service but the
        gateway has one): never Optional there."""
        if self.db is None:
            raise RuntimeError(f"{self.name} has no database")
        return self.db

    @property
    def broker_user(self) -> str:
        return self.settings.broker_user(self.identity or self.name)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run a background loop for as long as the runtime runs (cancelled on stop)."""
        self.tasks.append(asyncio.create_task(coro, name=name))

    @classmethod
    async def start(
        cls,
        name: str,
        settings: Settings,
        *,
        router: RpcRouter | None = None,
        migrations: Path | None = None,
        consumers: Sequence[ConsumerSpec] = (),
        on_startup: Callable[[Runtime], Awaitable[None]] | None = None,
        on_shutdown: Callable[[Runtime], Awaitable[None]] | None = None,
        use_database: bool = True,
        identity: str | None = None,
    ) -> Runtime:
        """Connect as `identity` (default: `name`), migrate, then begin serving (RPC last,
        once everything is ready)."""
        identity = identity or name
        # Any node of the cluster (`amqp_nodes`), and the next one after losing it.
        connection = await amqp.connect(settings.amqp_urls_for(identity), name=name)
        user_id = settings.broker_user(identity)
        rpc = RpcClient(
            connection, settings.rpc_deadline_s, user_id=user_id, user_of=settings.broker_user
        )
        await rpc.start()
        publisher = EventPublisher(connection, user_id=user_id)
        await publisher.start()
        runtime = cls(
            name,
            settings,
            connection,
            rpc,
            publisher,
            on_shutdown=on_shutdown,
            instance=f"{name}-{os.getpid()}-{secrets.token_hex(3)}",
            identity=identity,
        )
        try:
            if use_database:
                database = settings.database(name)
                await ensure_database(settings, database)
                applied = await apply_migrations(settings, database, *filter(None, [migrations]))
                if applied:
                    log.info("db.migrated", database=database, applied=applied)
                runtime.db = await Database.connect(settings, database)
            if on_startup is not None:
                await on_startup(runtime)
            for hook in router.startup if router is not None else ():
                await hook(runtime)
            specs = list(consumers)
            if router is not None and any(r.method.for_user for r in router.routes.values()):
                if runtime.accounts is None:
                    runtime.accounts = RemoteAccounts(rpc)
                if identity not in IDENTITIES or ACCOUNT_CHANGED in CONSUMES.get(identity, ()):
                    specs.append(
                        ConsumerSpec(f"{identity}-accounts", [ACCOUNT_CHANGED], _forget, False)
                    )
            for spec in specs:
                await runtime.join(spec)
            if runtime.db is not None:
                # After this process's own consumer queues exist, so it can hear itself.
                runtime.relay = OutboxRelay(runtime.db, publisher, poll_s=settings.outbox_poll_s)
                runtime.relay.start()
                runtime.spawn(retention.run(runtime.db, settings), "retention")
            if router is not None:
                runtime.server = RpcServer(runtime, router, settings.rpc_prefetch)
                await runtime.server.start()
        except BaseException:
            await runtime.stop()
            raise
        return runtime

    async def join(self, spec: ConsumerSpec) -> EventConsumer:
        """Start consuming one group's events (publishers checked against the contracts)."""

        async def refused(routing_key: str, publisher: str | None) -> None:
            from mesh import audit  # mesh.audit needs this module

            detail = f"{routing_key} from {publisher or 'an unknown publisher'}"
            source = self.identity or self.name
            await audit.record_refusal(self, source, AuditType.bus_event_refused, detail)

        consumer = EventConsumer(
            self.connection,
            spec.group,
            spec.events,
            spec.handler(self),
            prefetch=spec.prefetch,
            durable=spec.durable,
            in_order=spec.in_order,
            identity_of=self.settings.identity_of,
            on_refused=refused,
        )
        await consumer.start()
        self.consumers.append(consumer)
        return consumer

    async def stop(self) -> None:
        """Stop consuming, finish in-flight work, flush the outbox, then disconnect."""
        grace = self.settings.shutdown_grace_s
        if self.server is not None:
            await self.server.stop(grace)
        for consumer in self.consumers:
            await consumer.stop(grace)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.on_shutdown is not None:
            try:
                await self.on_shutdown(self)
            except Exception:
                log.exception("runtime.shutdown_hook_failed")
        if self.relay is not None:
            await self.relay.stop()
        await self.rpc.close()
        if self.db is not None:
            await self.db.close()
        await self.connection.close()
        log.info("runtime.stopped")

    def written(self) -> None:
        """Tell the outbox relay a transaction with events just committed."""
        if self.relay is not None:
            self.relay.notify()


def _forget(runtime: Runtime) -> EventHandler:
    """An account changed (role, status, key): look it up afresh next time."""

    async def handle(event: ReceivedEvent[AccountChanged]) -> None:
        if runtime.accounts is not None:
            runtime.accounts.forget(event.payload.account_id)

    return handle


StateT = TypeVar("StateT")


def service_state(runtime: Runtime, kind: type[StateT]) -> StateT:
    """`runtime`'s service state, of the service's own dataclass `kind` (made on first use,
    so each field has a default): typed where a dict of names would hold anything."""
    if runtime.state is None:
        runtime.state = kind()
    state = runtime.state
    if not isinstance(state, kind):
        raise TypeError(f"this process holds a {type(state).__name__}, not a {kind.__name__}")
    return state
