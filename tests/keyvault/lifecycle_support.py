"""A keyvault world for key-lifecycle tests: one (or more) in-process keyvault replicas,
the operator's tool, a gateway-side client for administrators' signed requests, and a
process per owning service's broker identity, each answering its `key_usage` scan from
a table of counts the test sets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from nacl.public import PrivateKey

from contracts import keyvault as kv
from contracts.auth import AccountRecord
from contracts.base import GATEWAY, Role
from contracts.rewrap import KEY_USAGE
from mesh.context import CallContext
from mesh.rpc import RpcRouter
from mesh.runtime import Runtime
from mesh.settings import Settings
from services.keyvault.sealedbox import open_share, public_key_b64, seal_share
from services.keyvault.state import vault_of
from services.keyvault.vault import Vault
from tests.keyvault.support import Initialised, initialise, keyvault_runtime, operator, unseal
from tests.support.clinic import Clinic, StaffMember, stand_in_auth


@dataclass
class Usage:
    """What each stand-in owner's `key_usage` scan answers: table -> key id -> count."""

    tables: dict[str, dict[str, dict[int, int]]] = field(default_factory=dict)

    def set(self, service: str, table: str, counts: dict[int, int]) -> None:
        self.tables.setdefault(service, {})[table] = counts


def owner_router(service: str, usage: Usage, base: RpcRouter | None = None) -> RpcRouter:
    router = base or RpcRouter(service)

    @router.handler(KEY_USAGE[service])
    async def key_usage(req: kv.KeyUsageRequest, ctx: CallContext) -> kv.KeyUsageReply:
        return kv.KeyUsageReply(tables=usage.tables.get(service, {}))

    return router


@dataclass
class World:
    settings: Settings
    keyvault: Runtime
    init: Initialised
    tool: Runtime
    clinic: Clinic
    owners: dict[str, Runtime]
    usage: Usage
    stack: AsyncExitStack
    admins: list[StaffMember] = field(default_factory=list)

    @property
    def vault(self) -> Vault:
        vault: Vault = vault_of(self.keyvault)
        return vault

    async def admin(self, index: int = 0) -> StaffMember:
        while len(self.admins) <= index:
            self.admins.append(
                await self.clinic.add_staff(f"key-admin-{len(self.admins)}", Role.administrator)
            )
        return self.admins[index]

    async def replica(self) -> Runtime:
        """Another keyvault replica on the same database (sealed, as every start is)."""
        return await self.stack.enter_async_context(keyvault_runtime(self.settings))

    async def unseal(self, runtime: Runtime, shares: list[str]) -> kv.StatusReply:
        return await unseal(self.tool.rpc, shares, instance=runtime.instance)

    async def status(self, runtime: Runtime) -> kv.StatusReply:
        return await self.tool.rpc.call(kv.STATUS, kv.StatusRequest(), instance=runtime.instance)


@asynccontextmanager
async def world(settings: Settings) -> AsyncIterator[World]:
    """An initialised, unsealed keyvault with its stand-in owners (auth included)."""
    records: dict[str, AccountRecord] = {}
    usage = Usage()
    async with AsyncExitStack() as stack:
        owners: dict[str, Runtime] = {}
        for service in sorted(kv.REWRAP_SERVICES):
            base = stand_in_auth(records) if service == "auth" else None
            owners[service] = await Runtime.start(
                service, settings, router=owner_router(service, usage, base), use_database=False
            )
            stack.push_async_callback(owners[service].stop)
        gateway = await Runtime.start("kvl-gateway", settings, use_database=False, identity=GATEWAY)
        stack.push_async_callback(gateway.stop)
        runtime = await stack.enter_async_context(keyvault_runtime(settings))
        tool = await stack.enter_async_context(operator(settings))
        init = await initialise(tool.rpc)
        await unseal(tool.rpc, init.shares, instance=runtime.instance)
        clinic = Clinic(settings, runtime, gateway, records, services=[runtime])
        yield World(settings, runtime, init, tool, clinic, owners, usage, stack)


def recipient() -> tuple[PrivateKey, str]:
    key = PrivateKey.generate()
    return key, public_key_b64(key.public_key)


def opened(key: PrivateKey, sealed: list[str]) -> list[str]:
    return [open_share(key, s) for s in sealed]


def sealed_to(status: kv.CeremonyStatus, share: str) -> str:
    assert status.transport_public_key is not None
    return seal_share(status.transport_public_key, share)
