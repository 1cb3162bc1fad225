"""The keyvault process: the only holder of the unsealed root key.

It listens only on the bus. Every start is sealed (except in development mode); a
background loop picks up keys rotated by other replicas and flushes key use counts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from contracts.keyvault import SERVICE
from mesh.logging import get_logger
from mesh.redis import RedisLedger, create_redis
from mesh.runtime import Runtime
from mesh.service import create_service_app
from services.keyvault import ciphers
from services.keyvault.devmode import auto_unseal
from services.keyvault.gate import AccountKeys
from services.keyvault.handlers import router
from services.keyvault.state import state_of
from services.keyvault.vault import Vault

log = get_logger("keyvault")
MAINTENANCE_INTERVAL_S = 5.0


async def start_vault(runtime: Runtime) -> None:
    assert runtime.db is not None
    ciphers.use_phone_region(runtime.settings.clinic_region)
    vault = Vault(runtime.db, runtime.instance, block_size=runtime.settings.keyvault_block_size)
    await vault.load()
    state = state_of(runtime)
    state.vault = vault
    runtime.accounts = AccountKeys(runtime.rpc, vault)
    settings = runtime.settings
    redis = create_redis(
        settings,
        settings.keyvault_redis_url,
        sentinel_master=settings.keyvault_redis_sentinel_master,
    )
    state.redis = redis
    runtime.ledger = RedisLedger(
        redis,
        f"{settings.redis_prefix}keyvault:proof:",
        settings.signature_window_s + settings.signature_skew_s + 1,
        acks=settings.keyvault_ledger_acks,
    )
    if runtime.settings.dev_mode:
        await auto_unseal(vault)
    runtime.spawn(maintain(vault), "keyvault-maintenance")


async def maintain(vault: Vault) -> None:
    while True:
        await asyncio.sleep(MAINTENANCE_INTERVAL_S)
        try:
            await vault.flush_use_counts()
            await vault.sync_keys()
        except Exception as exc:
            log.warning("keyvault.maintenance_failed", error=str(exc))


async def stop_vault(runtime: Runtime) -> None:
    state = state_of(runtime)
    if state.vault is not None:
        await state.vault.seal()
    redis = state.redis
    if redis is not None:
        await redis.aclose()


app = create_service_app(
    SERVICE,
    router,
    migrations=Path(__file__).with_name("migrations"),
    on_startup=start_vault,
    on_shutdown=stop_vault,
)
