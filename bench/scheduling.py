"""A receptionist booking an appointment, next to the raw aio-pika echo, same run.

Each booking is what the gateway forwards: sent as the gateway's broker identity, with
the receptionist's principal and a fresh Ed25519-signed proof of the very HTTP request
(`POST /api/v1/appointments` with that body), an idempotency key, a reason for visit.
The scheduling service and the keyvault run as their own processes (as in production),
in a namespace of their own (`bench.namespace`); auth's `resolve_key` and records'
`patient_ref` are stand-ins in this process, connected as auth and records. So one
booking is: the RPC, the runtime's check of the forwarded signature (auth lookup +
Ed25519 verify, the request rebuilt from the proof and compared), physician and patient
checks, one keyvault encryption, and the transaction that locks the physician's row,
checks hours and overlaps, inserts, and writes the event and audit outbox rows.
Bookings go to 32 physicians round robin, each in its own free 10-minute slot.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import subprocess
import sys
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel

from bench.common import (
    against_baseline,
    duration,
    print_table,
    write_results,
)
from bench.keyvault import child_env, mac_accounts
from bench.namespace import namespace
from bench.rpc import PAYLOAD, RawClient
from contracts import keyvault as kv
from contracts import scheduling as sched
from contracts.auth import (
    RESOLVE_KEY,
    Account,
    AccountRecord,
    AccountStatus,
    ResolveKeyRequest,
)
from contracts.base import GATEWAY, OPERATOR, Principal, Role, RpcMethod
from contracts.common import ping
from contracts.http import target_of
from contracts.records import PATIENT_REF, PatientRef, PatientRefRequest
from mesh.context import CallContext
from mesh.db import drop_databases
from mesh.errors import NotFound
from mesh.httpsig import proof_from_headers, sign_request
from mesh.rpc import RpcRouter
from mesh.runtime import Runtime
from mesh.settings import Settings
from tests.keyvault.support import initialise, unseal

ROOT = Path(__file__).resolve().parents[1]
PHYSICIANS = 32
SLOT = timedelta(minutes=10)
ORIGIN = "http://bench"


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

    def signed(self, method: RpcMethod[Any, Any], request: BaseModel) -> tuple[str, bytes]:
        """(proof, body) of the HTTP request `request` is sent as, signed by this member
        (what the gateway forwards with the RPC)."""
        verb, path, body = target_of(method, request)
        uri = ORIGIN + path
        headers = sign_request(self.key, self.account.account_id, verb, uri, body)
        return proof_from_headers(verb, uri, headers).model_dump_json(), body

    async def write(self, client: Runtime, method: RpcMethod[Any, Any], request: BaseModel) -> Any:
        """Call the write `method` as this member would through the gateway: signed, with
        a fresh idempotency key."""
        proof, signed_body = self.signed(method, request)
        return await client.rpc.call(
            method,
            request,
            principal=self.principal,
            proof=proof,
            signed_body=signed_body,
            idempotency_key=str(uuid.uuid4()),
        )


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


def start(module: str, settings: Settings, **kwargs: Any) -> subprocess.Popen[bytes]:
    env = child_env(settings) | {"MEDIHAVEN_CLINIC_TIMEZONE": "Europe/Berlin"}
    return subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, **kwargs)


async def run(duration_s: float | None = None) -> Mapping[str, object]:
    duration_s = duration(duration_s if duration_s is not None else 3.0)
    with namespace("scheduling") as settings:
        try:
            return await _run(settings, duration_s)
        finally:
            await drop_databases(settings)


async def _run(settings: Settings, duration_s: float) -> Mapping[str, object]:
    accounts: dict[str, AccountRecord] = {}
    patients: set[str] = set()
    auth_router, records_router = stand_ins(accounts, patients)
    echo = start("bench.echo_server", settings, stdout=subprocess.PIPE)
    processes = [echo, start("services.keyvault", settings)]
    runtimes: list[Runtime] = []
    connection = None
    try:
        for name, router in (("auth", auth_router), ("records", records_router)):
            runtimes.append(await Runtime.start(name, settings, router=router, use_database=False))
        tool = await Runtime.start(
            "scheduling-bench-operator", settings, use_database=False, identity=OPERATOR
        )
        runtimes.append(tool)
        # Stands for the gateway: the only caller of routed methods.
        client = await Runtime.start(
            "scheduling-bench", settings, use_database=False, identity=GATEWAY
        )
        runtimes.append(client)
        assert echo.stdout is not None
        if (await asyncio.to_thread(echo.stdout.readline)).strip() != b"ready":
            raise RuntimeError("benchmark echo server did not start")
        await wait_for(client, kv.SERVICE)
        init = await initialise(tool.rpc)
        await unseal(tool.rpc, init.shares)
        processes.append(start("services.scheduling", settings))
        await wait_for(client, sched.SERVICE)

        admin, desk = (
            Staff("bench-admin", Role.administrator),
            Staff("bench-desk", Role.receptionist),
        )
        doctors = [Staff(f"bench-dr-{i}", Role.physician) for i in range(PHYSICIANS)]
        staff = [admin, desk, *doctors]
        tags = await mac_accounts(settings, init, [s.account for s in staff])
        for member, tag in zip(staff, tags, strict=True):
            accounts[member.account.account_id] = AccountRecord(account=member.account, mac=tag)
        every_hour = [
            sched.WorkingPeriod(weekday=d, start="00:00", end="24:00") for d in sched.Weekday
        ]
        for doctor in doctors:
            request = sched.SetWorkingHoursRequest(
                physician_id=doctor.account.account_id, weekly=every_hour
            )
            await admin.write(client, sched.SET_WORKING_HOURS, request)

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
            await desk.write(client, sched.BOOK, request)

        connection = await aio_pika.connect_robust(settings.amqp_url_for("testclient"))
        raw = RawClient(connection)
        await raw.start()
        body = PAYLOAD.encode()
        rows, ratios = await against_baseline(
            ("raw aio-pika echo", lambda: raw.call(body)),
            ("book (signed, receptionist)", book),
            duration_s,
        )
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
        for runtime in reversed(runtimes):
            await runtime.stop()


if __name__ == "__main__":
    asyncio.run(run())
