"""A receptionist booking an appointment, next to the raw aio-pika echo, same run.

Each booking is what the gateway would forward: the receptionist's principal and a fresh
Ed25519-signed request proof, an idempotency key, a reason for visit. The scheduling
service and the keyvault run as their own processes (as in production); auth's
`resolve_key` and records' `patient_ref` are stand-ins in this process. So one booking
is: the RPC, the caller's signature check (auth lookup + Ed25519 verify), physician and
patient checks, one keyvault encryption, and the transaction that locks the physician's
row, checks hours and overlaps, inserts, and writes the event and audit outbox rows.
Bookings go to 32 physicians round robin, each in its own free 10-minute slot.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import secrets
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.public import PrivateKey
from pydantic import SecretStr

from bench.common import Measurement, measure, print_table, write_results
from bench.keyvault import bench_settings, child_env
from bench.rpc import PAYLOAD, RawClient
from contracts import keyvault as kv
from contracts import scheduling as sched
from contracts.auth import (
    RESOLVE_KEY,
    Account,
    AccountRecord,
    AccountStatus,
    ResolveKeyRequest,
    account_mac_row,
)
from contracts.base import Principal, Role
from contracts.common import ping
from contracts.records import PATIENT_REF, PatientRef, PatientRefRequest
from mesh.context import CallContext
from mesh.db import drop_databases
from mesh.errors import NotFound
from mesh.httpsig import proof_from_headers, sign_request
from mesh.rpc import RpcRouter
from mesh.runtime import Runtime
from mesh.settings import Settings
from services.keyvault.sealedbox import open_share, public_key_b64, seal_share

ROOT = Path(__file__).resolve().parents[1]
PHYSICIANS = 32
SLOT = timedelta(minutes=10)
URI = "http://bench/api/v1/appointments"


class Staff:
    """A staff member with a real key, whose account row the bench's keyvault MACs."""

    def __init__(self, account_id: str, role: Role) -> None:
        self.key = Ed25519PrivateKey.generate()
        now = datetime.now(UTC)
        public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.account = Account(
            account_id=account_id,
            username=account_id,
            display_name=account_id,
            role=role,
            status=AccountStatus.active,
            public_key=base64.b64encode(public).decode(),
            created_at=now,
            updated_at=now,
        )
        self.principal = Principal(account_id=account_id, role=role)

    def proof(self, body: bytes) -> str:
        headers = sign_request(self.key, self.account.account_id, "POST", URI, body)
        return proof_from_headers("POST", URI, headers).model_dump_json()


def stand_ins(accounts: dict[str, AccountRecord], patients: set[str]) -> tuple[RpcRouter, ...]:
    auth, records = RpcRouter("auth"), RpcRouter("records")

    @auth.handler(RESOLVE_KEY)
    async def resolve(req: ResolveKeyRequest, ctx: CallContext) -> AccountRecord:
        if req.account_id not in accounts:
            raise NotFound("no such account")
        return accounts[req.account_id]

    @records.handler(PATIENT_REF)
    async def patient_ref(req: PatientRefRequest, ctx: CallContext) -> PatientRef:
        return PatientRef(patient_id=req.patient_id, exists=req.patient_id in patients)

    return auth, records


async def wait_for(client: Runtime, service: str) -> None:
    for _ in range(150):
        try:
            await client.rpc.call(ping(service), ping(service).request(), timeout=1)
            return
        except Exception:
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{service} did not start")


async def unseal(client: Runtime) -> None:
    status = await client.rpc.call(kv.STATUS, kv.StatusRequest())
    operator = PrivateKey.generate()
    init = await client.rpc.call(
        kv.INIT, kv.InitRequest(recipient_public_key=public_key_b64(operator.public_key))
    )
    for sealed in init.sealed_shares[:3]:
        share = open_share(operator, sealed)
        await client.rpc.call(
            kv.UNSEAL,
            kv.UnsealRequest(sealed_share=seal_share(status.transport_public_key, share)),
        )


def start(module: str, settings: Settings, **kwargs: Any) -> subprocess.Popen[bytes]:
    env = child_env(settings) | {"MEDIHAVEN_CLINIC_TIMEZONE": "Europe/Berlin"}
    return subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, **kwargs)


