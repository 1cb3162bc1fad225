"""mesh/runtime.py, for what the services' tests do not show (they all start runtimes):
a start that fails half-way leaves nothing connected; stopping cancels background loops
and survives a failing shutdown hook; a process serving users drops a signer's account
when auth says it changed, and only when auth says so."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from prometheus_client import REGISTRY

from contracts.auth import ACCOUNT_CHANGED, AccountChanged, AccountRecord
from contracts.base import RpcMethod
from mesh.context import CallContext
from mesh.runtime import Runtime
from mesh.settings import Settings
from tests.mesh.fixtures import (
    SERVICE,
    Counters,
    EchoReply,
    EchoRequest,
    client_runtime,
    make_router,
    running_service,
)
from tests.support.polling import until

ON_BEHALF = RpcMethod(SERVICE, "testsvc.on_behalf", EchoRequest, EchoReply, on_behalf=True)


class Forgetful:
    """An AccountSource that records what it was told to forget."""

    def __init__(self) -> None:
        self.forgotten: list[str] = []

    async def get(self, account_id: str) -> AccountRecord | None:
        return None

    def forget(self, account_id: str) -> None:
        self.forgotten.append(account_id)


async def test_a_start_that_fails_half_way_leaves_nothing_connected(settings: Settings) -> None:
    started: list[Runtime] = []

    async def broken(runtime: Runtime) -> None:
        started.append(runtime)
        raise RuntimeError("the keyring cannot be read")

    with pytest.raises(RuntimeError, match="keyring"):
        await Runtime.start(SERVICE, settings, router=make_router(Counters()), on_startup=broken)
    [runtime] = started
    assert runtime.connection.is_closed
    assert runtime.server is None and runtime.relay is None


async def test_stopping_cancels_loops_and_survives_a_failing_shutdown_hook(
    settings: Settings,
) -> None:
    async def hook(runtime: Runtime) -> None:
        raise RuntimeError("flush failed")

    async with running_service(settings, on_shutdown=hook) as runtime:
        forever = asyncio.Event()

        async def loop() -> None:
            await forever.wait()

        runtime.spawn(loop(), "waits-forever")
        [task] = [t for t in runtime.tasks if t.get_name() == "waits-forever"]
    assert task.cancelled()
    assert runtime.connection.is_closed


def refused(group: str) -> float:
    labels = {"group": group, "outcome": "refused"}
    return REGISTRY.get_sample_value("medihaven_events_consumed_total", labels) or 0.0


async def test_an_account_is_forgotten_when_auth_says_it_changed_and_only_then(
    settings: Settings,
) -> None:
    accounts = Forgetful()

    async def use_recorder(runtime: Runtime) -> None:
        runtime.accounts = accounts

    router = make_router(Counters())

    @router.handler(ON_BEHALF)
    async def on_behalf(req: EchoRequest, ctx: CallContext) -> EchoReply:
        return EchoReply(text=req.text, instance="")

    runtime = await Runtime.start(
        SERVICE, settings, router=router, on_startup=use_recorder, use_database=False
    )
    group = f"{SERVICE}-accounts"
    try:
        forged, genuine = str(uuid.uuid4()), str(uuid.uuid4())
        before = refused(group)
        async with client_runtime(settings, "not-auth", identity="outsider") as outsider:
            await outsider.events.publish(
                ACCOUNT_CHANGED, AccountChanged(account_id=forged), message_id=forged
            )
        await until(lambda: refused(group) > before)
        async with client_runtime(settings, "auth-stand-in", identity="auth") as auth:
            await auth.events.publish(
                ACCOUNT_CHANGED, AccountChanged(account_id=genuine), message_id=genuine
            )
        await until(lambda: accounts.forgotten)
        assert accounts.forgotten == [genuine]
    finally:
        await runtime.stop()
