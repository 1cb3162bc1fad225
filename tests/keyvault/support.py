"""Helpers to run a keyvault in tests: start it, initialise it, unseal it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from nacl.public import PrivateKey

from contracts import keyvault as kv
from contracts.base import OPERATOR
from contracts.keyvault import SERVICE
from mesh.rpc import RpcClient
from mesh.runtime import ConsumerSpec, Runtime
from mesh.settings import Settings
from services.keyvault.app import start_vault, stop_vault
from services.keyvault.handlers import router
from services.keyvault.sealedbox import open_share, public_key_b64, seal_share
from services.keyvault.state import vault_of as vault_of  # re-exported for the tests

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "keyvault" / "migrations"


@asynccontextmanager
async def keyvault_runtime(
    settings: Settings, consumers: list[ConsumerSpec] | None = None
) -> AsyncIterator[Runtime]:
    """One keyvault replica in this process (sealed, as every start is)."""
    runtime = await Runtime.start(
        SERVICE,
        settings.model_copy(update={"dev_mode": False}),
        router=router,
        migrations=MIGRATIONS,
        consumers=consumers or [],
        on_startup=start_vault,
        on_shutdown=stop_vault,
    )
    try:
        yield runtime
    finally:
        await runtime.stop()


@asynccontextmanager
async def operator(settings: Settings) -> AsyncIterator[Runtime]:
    """The operator's tool on the bus (keyvault init, unseal, status; auth bootstrap)."""
    runtime = await Runtime.start("operator-tool", settings, use_database=False, identity=OPERATOR)
    try:
        yield runtime
    finally:
        await runtime.stop()


@dataclass
class Initialised:
    shares: list[str]
    threshold: int


async def initialise(rpc: RpcClient, threshold: int = 3, shares: int = 5) -> Initialised:
    """Initialise through the RPC, as the operator CLI does; returns the opened shares."""
    operator = PrivateKey.generate()
    reply = await rpc.call(
        kv.INIT,
        kv.InitRequest(
            threshold=threshold,
            shares=shares,
            recipient_public_key=public_key_b64(operator.public_key),
        ),
    )
    return Initialised([open_share(operator, s) for s in reply.sealed_shares], threshold)


async def unseal(rpc: RpcClient, shares: list[str], instance: str | None = None) -> kv.StatusReply:
    """Submit shares to one replica (default: whichever answers) until it is unsealed."""
    status = await rpc.call(kv.STATUS, kv.StatusRequest(), instance=instance)
    for share in shares:
        status = await rpc.call(
            kv.UNSEAL,
            kv.UnsealRequest(sealed_share=seal_share(status.transport_public_key, share)),
            instance=status.instance,
        )
        if status.state is kv.VaultState.unsealed:
            break
    return status


@asynccontextmanager
async def unsealed_keyvault(settings: Settings) -> AsyncIterator[tuple[Runtime, Initialised]]:
    """An initialised, unsealed keyvault replica for tests of services that need one."""
    async with keyvault_runtime(settings) as runtime, operator(settings) as tool:
        vault = vault_of(runtime)
        if vault.meta is None:
            init = await initialise(tool.rpc)
        else:
            raise RuntimeError("this namespace's keyvault is already initialised")
        await unseal(tool.rpc, init.shares, instance=runtime.instance)
        yield runtime, init