@contextmanager
def own_vhost(settings: Settings) -> Iterator[Settings]:
    """A RabbitMQ vhost of its own where `rabbitmqctl` is at hand, so that services
    running on the same broker (or another benchmark) do not answer this one's calls."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        yield settings
        return
    name = f"medihaven-bench-{secrets.token_hex(3)}"

    def rabbitmqctl(*args: str) -> None:
        subprocess.run([ctl, "-q", *args], check=True, capture_output=True, timeout=60)

    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        url = urlsplit(settings.amqp_url.get_secret_value())
        amqp = urlunsplit(url._replace(path="/" + quote(name, safe="")))
        yield settings.model_copy(update={"amqp_url": SecretStr(amqp)})
    finally:
        subprocess.run([ctl, "-q", "delete_vhost", name], capture_output=True, timeout=60)


async def run(duration_s: float = 3.0) -> Mapping[str, object]:
    with own_vhost(bench_settings()) as settings:
        return await _run(settings, duration_s)


async def _run(settings: Settings, duration_s: float) -> Mapping[str, object]:
    accounts: dict[str, AccountRecord] = {}
    patients: set[str] = set()
    auth_router, records_router = stand_ins(accounts, patients)
    echo = start("bench.echo_server", settings, stdout=subprocess.PIPE)
    processes = [echo, start("services.keyvault", settings)]
    client = await Runtime.start("auth", settings, router=auth_router, use_database=False)
    records = await Runtime.start("records", settings, router=records_router, use_database=False)
    connection = None
    try:
        assert echo.stdout is not None
        if (await asyncio.to_thread(echo.stdout.readline)).strip() != b"ready":
            raise RuntimeError("benchmark echo server did not start")
        await wait_for(client, kv.SERVICE)
        await unseal(client)
        processes.append(start("services.scheduling", settings))
        await wait_for(client, sched.SERVICE)

        admin, desk = (
            Staff("bench-admin", Role.administrator),
            Staff("bench-desk", Role.receptionist),
        )
        doctors = [Staff(f"bench-dr-{i}", Role.physician) for i in range(PHYSICIANS)]
        staff = [admin, desk, *doctors]
        tags = await client.rpc.call(
            kv.MAC, kv.MacRequest(rows=[account_mac_row(s.account) for s in staff])
        )
        for member, tag in zip(staff, tags.tags, strict=True):
            accounts[member.account.account_id] = AccountRecord(account=member.account, mac=tag)
        every_hour = [
            sched.WorkingPeriod(weekday=d, start="00:00", end="24:00") for d in sched.Weekday
        ]
        for doctor in doctors:
            request = sched.SetWorkingHoursRequest(
                physician_id=doctor.account.account_id, weekly=every_hour
            )
            await client.rpc.call(
                sched.SET_WORKING_HOURS,
                request,
                principal=admin.principal,
                proof=admin.proof(request.model_dump_json().encode()),
                idempotency_key=str(uuid.uuid4()),
            )

        first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
        counter = itertools.count()

        async def book() -> None:
            n = next(counter)
            doctor = doctors[n % PHYSICIANS]
            start_at = first + SLOT * (n // PHYSICIANS)
            patient_id = f"bench-pat-{n}"
            patients.add(patient_id)
            request = sched.BookRequest(
                patient_id=patient_id,
                physician_id=doctor.account.account_id,
                start=start_at,
                end=start_at + SLOT,
                reason="Follow-up after blood test results",
            )
            await client.rpc.call(
                sched.BOOK,
                request,
                principal=desk.principal,
                proof=desk.proof(request.model_dump_json().encode()),
                idempotency_key=str(uuid.uuid4()),
            )

        connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
        raw = RawClient(connection)
        await raw.start()
        body = PAYLOAD.encode()
        rows: list[Measurement] = []
        ratios: dict[str, dict[str, float]] = {}
        for concurrency in (1, 32):
            base = await measure(
                "raw aio-pika echo",
                lambda: raw.call(body),
                concurrency=concurrency,
                duration_s=duration_s,
            )
            ours = await measure(
                "book (signed, receptionist)",
                book,
                concurrency=concurrency,
                duration_s=duration_s,
            )
            rows += [base, ours]
            ratios[f"c{concurrency}"] = {
                "throughput_ratio": ours.throughput / base.throughput,
                "p50_ratio": ours.p50_ms / base.p50_ms,
            }
        print_table("Scheduling: a receptionist booking vs. the raw echo", rows)
        for name, r in ratios.items():
            print(
                f"  {name}: bookings at {r['throughput_ratio']:.1%} of raw echo throughput, "
                f"p50 {r['p50_ratio']:.1f}x raw"
            )
        print(f"  bookings made: {next(counter)} over {PHYSICIANS} physicians")
        result = {"rows": rows, "ratios": ratios}
        print(f"  written: {write_results('scheduling', result)}")
        return result
    finally:
        if connection is not None:
            await connection.close()
        for process in reversed(processes):
            process.terminate()
            process.wait(15)
        await records.stop()
        await client.stop()
        await drop_databases(settings)


if __name__ == "__main__":
    asyncio.run(run())
