"""A physician reading a patient summary, next to the raw aio-pika echo, same run.

The patient has demographics, 10 encounters and 5 signed prescriptions. Each summary
call is what the gateway would forward: the physician's principal and a real
Ed25519-signed request proof (re-signed every second, so always fresh), which the
keyvault verifies on every call. The records service and the keyvault run as their own
processes (as in production), the raw echo server too; auth's `resolve_key` is a
stand-in in this process. So one summary is: the RPC, four indexed queries, one DECRYPT
batch of every row (through the keyvault's signature gate) with the prescriptions' MACs
verified meanwhile, and a confirmed, persistent audit event before the reply.

Target (issue #5): summary p50 <= 4x raw echo p50, at concurrency 1 and 16.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, date, datetime, timedelta
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
from contracts import records as rec
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
from mesh.context import CallContext
from mesh.db import drop_databases
from mesh.errors import NotFound
from mesh.httpsig import proof_from_headers, sign_request
from mesh.rpc import RpcRouter
from mesh.runtime import Runtime
from mesh.settings import Settings
from services.keyvault.sealedbox import open_share, public_key_b64, seal_share

ROOT = Path(__file__).resolve().parents[1]
URI = "http://bench/api/v1/patients/summary"
ENCOUNTERS, PRESCRIPTIONS = 10, 5
CONCURRENCY = (1, 16)
TARGET_P50_RATIO = 4.0


class Staff:
    """A staff member with a real key; the bench's keyvault MACs the account row."""

    def __init__(self, account_id: str, role: Role) -> None:
        self.key = Ed25519PrivateKey.generate()
        public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        now = datetime.now(UTC)
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
        self.current_proof = self.proof()

    def proof(self) -> str:
        headers = sign_request(self.key, self.account.account_id, "POST", URI, b"")
        return proof_from_headers("POST", URI, headers).model_dump_json()


@asynccontextmanager
async def fresh_proofs(staff: Staff) -> AsyncIterator[None]:
    """Re-sign the staff member's proof every second (the keyvault allows 30 s)."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(1.0)
            staff.current_proof = staff.proof()

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()


def stand_in_auth(accounts: dict[str, AccountRecord]) -> RpcRouter:
    auth = RpcRouter("auth")

    @auth.handler(RESOLVE_KEY)
    async def resolve(req: ResolveKeyRequest, ctx: CallContext) -> AccountRecord:
        if req.account_id not in accounts:
            raise NotFound("no such account")
        return accounts[req.account_id]

    return auth


@contextmanager
def own_vhost(settings: Settings) -> Iterator[Settings]:
    """A RabbitMQ vhost of its own (if `rabbitmqctl` is at hand): no other service answers
    this run's calls, and its audit events go when the vhost does."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        yield settings
        return
    name = f"medihaven-bench-records-{secrets.token_hex(3)}"

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


def start(module: str, settings: Settings, **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", module], cwd=ROOT, env=child_env(settings), **kwargs
    )


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
    for sealed in init.sealed_shares[: init.threshold]:
        await client.rpc.call(
            kv.UNSEAL,
            kv.UnsealRequest(
                sealed_share=seal_share(status.transport_public_key, open_share(operator, sealed))
            ),
        )


async def seed(client: Runtime, desk: Staff, doctor: Staff) -> str:
    """One patient with 10 encounters and 5 signed prescriptions; returns the patient id."""

    async def call(method: Any, request: Any, staff: Staff) -> Any:
        return await client.rpc.call(
            method,
            request,
            principal=staff.principal,
            proof=staff.proof(),
            idempotency_key=str(uuid.uuid4()),
        )

    patient = await call(
        rec.CREATE_PATIENT,
        rec.CreatePatientRequest(
            demographics=rec.Demographics(
                given_name="Benchmark",
                family_name="Patient",
                date_of_birth=date(1970, 1, 1),
                sex=rec.Sex.female,
                phone="+44 20 7946 0000",
                email="bench@example.org",
                address=rec.Address(
                    line1="1 Bench Street", postal_code="AB1 2CD", city="Testford", country="GB"
                ),
                emergency_contact=rec.EmergencyContact(
                    name="Next Of Kin", relationship="sibling", phone="+44 20 7946 0001"
                ),
                insurance=rec.Insurance(
                    company="Bench Mutual", member_id="BM-1", valid_until=date(2035, 1, 1)
                ),
            ),
            confirm_duplicate=True,
        ),
        desk,
    )
    now = datetime.now(UTC)
    encounters = []
    for i in range(ENCOUNTERS):
        content = rec.EncounterContent(
            occurred_at=now - timedelta(days=30 * i + 1),
            chief_complaint="Follow-up of type 2 diabetes and hypertension",
            history_of_present_illness="Feels well. Occasional morning headaches. " * 4,
            examination="BP slightly raised; feet: pulses present, no ulcers. " * 3,
            assessment="Diabetes controlled; hypertension borderline.",
            plan="Continue treatment; repeat HbA1c in three months. " * 2,
            diagnoses=[rec.Diagnosis(code="E11.9"), rec.Diagnosis(code="I10")],
            vital_signs=rec.VitalSigns(
                blood_pressure=rec.BloodPressure(systolic=142, diastolic=88),
                heart_rate=rec.HeartRate(value=76),
                temperature=rec.Temperature(value=36.7, unit="Cel"),
                weight=rec.Weight(value=84.2, unit="kg"),
            ),
            allergies=[rec.Allergy(substance="Penicillin", severity=rec.AllergySeverity.severe)],
        )
        written = await call(
            rec.ADD_ENCOUNTER,
            rec.AddEncounterRequest(patient_id=patient.patient_id, content=content),
            doctor,
        )
        encounters.append(written.encounter_id)
    for i in range(PRESCRIPTIONS):
        request = rec.PrescribeRequest(
            prescription_id=str(uuid.uuid4()),
            patient_id=patient.patient_id,
            encounter_id=encounters[i],
            created_at=datetime.now(UTC),
            medication=rec.Medication(
                drug_name=f"Metformin {i}",
                strength="500 mg",
                dosage_form=rec.DosageForm.tablet,
                dose="1 tablet",
                route=rec.Route.oral,
                frequency="twice daily",
                duration_days=90,
                quantity=180,
                refills=1,
                instructions="Take with meals.",
                free_text=True,  # no catalog is loaded in this benchmark
            ),
            signature="A" * 86 + "==",
        )
        core = request.core(doctor.account.account_id)
        signature = base64.b64encode(doctor.key.sign(rec.canonical_prescription(core))).decode()
        await call(rec.PRESCRIBE, request.model_copy(update={"signature": signature}), doctor)
    return str(patient.patient_id)


