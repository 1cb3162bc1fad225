"""A throwaway mesh of real processes for benchmarks: own database and Redis prefixes,
keyvault initialised and unsealed, a bootstrap token, limits lifted, cleaned up after."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cli import keys
from cli.sdk import register
from contracts import auth
from mesh.db import drop_databases
from mesh.httpsig import sign_request
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


@dataclass
class Actor:
    account_id: str
    key: Ed25519PrivateKey


class Signed:
    """An async client signing each request as `actor`, as the SDK and the web app do."""

    def __init__(self, http: httpx.AsyncClient, base: str) -> None:
        self.http = http
        self.base = base

    async def call(
        self, actor: Actor, method: str, path: str, body: Any = None, **params: Any
    ) -> Any:
        url = httpx.URL(self.base + path, params={k: v for k, v in params.items() if v is not None})
        content = b"" if body is None else json.dumps(body).encode()
        headers = sign_request(actor.key, actor.account_id, method, str(url), content)
        if body is not None:
            headers["Content-Type"] = "application/json"
        response = await self.http.request(method, url, content=content, headers=headers)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:200]}")
        return response.json()


class Staffing:
    """Registers staff through the gateway: the first administrator from the bootstrap
    token, then anyone else with a token that administrator issues."""

    def __init__(self, api: Signed, admin_token: str, prefix: str) -> None:
        self.api, self.admin_token, self.prefix = api, admin_token, prefix
        self.admin: Actor | None = None

    async def add(self, role: str, name: str) -> Actor:
        base = self.api.base
        if self.admin is None:
            self.admin = await asyncio.to_thread(
                new_actor, base, self.admin_token, f"{self.prefix}-admin"
            )
        issued = await self.api.call(self.admin, "POST", "/api/v1/tokens", {"role": role})
        return await asyncio.to_thread(new_actor, base, issued["token"], f"{self.prefix}-{name}")


def new_actor(base: str, token: str, name: str) -> Actor:
    """Register a staff member with a fresh key (blocking: run it in a thread)."""
    key = keys.generate()
    account = register(
        base,
        key,
        token=token,
        username=name,
        display_name=name.title(),
        public_key=keys.public_key_b64(key),
    )
    return Actor(str(account["account_id"]), key)
