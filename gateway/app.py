"""The gateway: the one HTTP edge of the mesh (API under /api/v1)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from contracts import chat as chat_contract
from contracts import records as records_contract
from contracts import scheduling as sched_contract
from contracts.auth import ACCOUNT_CHANGED, AccountChanged
from contracts.base import EventType, Role
from gateway import errors, web
from gateway.live import Hub
from gateway.routes import (
    audit,
    catalog,
    chat,
    health,
    identity,
    live,
    records,
    scheduling,
    vault,
)
from gateway.security import Security
from gateway.settings import GatewaySettings, get_gateway_settings
from mesh.events import EventHandler, ReceivedEvent
from mesh.logging import configure_logging, get_logger
from mesh.redis import create_redis
from mesh.runtime import ConsumerSpec, Runtime
from mesh.service import add_probes, check_runtime
from mesh.settings import Settings, get_settings

NAME = "gateway"
log = get_logger("gateway")


async def make_hub(runtime: Runtime) -> None:
    runtime.state["hub"] = Hub()


def forget_changed_accounts(runtime: Runtime) -> EventHandler:
    async def handle(event: ReceivedEvent[AccountChanged]) -> None:
        security: Security | None = runtime.state.get("security")
        if security is not None:
            security.forget(event.payload.account_id)

    return handle


def push_chat_events(runtime: Runtime) -> EventHandler:
    """Each replica pushes chat notifications (ids only) to the members connected to it."""

    async def handle(event: ReceivedEvent[Any]) -> None:
        hub: Hub = runtime.state["hub"]
        payload = event.payload
        if isinstance(payload, chat_contract.MessageSent):
            body = {"type": "message_sent", **payload.model_dump(mode="json")}
        else:
            body = {"type": "messages_read", **payload.model_dump(mode="json")}
        await hub.push(payload.member_ids, body)

    return handle


APPOINTMENT_EVENTS: list[EventType[Any]] = [
    sched_contract.APPOINTMENT_BOOKED,
    sched_contract.APPOINTMENT_RESCHEDULED,
    sched_contract.APPOINTMENT_CANCELLED,
]


def push_appointment_events(runtime: Runtime) -> EventHandler:
    """A physician connected to this replica hears of changes to their calendar."""

    async def handle(event: ReceivedEvent[Any]) -> None:
        hub: Hub = runtime.state["hub"]
        body = {"type": event.routing_key, **event.payload.model_dump(mode="json")}
        await hub.push([event.payload.physician_id], body)

    return handle


def push_break_glass(runtime: Runtime) -> EventHandler:
    """Administrators connected to this replica hear of every emergency access at once."""

    async def handle(event: ReceivedEvent[Any]) -> None:
        hub: Hub = runtime.state["hub"]
        body = {"type": event.routing_key, **event.payload.model_dump(mode="json")}
        await hub.push_role(Role.administrator.value, body)

    return handle


def create_app(
    settings: Settings | None = None, gateway_settings: GatewaySettings | None = None
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cfg = settings or get_settings()
        configure_logging(NAME, cfg)
        redis = create_redis(cfg)
        runtime = await Runtime.start(
            NAME,
            cfg,
            use_database=False,
            # Every gateway replica drops a changed account from its own cache.
            consumers=[
                ConsumerSpec("gateway-accounts", [ACCOUNT_CHANGED], forget_changed_accounts, False),
                ConsumerSpec(
                    "gateway-live",
                    [chat_contract.MESSAGE_SENT, chat_contract.MESSAGES_READ],
                    push_chat_events,
                    False,
                ),
                ConsumerSpec(
                    "gateway-appointments", APPOINTMENT_EVENTS, push_appointment_events, False
                ),
                ConsumerSpec(
                    "gateway-break-glass",
                    [records_contract.BREAK_GLASS_OPENED],
                    push_break_glass,
                    False,
                ),
            ],
            on_startup=make_hub,
        )
        security = Security(runtime, redis, gateway_settings or get_gateway_settings())
        runtime.state["security"] = security
        app.state.runtime, app.state.security = runtime, security
        log.info("gateway.started", url=f"http://{cfg.http_host}:{cfg.http_port or 8000}")
        try:
            yield
        finally:
            await runtime.stop()
            await redis.aclose()

    app = FastAPI(
        title="Medihaven API",
        version="1",
        description="Every route but health, registration and keyvault status/unseal needs an "
        "Ed25519 RFC 9421 signature (see README).",
        lifespan=lifespan,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.runtime = None
    app.state.security = None
    errors.install(app)
    add_probes(app, lambda: check_runtime(app.state.runtime))
    for module in (health, identity, vault, chat, audit, live, scheduling, records, catalog):
        app.include_router(module.router, prefix="/api/v1")
    # The single-page app answers every other GET that is not under /api/.
    web.install(app, gateway_settings or get_gateway_settings())
    return app


app = create_app()
