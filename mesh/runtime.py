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
from typing import Any

import aio_pika
from aio_pika.abc import AbstractRobustConnection

from contracts.base import EventType
from mesh.db import Database, ensure_database
from mesh.events import EventConsumer, EventHandler, EventPublisher
from mesh.logging import get_logger
from mesh.migrations import apply_migrations
from mesh.outbox import OutboxRelay
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
    state: dict[str, Any] = field(default_factory=dict)
    """Service-specific objects (e.g. the keyvault's keyring), set by its startup hook."""
    on_shutdown: Callable[[Runtime], Awaitable[None]] | None = None
    instance: str = field(default_factory=lambda: secrets.token_hex(3))
    """This process's replica id, e.g. `records-4242-a1b2c3` (set at start)."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

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
    ) -> Runtime:
        """Connect, migrate, then begin serving (RPC last, once everything is ready)."""
        connection = await aio_pika.connect_robust(
            settings.amqp_url.get_secret_value(), client_properties={"connection_name": name}
        )
        rpc = RpcClient(connection, settings.rpc_deadline_s)
        await rpc.start()
        publisher = EventPublisher(connection)
        await publisher.start()
        runtime = cls(
            name,
            settings,
            connection,
            rpc,
            publisher,
            on_shutdown=on_shutdown,
            instance=f"{name}-{os.getpid()}-{secrets.token_hex(3)}",
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
            for spec in consumers:
                consumer = EventConsumer(
                    connection, spec.group, spec.events, spec.handler(runtime), durable=spec.durable
                )
                await consumer.start()
                runtime.consumers.append(consumer)
            if runtime.db is not None:
                # After this process's own consumer queues exist, so it can hear itself.
                runtime.relay = OutboxRelay(runtime.db, publisher, poll_s=settings.outbox_poll_s)
                runtime.relay.start()
            if router is not None:
                runtime.server = RpcServer(runtime, router, settings.rpc_prefetch)
                await runtime.server.start()
        except BaseException:
            await runtime.stop()
            raise
        return runtime

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
