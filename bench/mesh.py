"""A throwaway mesh of real processes for benchmarks: own database and Redis prefixes,
keyvault initialised and unsealed, a bootstrap token, limits lifted, cleaned up after."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from contracts import auth
from mesh.db import drop_databases
from mesh.settings import Settings, get_settings
from tests.keyvault.support import initialise, unseal
from tests.mesh.fixtures import client_runtime
from tests.processes import Process, running

LOGS = Path(__file__).with_name("results") / "logs"
UNLIMITED = {
    "MEDIHAVEN_RATE_GENERAL_CAPACITY": "100000000",
    "MEDIHAVEN_RATE_GENERAL_PER_S": "100000000",
    "MEDIHAVEN_RATE_PATIENT_CAPACITY": "100000000",
    "MEDIHAVEN_RATE_PATIENT_PER_S": "100000000",
    "MEDIHAVEN_RATE_ANONYMOUS_CAPACITY": "100000000",
    "MEDIHAVEN_RATE_ANONYMOUS_PER_S": "100000000",
}


@dataclass
class BenchMesh:
    settings: Settings
    gateway: Process
    admin_token: str
    shares: list[str] = field(default_factory=list)
    processes: dict[str, Process] = field(default_factory=dict)


@asynccontextmanager
async def bench_mesh(services: Sequence[str]) -> AsyncIterator[BenchMesh]:
    LOGS.mkdir(parents=True, exist_ok=True)
    settings = get_settings().model_copy(
        update={
            "db_prefix": f"mhbench_{secrets.token_hex(3)}_",
            "redis_prefix": f"mhbench:{secrets.token_hex(3)}:",
        }
    )
    try:
        with running(list(services), settings, LOGS) as processes:
            async with client_runtime(settings, "bench-setup") as client:
                init = await initialise(client.rpc)
                await unseal(client.rpc, init.shares)
                issued = await client.rpc.call(
                    auth.BOOTSTRAP, auth.BootstrapRequest(), idempotency_key=str(uuid.uuid4())
                )
            with running(["gateway"], settings, LOGS, **UNLIMITED) as gateways:
                yield BenchMesh(
                    settings,
                    gateways["gateway"],
                    issued.token,
                    init.shares,
                    {**processes, **gateways},
                )
    finally:
        await drop_databases(settings)
