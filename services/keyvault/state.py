"""What a keyvault process holds beside its runtime: the unsealed keyring, its Redis client
and the care cache (`service_state`: a dataclass, never a dict of names)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mesh.runtime import Runtime, service_state
from services.keyvault.vault import Vault

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from services.keyvault.handlers import CareCache


@dataclass
class KeyvaultState:
    vault: Vault | None = None
    """Set by the start-up hook, before the first call is served."""
    redis: Redis | None = None
    care: CareCache | None = None


def state_of(runtime: Runtime) -> KeyvaultState:
    return service_state(runtime, KeyvaultState)


def vault_of(runtime: Runtime) -> Vault:
    """The keyring of this process (a call can only be served once it is loaded)."""
    vault = state_of(runtime).vault
    if vault is None:
        raise RuntimeError("the keyvault has not started")
    return vault
