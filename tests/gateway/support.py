"""The mesh as real processes (keyvault, auth, chat, gateway) for HTTP tests, with the SDK."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cli import keys
from cli.sdk import MedihavenClient, register, sign_prescription
from contracts import auth
from contracts.base import OPERATOR
from mesh.rpc import RpcClient
from mesh.settings import Settings
from tests.conftest import isolated_settings
from tests.keyvault.support import initialise, unseal
from tests.mesh.fixtures import client_runtime
from tests.processes import Process, started

T = TypeVar("T")
SERVICES = ["services.keyvault", "services.auth", "services.chat", "services.audit"]
EVERY_SERVICE = [*SERVICES, "services.records", "services.scheduling"]
"""The whole mesh, for tests that run the clinic's work end to end."""


@dataclass
class Staff:
    client: MedihavenClient
    account: dict[str, object]

    @property
    def account_id(self) -> str:
        return str(self.account["account_id"])


@dataclass
class Mesh:
    settings: Settings
    procs: dict[str, Process]
    gateway: Process
    shares: list[str]
    log_dir: Path
    extra_gateways: list[Process] = field(default_factory=list)
    _admin: Staff | None = None

    @property
    def url(self) -> str:
        return self.gateway.url

    def bus(self, action: Callable[[RpcClient], Awaitable[T]]) -> T:
        """Run an operator action on the bus (e.g. bootstrap) from a sync test."""

        async def main() -> T:
            async with client_runtime(self.settings, "gwtest-operator", OPERATOR) as client:
                return await action(client.rpc)

        return asyncio.run(main())

    def register(self, token: str, username: str | None = None, url: str | None = None) -> Staff:
        key = keys.generate()
        username = username or f"user-{uuid.uuid4().hex[:8]}"
        account = register(
            url or self.url,
            key,
            token=token,
            username=username,
            display_name=username.title(),
            public_key=keys.public_key_b64(key),
        )
        return Staff(MedihavenClient(url or self.url, str(account["account_id"]), key), account)

    def admin(self) -> Staff:
        if self._admin is None:
            issued = self.bus(
                lambda rpc: rpc.call(
                    auth.BOOTSTRAP, auth.BootstrapRequest(), idempotency_key=str(uuid.uuid4())
                )
            )
            self._admin = self.register(issued.token, f"admin-{uuid.uuid4().hex[:6]}")
        return self._admin

    def staff(self, role: str) -> Staff:
        token = self.admin().client.post("/api/v1/tokens", {"role": role})["token"]
        return self.register(token)

    def extra_gateway(self, **env: str) -> Process:
        proc = Process("gateway", self.settings, self.log_dir, **env)
        proc.wait_ready()
        self.extra_gateways.append(proc)
        return proc


def initialise_and_unseal(settings: Settings) -> list[str]:
    """Initialise the running keyvault and unseal it with its shares (returned): the one
    start-up step every mesh a test builds needs before the gateway serves."""

    async def setup() -> list[str]:
        async with client_runtime(settings, "gwtest-setup", OPERATOR) as client:
            init = await initialise(client.rpc)
            await unseal(client.rpc, init.shares)
            return init.shares

    return asyncio.run(setup())


@contextmanager
def mesh(
    tag: str, log_dir: Path, services: Sequence[str] = SERVICES, **gateway_env: str
) -> Iterator[Mesh]:
    """The services and a gateway (with `gateway_env` settings) in a namespace of their own,
    the keyvault initialised and unsealed."""
    with isolated_settings(tag) as settings, mesh_on(settings, log_dir, services, gateway_env) as m:
        yield m


@contextmanager
def mesh_on(
    settings: Settings,
    log_dir: Path,
    services: Sequence[str] = SERVICES,
    gateway_env: Mapping[str, str] | None = None,
    ready_timeout_s: float = 30.0,
) -> Iterator[Mesh]:
    """`mesh` in a namespace the caller made (e.g. on a broker cluster of its own)."""
    with started(services, settings, log_dir, {}, ready_timeout_s) as procs:
        shares = initialise_and_unseal(settings)
        # Tests register many staff from one address: a roomy anonymous bucket here
        # (test_token_bucket... checks the small one on a gateway of its own).
        env = {"MEDIHAVEN_RATE_ANONYMOUS_CAPACITY": "10000", **(gateway_env or {})}
        with started(["gateway"], settings, log_dir, env, ready_timeout_s) as gateway:
            world = Mesh(settings, procs, gateway["gateway"], shares, log_dir)
            try:
                yield world
            finally:
                for proc in world.extra_gateways:
                    proc.stop()


SALBUTAMOL = {
    "name": "Salbutamol",
    "active_ingredient": "salbutamol",
    "strength": "100 micrograms",
    "dosage_form": "inhaler",
    "route": "inhalation",
    "type": "bronchodilator",
}


def prescribe_from_catalog(
    admin: Staff, doctor: Staff, patient_id: str, encounter_id: str, **medication: Any
) -> dict[str, Any]:
    """An administrator adds salbutamol to the catalog; the physician prescribes it from
    there (details copied at signing, `medication` added), signed with their own key."""
    admin.client.post("/api/v1/catalog/medicines", {"details": SALBUTAMOL})
    (entry,) = doctor.client.get("/api/v1/catalog/medicines", prefix="salb")["medicines"]
    details = entry["details"]
    body = sign_prescription(
        doctor.client.private_key,
        doctor.account_id,
        {
            "prescription_id": str(uuid.uuid4()),
            "patient_id": patient_id,
            "encounter_id": encounter_id,
            "created_at": datetime.now(UTC).isoformat(),
            "medication": {
                "drug_name": details["name"],
                "strength": details["strength"],
                "dosage_form": details["dosage_form"],
                "dose": "2 puffs",
                "route": details["route"],
                "frequency": "as needed",
                "duration_days": 30,
                "quantity": 1,
                "refills": 1,
                **medication,
                "medicine_id": entry["medicine_id"],
            },
        },
    )
    prescribed: dict[str, Any] = doctor.client.post("/api/v1/prescriptions", body)
    return prescribed
