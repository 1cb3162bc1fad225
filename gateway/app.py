"""The gateway: the one HTTP edge of the mesh (API under /api/v1)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from contracts import attendance as attendance_contract
from contracts import audit as audit_contract
from contracts import auth as auth_contract
from contracts import chat as chat_contract
from contracts import keyvault as kv_contract
from contracts import records as records_contract
from contracts import scheduling as sched_contract
from contracts.auth import ACCOUNT_CHANGED, AccountChanged
from contracts.base import API_PREFIX, EventType, Role
from contracts.common import collect
from contracts.fhir import FHIR_PREFIX
from gateway import errors, fhir, fhirexport, web
from gateway.admission import Admission
from gateway.live import Hub, LiveLog
from gateway.routes import attendance, audit, health, identity, live, vault
from gateway.routing import declared_router
from gateway.security import Security
from gateway.settings import GatewaySettings, get_gateway_settings
from gateway.state import state_of
from mesh.events import EventHandler, ReceivedEvent
from mesh.logging import configure_logging, get_logger
from mesh.redis import create_redis
from mesh.runtime import ConsumerSpec, Runtime
from mesh.service import add_probes, check_runtime
from mesh.settings import Settings, get_settings

NAME = "gateway"
log = get_logger("gateway")


def make_hub(live_log: LiveLog) -> Callable[[Runtime], Awaitable[None]]:
    async def start(runtime: Runtime) -> None:
        hub = Hub(live_log)
        state_of(runtime).hub = hub
        runtime.spawn(hub.follow(), "live-log-tail")

    return start


def forget_changed_accounts(runtime: Runtime) -> EventHandler:
    async def handle(event: ReceivedEvent[AccountChanged]) -> None:
        security = state_of(runtime).security
        if security is not None:
            security.forget(event.payload.account_id)

    return handle


CALENDAR_EVENTS: list[EventType[Any]] = list(sched_contract.CALENDAR_EVENTS)
LIVE_EVENTS: list[EventType[Any]] = [
    chat_contract.MESSAGE_SENT,
    chat_contract.MESSAGES_READ,
    *CALENDAR_EVENTS,
    *attendance_contract.EVENTS,
    records_contract.BREAK_GLASS_OPENED,
]
_CALENDAR_KEYS = frozenset(e.routing_key for e in CALENDAR_EVENTS)
_ATTENDANCE_KEYS = frozenset(e.routing_key for e in attendance_contract.EVENTS)


def audience(event: ReceivedEvent[Any]) -> tuple[list[str], list[str], dict[str, Any]]:
    """Who may hear a live event (accounts, roles) and the frame they get (ids only).

    Chat: the conversation's members. A calendar change: its physician and the front desk
    (receptionists keep every physician's calendar); administrators and other physicians
    hear nothing. A check-in or -out: the staff member and the administrators. A
    break-glass access: the administrators."""
    payload = event.payload
    body = {"type": event.routing_key, **payload.model_dump(mode="json")}
    if isinstance(payload, chat_contract.MessageSent):
        return list(payload.member_ids), [], {**body, "type": "message_sent"}
    if isinstance(payload, chat_contract.MessagesRead):
        return list(payload.member_ids), [], {**body, "type": "messages_read"}
    if event.routing_key in _CALENDAR_KEYS:
        return [payload.physician_id], [Role.receptionist.value], body
    if event.routing_key in _ATTENDANCE_KEYS:
        return [payload.staff_id], [Role.administrator.value], body
    if event.routing_key == records_contract.BREAK_GLASS_OPENED.routing_key:
        return [], [Role.administrator.value], body
    return [], [], body  # not a live event: logged for nobody


def log_live_events(live_log: LiveLog) -> Callable[[Runtime], EventHandler]:
    """The replica that takes an event from the shared queue logs it once; every replica
    then pushes it from the log (`Hub.follow`)."""

    def factory(runtime: Runtime) -> EventHandler:
        async def handle(event: ReceivedEvent[Any]) -> None:
            accounts, roles, body = audience(event)
            if accounts or roles:
                await live_log.append(event.message_id, accounts, roles, body)

        return handle

    return factory


HAND_WRITTEN = frozenset(
    {
        auth_contract.REGISTER.name,  # signed by the new key, not an account
        kv_contract.SEAL.name,  # one signed request seals every replica
        audit_contract.EXPORT.name,  # NDJSON, not JSON
        chat_contract.CATCH_UP.name,  # the WebSocket's signed handshake
    }
)


def relayed_methods() -> list[Any]:
    """Every method with a route under the API in `contracts/` that the gateway simply
    relays (FHIR routes are mapped to FHIR by `gateway.fhir`)."""
    methods, _ = collect()
    return [
        m
        for m in methods
        if m.route is not None and m.route.prefix == API_PREFIX and m.name not in HAND_WRITTEN
    ]


def create_app(
    settings: Settings | None = None, gateway_settings: GatewaySettings | None = None
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cfg = settings or get_settings()
        configure_logging(NAME, cfg)
        redis = create_redis(cfg)
        live_log = LiveLog(redis, cfg.redis_prefix)
        runtime = await Runtime.start(
            NAME,
            cfg,
            use_database=False,
            # Every gateway replica drops a changed account from its own cache.
            consumers=[
                ConsumerSpec("gateway-accounts", [ACCOUNT_CHANGED], forget_changed_accounts, False),
                # One durable queue shared by the replicas: what is published while
                # every gateway is down waits there, and each event is logged once, in order.
                ConsumerSpec(
                    "gateway-live",
                    LIVE_EVENTS,
                    log_live_events(live_log),
                    prefetch=1,
                    in_order=True,  # the live log holds events as they were published
                ),
            ],
            on_startup=make_hub(live_log),
        )
        edge = gateway_settings or get_gateway_settings()
        security = Security(runtime, redis, edge)
        state_of(runtime).security = security
        app.state.admission = Admission(
            edge.admission_limit, edge.admission_wait_s, per_account=edge.admission_per_account
        )
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
    app.state.admission = None
    errors.install(app)
    add_probes(app, lambda: check_runtime(app.state.runtime))
    for module in (health, identity, vault, audit, live, attendance):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(declared_router(relayed_methods()), prefix=API_PREFIX)
    app.include_router(fhirexport.router(), prefix=FHIR_PREFIX)
    app.include_router(fhir.router(), prefix=FHIR_PREFIX)
    # The single-page app answers every other GET that is not under /api/.
    web.install(app, gateway_settings or get_gateway_settings())
    return app


app = create_app()