async def run(duration_s: float = 3.0) -> Mapping[str, object]:
    with own_vhost(bench_settings()) as settings:
        return await _run(settings, duration_s)


async def _run(settings: Settings, duration_s: float) -> Mapping[str, object]:
    accounts: dict[str, AccountRecord] = {}
    echo = start("bench.echo_server", settings, stdout=subprocess.PIPE)
    processes = [echo, start("services.keyvault", settings)]
    client = await Runtime.start(
        "auth", settings, router=stand_in_auth(accounts), use_database=False
    )
    connection = None
    try:
        assert echo.stdout is not None
        if (await asyncio.to_thread(echo.stdout.readline)).strip() != b"ready":
            raise RuntimeError("benchmark echo server did not start")
        await wait_for(client, kv.SERVICE)
        await unseal(client)
        processes.append(start("services.records", settings))
        await wait_for(client, rec.SERVICE)
        desk, doctor = Staff("bench-desk", Role.receptionist), Staff("bench-dr", Role.physician)
        tags = await client.rpc.call(
            kv.MAC, kv.MacRequest(rows=[account_mac_row(s.account) for s in (desk, doctor)])
        )
        for member, tag in zip((desk, doctor), tags.tags, strict=True):
            accounts[member.account.account_id] = AccountRecord(account=member.account, mac=tag)
        patient_id = await seed(client, desk, doctor)
        request = rec.PatientSummaryRequest(patient_id=patient_id)
        check = await client.rpc.call(
            rec.PATIENT_SUMMARY, request, principal=doctor.principal, proof=doctor.proof()
        )
        assert len(check.encounters) == ENCOUNTERS
        assert len(check.active_prescriptions) == PRESCRIPTIONS

        async def summary() -> None:
            await client.rpc.call(
                rec.PATIENT_SUMMARY,
                request,
                principal=doctor.principal,
                proof=doctor.current_proof,
            )

        connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
        raw = RawClient(connection)
        await raw.start()
        body = PAYLOAD.encode()
        rows: list[Measurement] = []
        ratios: dict[str, dict[str, float]] = {}
        async with fresh_proofs(doctor):
            for concurrency in CONCURRENCY:
                base = await measure(
                    "raw aio-pika echo",
                    lambda: raw.call(body),
                    concurrency=concurrency,
                    duration_s=duration_s,
                )
                ours = await measure(
                    "patient summary (signed)",
                    summary,
                    concurrency=concurrency,
                    duration_s=duration_s,
                )
                rows += [base, ours]
                ratios[f"c{concurrency}"] = {
                    "p50_ratio": ours.p50_ms / base.p50_ms,
                    "throughput_ratio": ours.throughput / base.throughput,
                }
        print_table(
            f"Records: a physician's patient summary ({ENCOUNTERS} encounters, "
            f"{PRESCRIPTIONS} prescriptions) vs. the raw echo",
            rows,
        )
        for name, r in ratios.items():
            verdict = "ok" if r["p50_ratio"] <= TARGET_P50_RATIO else "OVER TARGET"
            print(
                f"  {name}: p50 {r['p50_ratio']:.2f}x raw echo (target <= {TARGET_P50_RATIO:g}x, "
                f"{verdict}); throughput {r['throughput_ratio']:.1%} of raw echo"
            )
        result = {"rows": rows, "ratios": ratios, "target_p50_ratio": TARGET_P50_RATIO}
        print(f"  written: {write_results('records', result)}")
        return result
    finally:
        if connection is not None:
            await connection.close()
        for process in reversed(processes):
            process.terminate()
            process.wait(15)
        await client.stop()
        await drop_databases(settings)


if __name__ == "__main__":
    asyncio.run(run())
