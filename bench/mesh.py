"""A throwaway mesh of real processes for benchmarks: a namespace of its own (vhost and
broker users, database and Redis prefixes, `bench.namespace`), keyvault initialised and
unsealed, a bootstrap token, limits lifted, cleaned up after."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.common import RESULTS
from bench.http import LeanHttp, Response
from bench.namespace import namespace
from cli import keys
from cli.sdk import MedihavenClient, new_prescription, register
from contracts import auth
from contracts.base import OPERATOR
from mesh.db import drop_databases
from mesh.httpsig import sign_request
from mesh.settings import Settings
from tests.keyvault.support import initialise, unseal
from tests.mesh.fixtures import client_runtime
from tests.processes import Process, running

LOGS = RESULTS / "logs"
EVERY_SERVICE = [
    "services.keyvault",
    "services.auth",
    "services.records",
    "services.scheduling",
    "services.chat",
    "services.audit",
]
"""The whole mesh, for the benchmarks that run the clinic's work end to end."""
UNLIMITED = {
    "MEDIHAVEN_RATE_GENERAL_CAPACITY": "100000000",
    "MEDIHAVEN_RATE_GENERAL_PER_S": "100000000",
    "MEDIHAVEN_RATE_PATIENT_CAPACITY": "100000000",
    "MEDIHAVEN_RATE_PATIENT_PER_S": "100000000",
    "MEDIHAVEN_RATE_ANONYMOUS_CAPACITY": "100000000",
    "MEDIHAVEN_RATE_ANONYMOUS_PER_S": "100000000",
    # one account drives the whole load: it may have every admission turn
    "MEDIHAVEN_ADMISSION_PER_ACCOUNT": "100000000",
}


@dataclass
class BenchMesh:
    settings: Settings
    gateway: Process
    admin_token: str
    shares: list[str] = field(default_factory=list)
    processes: dict[str, Process] = field(default_factory=dict)


@asynccontextmanager
async def bench_mesh(
    services: Sequence[str],
    tag: str = "mesh",
    *,
    engines: Mapping[str, Any] | None = None,
    broker_node: str | None = None,
) -> AsyncIterator[BenchMesh]:
    """The mesh in a namespace of its own; `engines`/`broker_node` as `namespace` takes them."""
    LOGS.mkdir(parents=True, exist_ok=True)
    with namespace(tag, engines=engines, broker_node=broker_node) as settings:
        async with _mesh(services, settings) as bench:
            yield bench


@asynccontextmanager
async def _mesh(services: Sequence[str], settings: Settings) -> AsyncIterator[BenchMesh]:
    try:
        with running(list(services), settings, LOGS) as processes:
            async with client_runtime(settings, "bench-setup", OPERATOR) as client:
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
    """An async client signing each request as `actor`, as the SDK and the web app do, over
    the lean keep-alive client (`bench.http`)."""

    def __init__(self, http: LeanHttp) -> None:
        self.http = http
        self.base = http.base_url

    async def send(
        self, actor: Actor, method: str, path: str, body: Any = None, **params: Any
    ) -> Response:
        """The signed request; the response as received (not parsed: the measured calls
        only check the status)."""
        query = urlencode(
            {k: _param(v) for k, v in params.items() if v is not None}, quote_via=quote
        )
        target = f"{path}?{query}" if query else path
        content = b"" if body is None else json.dumps(body).encode()
        headers = sign_request(actor.key, actor.account_id, method, self.base + target, content)
        if body is not None:
            headers["Content-Type"] = "application/json"
        response = await self.http.request(method, target, headers, content)
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: {response.status} {response.text[:200]}")
        return response

    async def call(
        self, actor: Actor, method: str, path: str, body: Any = None, **params: Any
    ) -> Any:
        return (await self.send(actor, method, path, body, **params)).json()

    async def add_patient(self, desk: Actor, i: int, born: str, **more: str) -> str:
        """Register the benchmark's patient number `i` (Given<i> Family<i>, born `born`, and
        `more` demographics) as `desk`; the new patient's id."""
        demographics = {
            "given_name": f"Given{i}",
            "family_name": f"Family{i}",
            "date_of_birth": born,
            "sex": "unknown",
            **more,
        }
        written = await self.call(desk, "POST", "/api/v1/patients", {"demographics": demographics})
        return str(written["patient_id"])

    async def prescribe(
        self, doctor: Actor, patient_id: str, encounter_id: str, medication: dict[str, Any]
    ) -> Any:
        """As the web app prescribes: the safety check, then the prescription signed with
        the alerts it found overridden (benchmark data repeats drugs on purpose)."""
        check = await self.call(
            doctor,
            "POST",
            "/api/v1/prescriptions/check",
            {"patient_id": patient_id, "medication": medication},
        )
        body = new_prescription(
            doctor.key,
            doctor.account_id,
            patient_id,
            encounter_id,
            medication,
            check["codes"],
            "benchmark data",
        )
        return await self.call(doctor, "POST", "/api/v1/prescriptions", body)


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


def new_actor(base: str, token: str, name: str, display_name: str | None = None) -> Actor:
    """Register a staff member with a fresh key, username `name`, displayed as
    `display_name` (default: `name` titled); blocking: run it in a thread."""
    key = keys.generate()
    account = register(
        base,
        key,
        token=token,
        username=name,
        display_name=name.title() if display_name is None else display_name,
        public_key=keys.public_key_b64(key),
    )
    return Actor(str(account["account_id"]), key)


def new_client(base: str, token: str, name: str, display_name: str) -> MedihavenClient:
    """`new_actor`, as an SDK client (blocking: run it in a thread)."""
    actor = new_actor(base, token, name, display_name)
    return MedihavenClient(base, actor.account_id, actor.key)


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
