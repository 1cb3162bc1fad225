"""A physician reading a patient summary through the gateway, next to the raw aio-pika echo.

The patient has demographics, 10 encounters and 5 prescriptions signed by the physician.
Every summary is a real HTTP request signed with the physician's Ed25519 key, so one call
is: the gateway's checks (signature, nonce and token buckets in Redis), the records RPC,
the care-relationship check and the chart's indexed queries, one DECRYPT batch (the
keyvault re-verifies the physician's signature) with the prescriptions' MACs checked in
the same call, and a confirmed, persistent audit event before the reply. Every process is
real (gateway, auth, records, keyvault, audit), as `make run` starts them.

Baselines in the same run: the raw aio-pika direct-reply-to echo (server in its own
process) and, to show where the time goes, the same summary asked of records straight
over the bus (what the gateway forwards: principal and signed proof), the cheapest signed
route (`GET /api/v1/me`: the gateway's checks and one RPC) and one persistent message
published with a confirm to a quorum queue (what making the audit event durable costs).

Target (issue #5): summary through the gateway, p50 <= 4x raw echo p50, at concurrency
1 and 16.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx

from bench.common import Measurement, measure, print_table, write_results
from bench.mesh import LOGS, Actor, Signed, Staffing, bench_mesh
from bench.rpc import PAYLOAD, ROOT, RawClient
from cli.sdk import sign_prescription
from contracts import records as rec
from contracts.base import Principal, Role
from mesh.httpsig import proof_from_headers, sign_request
from tests.mesh.fixtures import client_runtime
from tests.processes import process_env

SERVICES = ["services.keyvault", "services.auth", "services.records", "services.audit"]
ENCOUNTERS, PRESCRIPTIONS = 10, 5
CONCURRENCY = (1, 16)
TARGET_P50_RATIO = 4.0


def _encounter(i: int) -> dict[str, Any]:
    return {
        "occurred_at": (datetime.now(UTC) - timedelta(days=30 * i + 1)).isoformat(),
        "chief_complaint": "Follow-up of type 2 diabetes and hypertension",
        "history_of_present_illness": "Feels well. Occasional morning headaches. " * 4,
        "examination": "BP slightly raised; feet: pulses present, no ulcers. " * 3,
        "assessment": "Diabetes controlled; hypertension borderline.",
        "plan": "Continue treatment; repeat HbA1c in three months. " * 2,
        "diagnoses": [{"code": "E11.9"}, {"code": "I10"}],
        "vital_signs": {
            "blood_pressure": {"systolic": 142, "diastolic": 88},
            "heart_rate": {"value": 76},
            "temperature": {"value": 36.7, "unit": "Cel"},
            "weight": {"value": 84.2, "unit": "kg"},
        },
        "allergies": [{"substance": "Penicillin", "severity": "severe"}],
    }


async def _seed(api: Signed, admin_token: str) -> tuple[Actor, str]:
    """A physician and one patient with the chart above; returns both."""
    staff = Staffing(api, admin_token, "bench")
    desk = await staff.add("receptionist", "desk")
    doctor = await staff.add("physician", "dr")
    demographics = {
        "given_name": "Benchmark",
        "family_name": "Patient",
        "date_of_birth": "1970-01-01",
        "sex": "female",
        "phone": "+44 20 7946 0000",
        "email": "bench@example.org",
        "address": {
            "line1": "1 Bench Street",
            "postal_code": "AB1 2CD",
            "city": "Testford",
            "country": "GB",
        },
        "emergency_contact": {
            "name": "Next Of Kin",
            "relationship": "sibling",
            "phone": "+44 20 7946 0001",
        },
        "insurance": {"company": "Bench Mutual", "member_id": "BM-1", "valid_until": "2035-01-01"},
    }
    patient = await api.call(desk, "POST", "/api/v1/patients", {"demographics": demographics})
    patient_id = str(patient["patient_id"])
    encounters = [
        (
            await api.call(
                doctor,
                "POST",
                f"/api/v1/patients/{patient_id}/encounters",
                {"content": _encounter(i)},
            )
        )["encounter_id"]
        for i in range(ENCOUNTERS)
    ]
    for i in range(PRESCRIPTIONS):
        body = sign_prescription(
            doctor.key,
            doctor.account_id,
            {
                "prescription_id": str(uuid.uuid4()),
                "patient_id": patient_id,
                "encounter_id": encounters[i],
                "created_at": datetime.now(UTC).isoformat(),
                "medication": {
                    "drug_name": f"Metformin {i}",
                    "strength": "500 mg",
                    "dosage_form": "tablet",
                    "dose": "1 tablet",
                    "route": "oral",
                    "frequency": "twice daily",
                    "duration_days": 90,
                    "quantity": 180,
                    "refills": 1,
                    "instructions": "Take with meals.",
                    "free_text": True,  # no catalog is loaded in this benchmark
                },
            },
        )
        await api.call(doctor, "POST", "/api/v1/prescriptions", body)
    return doctor, patient_id


async def run(duration_s: float = 3.0) -> Mapping[str, object]:
    async with bench_mesh(SERVICES) as bench:
        settings = bench.settings
        echo = subprocess.Popen(  # noqa: ASYNC220 - started once, before any measurement
            [sys.executable, "-m", "bench.echo_server"],
            cwd=ROOT,
            env=process_env(settings),
            stdout=subprocess.PIPE,
        )
        try:
            assert echo.stdout is not None
            if (await asyncio.to_thread(echo.stdout.readline)).strip() != b"ready":
                raise RuntimeError("benchmark echo server did not start")
            return await _measure(bench.gateway.url, bench.admin_token, settings, duration_s)
        finally:
            echo.terminate()
            echo.wait(15)


async def _measure(
    base: str, admin_token: str, settings: Any, duration_s: float
) -> Mapping[str, object]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with (
        httpx.AsyncClient(limits=limits, timeout=30) as http,
        client_runtime(settings, "bench-records") as bus,
    ):
        api = Signed(http, base)
        doctor, patient_id = await _seed(api, admin_token)
        path = f"/api/v1/patients/{patient_id}/summary"
        check = await api.call(doctor, "GET", path)
        assert len(check["encounters"]) == ENCOUNTERS, check
        assert len(check["active_prescriptions"]) == PRESCRIPTIONS, check

        principal = Principal(account_id=doctor.account_id, role=Role.physician)
        request = rec.PatientSummaryRequest(patient_id=patient_id)
        uri = base + path

        async def direct() -> None:
            headers = sign_request(doctor.key, doctor.account_id, "GET", uri, b"")
            proof = proof_from_headers("GET", uri, headers).model_dump_json()
            await bus.rpc.call(rec.PATIENT_SUMMARY, request, principal=principal, proof=proof)

        connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
        try:
            raw = RawClient(connection)
            await raw.start()
            confirmed = await connection.channel(publisher_confirms=True)
            durable = await confirmed.declare_queue(
                f"bench.records.confirm-{uuid.uuid4().hex[:6]}",
                durable=True,
                arguments={"x-queue-type": "quorum"},
            )

            async def publish_confirmed() -> None:
                message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                await confirmed.default_exchange.publish(message, routing_key=durable.name)

            body = PAYLOAD.encode()
            rows: list[Measurement] = []
            ratios: dict[str, dict[str, float]] = {}
            for concurrency in CONCURRENCY:
                base_row = await measure(
                    "raw aio-pika echo",
                    lambda: raw.call(body),
                    concurrency=concurrency,
                    duration_s=duration_s,
                )
                ours = await measure(
                    "summary via gateway (signed)",
                    lambda: api.call(doctor, "GET", path),
                    concurrency=concurrency,
                    duration_s=duration_s,
                )
                bus_row = await measure(
                    "summary, records RPC direct",
                    direct,
                    concurrency=concurrency,
                    duration_s=duration_s,
                )
                me = await measure(
                    "signed GET /me (cheapest route)",
                    lambda: api.call(doctor, "GET", "/api/v1/me"),
                    concurrency=concurrency,
                    duration_s=duration_s,
                )
                durable_row = await measure(
                    "confirmed persistent publish",
                    publish_confirmed,
                    concurrency=concurrency,
                    duration_s=duration_s,
                )
                rows += [base_row, ours, bus_row, me, durable_row]
                ratios[f"c{concurrency}"] = {
                    "p50_ratio": ours.p50_ms / base_row.p50_ms,
                    "throughput_ratio": ours.throughput / base_row.throughput,
                    "direct_p50_ratio": bus_row.p50_ms / base_row.p50_ms,
                    "me_p50_ratio": me.p50_ms / base_row.p50_ms,
                    "confirm_p50_ratio": durable_row.p50_ms / base_row.p50_ms,
                }
            await durable.delete(if_unused=False, if_empty=False)
        finally:
            await connection.close()
    print_table(
        f"Records: a physician's patient summary ({ENCOUNTERS} encounters, "
        f"{PRESCRIPTIONS} prescriptions) vs. the raw echo",
        rows,
    )
    for name, r in ratios.items():
        verdict = "ok" if r["p50_ratio"] <= TARGET_P50_RATIO else "OVER TARGET"
        print(
            f"  {name}: via gateway p50 {r['p50_ratio']:.2f}x raw echo (target <= "
            f"{TARGET_P50_RATIO:g}x, {verdict}), throughput {r['throughput_ratio']:.1%} of raw; "
            f"records RPC direct p50 {r['direct_p50_ratio']:.2f}x; floors: signed /me "
            f"{r['me_p50_ratio']:.2f}x, confirmed publish {r['confirm_p50_ratio']:.2f}x"
        )
    result = {"rows": rows, "ratios": ratios, "target_p50_ratio": TARGET_P50_RATIO}
    print(f"  written: {write_results('records', result)}  (process logs: {LOGS})")
    return result


if __name__ == "__main__":
    asyncio.run(run())
