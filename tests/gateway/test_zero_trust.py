"""Zero trust on the bus (DESIGN §3a), attacked from inside with real processes.

The attacker has taken over a process of the mesh and holds its STOLEN broker
credentials (its password file in the secrets folder): it talks plain aio-pika to
RabbitMQ, outside the mesh's own runtime, and crafts the messages it likes. Each test
names the protection it attacks; without that protection the attack would succeed and
the test would fail.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aio_pika.exceptions import ChannelClosed
from pydantic import BaseModel

from contracts import auth, records
from contracts import keyvault as kv
from contracts.audit import AUDIT_RECORDED, AuditAction, AuditAgent, AuditEvent, AuditOutcome
from contracts.base import EVENTS_EXCHANGE, Principal, Role, RpcMethod, instance_queue
from contracts.errors import ErrorCode, ErrorReply
from mesh.context import (
    HEADER_DEADLINE,
    HEADER_IDEMPOTENCY,
    HEADER_METHOD,
    HEADER_PRINCIPAL,
    HEADER_PROOF,
    HEADER_REQUEST_BYTES,
    HEADER_STATUS,
    HEADER_TRACEPARENT,
    new_traceparent,
)
from mesh.httpsig import proof_from_headers, sign_request
from mesh.settings import Settings
from services.keyvault.sealedbox import seal_share
from tests.gateway.support import Mesh, Staff, mesh
from tests.processes import Process, running
from tests.support.polling import until_sync

REPLY_TO = "amq.rabbitmq.reply-to"
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The mesh as real processes, with records, scheduling and a second keyvault replica
    (initialised with the first one's shares, unsealed like it)."""
    logs = tmp_path_factory.mktemp("ztlogs")
    with (
        mesh("zt", logs) as m,
        running(["services.records", "services.scheduling"], m.settings, logs),
    ):
        second = Process("services.keyvault", m.settings, logs)
        try:
            second.wait_ready()
            assert until_sync(lambda: len(replicas(m)) == 2, 30), replicas(m)
            unseal_all(m)
            yield m
        finally:
            second.stop()


# ---------------------------------------------------------------------------- helpers


def replicas(world: Mesh) -> list[dict[str, Any]]:
    reply = httpx.get(f"{world.url}/api/v1/vault/status", timeout=10)
    assert reply.status_code == 200, reply.text
    found: list[dict[str, Any]] = reply.json()["replicas"]
    return found


def states(world: Mesh) -> list[str]:
    return sorted(r["state"] for r in replicas(world))


def unseal_all(world: Mesh) -> None:
    for replica in replicas(world):
        for share in world.shares[:3]:
            if replica["state"] == "unsealed":
                break
            reply = httpx.post(
                f"{world.url}/api/v1/vault/unseal",
                json={
                    "instance": replica["instance"],
                    "sealed_share": seal_share(replica["transport_public_key"], share),
                },
                timeout=10,
            )
            assert reply.status_code == 200, reply.text
            replica = reply.json()
    assert states(world) == ["unsealed", "unsealed"]


@contextmanager
def unsealed_afterwards(world: Mesh) -> Iterator[None]:
    """Whatever the test did, every replica is unsealed again for the next one."""
    try:
        yield
    finally:
        if states(world) != ["unsealed", "unsealed"]:
            unseal_all(world)


def principal_of(staff: Staff) -> Principal:
    return Principal(
        account_id=staff.account_id,
        role=Role(str(staff.account["role"])),
        username=str(staff.account["username"]),
    )


def captured(
    world: Mesh, staff: Staff, method: str, path: str, body: bytes = b"", *, send: bool = True
) -> tuple[str, httpx.Response | None]:
    """A real signed request of `staff` and the proof the gateway forwards for it (what
    anyone holding the gateway's or the serving service's bus credentials sees)."""
    url = f"{world.url}{path}"
    headers = sign_request(staff.client.private_key, staff.account_id, method, url, body)
    if body:
        headers["Content-Type"] = "application/json"
    response = None
    if send:
        response = httpx.request(method, url, content=body, headers=headers, timeout=10)
    return proof_from_headers(method, url, headers).model_dump_json(), response


@dataclass
class Reply:
    status: str
    body: bytes

    @property
    def error(self) -> ErrorReply:
        assert self.status == "error", self.body
        return ErrorReply.model_validate_json(self.body)


class Stolen:
    """A plain aio-pika client with one identity's stolen broker credentials."""

    def __init__(self, settings: Settings, identity: str) -> None:
        assert settings.amqp_secrets_dir is not None
        password = (settings.amqp_secrets_dir / identity).read_text().strip()
        self.user = settings.broker_user(identity)
        parts = urlsplit(settings.amqp_url.get_secret_value())
        netloc = f"{quote(self.user, safe='')}:{quote(password, safe='')}@{parts.hostname}"
        if parts.port:
            netloc += f":{parts.port}"
        self.url = urlunsplit(parts._replace(netloc=netloc))
        self.connection: AbstractConnection | None = None
        self.channel: AbstractChannel | None = None
        self._waiting: dict[str, asyncio.Future[AbstractIncomingMessage]] = {}

    async def __aenter__(self) -> Stolen:
        self.connection = await aio_pika.connect(self.url)
        self.channel = await self.connection.channel()
        replies = await self.channel.get_queue(REPLY_TO, ensure=False)
        await replies.consume(self._on_reply, no_ack=True)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.connection is not None
        await self.connection.close()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        waiting = self._waiting.pop(message.correlation_id or "", None)
        if waiting is not None and not waiting.done():
            waiting.set_result(message)

    async def call(
        self,
        method: RpcMethod[Any, Any],
        request: BaseModel,
        *,
        principal: Principal | None = None,
        proof: str | None = None,
        signed_body: bytes = b"",
        instance: str | None = None,
        user_id: str | None = None,
        timeout: float = 10.0,
    ) -> Reply:
        """One RPC message, crafted by hand (headers as the mesh's runtime reads them)."""
        assert self.channel is not None
        body = request.model_dump_json().encode()
        headers: dict[str, Any] = {
            HEADER_METHOD: method.name,
            HEADER_DEADLINE: repr(time.time() + timeout),
            HEADER_TRACEPARENT: new_traceparent(),
        }
        if principal is not None:
            headers[HEADER_PRINCIPAL] = principal.model_dump_json()
        if method.write:
            headers[HEADER_IDEMPOTENCY] = str(uuid.uuid4())
        if proof is not None:
            headers[HEADER_PROOF] = proof
            if signed_body:
                headers[HEADER_REQUEST_BYTES] = len(body)
                body += signed_body
        correlation_id = str(uuid.uuid4())
        waiting: asyncio.Future[AbstractIncomingMessage] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting[correlation_id] = waiting
        await self.channel.default_exchange.publish(
            aio_pika.Message(
                body,
                content_type="application/json",
                headers=headers,
                correlation_id=correlation_id,
                reply_to=REPLY_TO,
                expiration=timeout,
                user_id=user_id or self.user,
            ),
            instance_queue(method.service, instance) if instance else method.queue,
        )
        message = await asyncio.wait_for(waiting, timeout)
        status = (message.headers or {}).get(HEADER_STATUS)
        return Reply(status.decode() if isinstance(status, bytes) else str(status), message.body)

    async def publish(self, routing_key: str, payload: BaseModel, message_id: str) -> None:
        """An event on the topic exchange (publisher confirms: the broker has it)."""
        assert self.channel is not None
        exchange = await self.channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
        await exchange.publish(
            aio_pika.Message(
                payload.model_dump_json().encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message_id,
                user_id=self.user,
            ),
            routing_key,
        )


def attack(coro: Any) -> Any:
    return asyncio.run(coro)


def refused(reply: Reply, code: ErrorCode, *words: str) -> ErrorReply:
    error = reply.error
    assert error.code is code, error
    for word in words:
        assert word in error.message, error
    return error


def audit_entries(admin: Staff, **query: Any) -> list[dict[str, Any]]:
    page = admin.client.get("/api/v1/audit/events", limit=500, **query)
    entries: list[dict[str, Any]] = page["entries"]
    return entries


def book(desk: Staff, doctor: Staff, patient_id: str) -> None:
    """The desk books the patient with the physician (which opens the chart to them)."""
    desk.client.put(
        f"/api/v1/physicians/{doctor.account_id}/working-hours",
        {"weekly": [{"weekday": d, "start": "00:00", "end": "24:00"} for d in WEEKDAYS]},
    )
    start = (datetime.now(UTC) + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    desk.client.post(
        "/api/v1/appointments",
        {
            "patient_id": patient_id,
            "physician_id": doctor.account_id,
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=30)).isoformat(),
            "reason": "follow-up",
        },
    )


def new_patient(desk: Staff) -> str:
    written = desk.client.post(
        "/api/v1/patients",
        {
            "demographics": {
                "given_name": "Zero",
                "family_name": f"Trust{uuid.uuid4().hex[:6]}",
                "date_of_birth": "1970-01-01",
                "sex": "unknown",
            },
            "confirm_duplicate": True,
        },
    )
    return str(written["patient_id"])


# ---------------------------------------------------------------------------- attacks


def test_the_gateways_credentials_get_no_mac_oracle_and_cannot_audit_in_records_name(
    world: Mesh,
) -> None:
    """(contracts: callers of keyvault.mac; audit publishers per type, in the chain)"""
    admin = world.admin()
    patient_id = str(uuid.uuid4())
    forged = AuditEvent(
        event_id=str(uuid.uuid4()),
        type="patient.read",
        action=AuditAction.read,
        outcome=AuditOutcome.success,
        recorded=datetime.now(UTC),
        agent=AuditAgent(account_id=admin.account_id, role=Role.physician),
        source="records",
        patient_id=patient_id,
        detail="a read that never happened",
    )

    async def main() -> Reply:
        async with Stolen(world.settings, "gateway") as gateway:
            mac = await gateway.call(
                kv.MAC,
                kv.MacRequest(
                    rows=[kv.MacRow(table="patients", pk=patient_id, columns=[("mrn", "1")])]
                ),
            )
            await gateway.publish(AUDIT_RECORDED.routing_key, forged, forged.event_id)
            return mac

    mac = attack(main())
    refused(mac, ErrorCode.forbidden, "gateway may not call keyvault.mac")

    # The forged entry is kept out of the chain; an integrity alert takes its place.
    def alerted() -> bool:
        alerts = audit_entries(admin, type="audit.integrity_alert")
        return any(e["event"]["entity_id"] == forged.event_id for e in alerts)

    assert until_sync(alerted, 30), "no integrity alert for the forged audit event"
    (alert,) = [
        e
        for e in audit_entries(admin, type="audit.integrity_alert")
        if e["event"]["entity_id"] == forged.event_id
    ]
    assert alert["event"]["source"] == "audit" and alert["publisher"] == "audit"
    assert "patient.read" in alert["event"]["detail"]
    assert audit_entries(admin, patient_id=patient_id) == []
    assert all(
        e["event"]["event_id"] != forged.event_id for e in audit_entries(admin, type="patient.read")
    )
    assert admin.client.get("/api/v1/audit/verify")["ok"] is True
    refusals = audit_entries(admin, type="bus.call_refused")
    assert any("keyvault.mac" in (e["event"]["detail"] or "") for e in refusals)


def test_a_service_cannot_audit_under_a_type_the_administrators_cannot_filter_on(
    world: Mesh,
) -> None:
    """(contracts.audit.AuditType: a made-up type, even of the publisher's own subject,
    would sit in the chain where no filter finds it)"""
    admin = world.admin()
    made_up = AuditEvent(
        event_id=str(uuid.uuid4()),
        type="patient.read_quietly",
        action=AuditAction.read,
        outcome=AuditOutcome.success,
        recorded=datetime.now(UTC),
        agent=AuditAgent(account_id=admin.account_id, role=Role.physician),
        source="records",
        patient_id=str(uuid.uuid4()),
    )

    async def main() -> None:
        async with Stolen(world.settings, "records") as records:
            await records.publish(AUDIT_RECORDED.routing_key, made_up, made_up.event_id)

    attack(main())

    def alerts() -> list[dict[str, Any]]:
        return [
            e
            for e in audit_entries(admin, type="audit.integrity_alert")
            if e["event"]["entity_id"] == made_up.event_id
        ]

    assert until_sync(lambda: bool(alerts()), 30), "the made-up type was not kept apart"
    assert "patient.read_quietly" in alerts()[0]["event"]["detail"]
    assert audit_entries(admin, patient_id=made_up.patient_id) == []
    assert admin.client.get("/api/v1/audit/verify")["ok"] is True


def test_a_user_id_of_another_service_is_refused_by_the_broker(world: Mesh) -> None:
    """(RabbitMQ validates user_id against the connection's user)"""
    records_user = world.settings.broker_user("records")

    async def main() -> None:
        async with Stolen(world.settings, "gateway") as gateway:
            assert gateway.channel is not None
            with pytest.raises(ChannelClosed) as closed:
                # As records, keyvault.mac would answer (records owns the patients table).
                await gateway.call(
                    kv.MAC,
                    kv.MacRequest(
                        rows=[kv.MacRow(table="patients", pk="p-1", columns=[("mrn", "1")])]
                    ),
                    user_id=records_user,
                    timeout=5,
                )
            assert "user_id" in str(closed.value)
            assert gateway.channel.is_closed

    attack(main())


def test_a_captured_signature_counts_only_for_its_own_operation(world: Mesh) -> None:
    """(mesh.proofs: the runtime rebuilds the signed operation and compares)"""
    admin, desk, doctor = world.admin(), world.staff("receptionist"), world.staff("physician")
    patient_id = new_patient(desk)
    book(desk, doctor, patient_id)
    # the physician may read this chart: through the gateway, with a signature for it
    summary = doctor.client.get(f"/api/v1/patients/{patient_id}/summary")
    assert summary["patient"]["patient_id"] == patient_id
    tokens_before = len(admin.client.get("/api/v1/tokens")["tokens"])
    admin_proof, response = captured(world, admin, "GET", "/api/v1/me")
    assert response is not None and response.status_code == 200
    doctor_proof, response = captured(world, doctor, "GET", "/api/v1/me")
    assert response is not None and response.status_code == 200

    async def main() -> list[Reply]:
        async with Stolen(world.settings, "gateway") as gateway:
            return [
                await gateway.call(
                    kv.SEAL, kv.SealRequest(), principal=principal_of(admin), proof=admin_proof
                ),
                await gateway.call(
                    auth.ISSUE_TOKEN,
                    auth.IssueTokenRequest(role=Role.administrator),
                    principal=principal_of(admin),
                    proof=admin_proof,
                ),
                await gateway.call(
                    records.PATIENT_SUMMARY,
                    records.PatientSummaryRequest(patient_id=patient_id),
                    principal=principal_of(doctor),
                    proof=doctor_proof,
                ),
            ]

    with unsealed_afterwards(world):
        seal, token, chart = attack(main())
    for reply, name in (
        (seal, "keyvault.seal"),
        (token, "auth.issue_token"),
        (chart, "records.patient_summary"),
    ):
        refused(reply, ErrorCode.unauthenticated, "made for GET /api/v1/me", name)
    assert states(world) == ["unsealed", "unsealed"]
    assert len(admin.client.get("/api/v1/tokens")["tokens"]) == tokens_before
    refusals = audit_entries(admin, type="bus.signature_refused")
    for name in ("keyvault.seal", "auth.issue_token", "records.patient_summary"):
        assert any(name in (e["event"]["detail"] or "") for e in refusals), name


def test_seal_with_a_made_up_administrator_and_no_signature_is_refused(world: Mesh) -> None:
    """(routed methods are served only on the user's own signature)"""
    invented = Principal(account_id=str(uuid.uuid4()), role=Role.administrator, username="root")
    instances = [r["instance"] for r in replicas(world)]

    async def main() -> list[Reply]:
        async with Stolen(world.settings, "gateway") as gateway:
            replies = [await gateway.call(kv.SEAL, kv.SealRequest(), principal=invented)]
            for instance in instances:
                replies.append(
                    await gateway.call(
                        kv.SEAL, kv.SealRequest(), principal=invented, instance=instance
                    )
                )
            return replies

    with unsealed_afterwards(world):
        for reply in attack(main()):
            refused(reply, ErrorCode.unauthenticated, "signature")
        assert states(world) == ["unsealed", "unsealed"]


def test_an_administrators_seal_signature_seals_each_replica_once(world: Mesh) -> None:
    """(the keyvault's ledger: one use per replica of a seal signature)"""
    admin = world.admin()
    with unsealed_afterwards(world):
        proof, response = captured(world, admin, "POST", "/api/v1/vault/seal", b"{}")
        assert response is not None
        assert response.status_code == 200, response.text
        assert [r["state"] for r in response.json()["replicas"]] == ["sealed", "sealed"]
    # unsealed again (above), well within the signature's window
    assert states(world) == ["unsealed", "unsealed"]
    target = replicas(world)[0]["instance"]

    async def main() -> list[Reply]:
        async with Stolen(world.settings, "gateway") as gateway:
            # to one replica's own queue, then to the queue every replica serves
            return [
                await gateway.call(
                    kv.SEAL,
                    kv.SealRequest(),
                    principal=principal_of(admin),
                    proof=proof,
                    signed_body=b"{}",
                    instance=instance,
                )
                for instance in (target, None)
            ]

    with unsealed_afterwards(world):
        for reply in attack(main()):
            refused(reply, ErrorCode.unauthenticated, "already used")
        assert states(world) == ["unsealed", "unsealed"]


def test_a_decrypt_signature_is_served_once_across_keyvault_replicas(world: Mesh) -> None:
    """(the keyvault's ledger is shared by every replica, in Redis)"""
    desk = world.staff("receptionist")
    patient_id = new_patient(desk)
    # What a taken-over records sees: a receptionist's signed read of this patient.
    proof, _ = captured(world, desk, "GET", f"/api/v1/patients/{patient_id}", send=False)
    first, second = (r["instance"] for r in replicas(world))
    row = kv.FieldRow(
        table="patients",
        row_id=patient_id,
        fields={"demographics": json.dumps({"note": "secret"})},
        binding={"patient": patient_id},
    )

    async def main() -> tuple[Reply, Reply]:
        async with Stolen(world.settings, "records") as stolen:
            encrypted = await stolen.call(kv.ENCRYPT, kv.EncryptRequest(rows=[row]))
            (ciphertext,) = kv.EncryptReply.model_validate_json(encrypted.body).rows
            sealed_row = row.model_copy(update={"fields": ciphertext})
            request = kv.DecryptRequest(rows=[sealed_row])
            once = await stolen.call(
                kv.DECRYPT, request, principal=principal_of(desk), proof=proof, instance=first
            )
            again = await stolen.call(
                kv.DECRYPT, request, principal=principal_of(desk), proof=proof, instance=second
            )
            return once, again

    once, again = attack(main())
    assert once.status == "ok", once.body
    plain = kv.DecryptReply.model_validate_json(once.body).rows
    assert plain == [{"demographics": json.dumps({"note": "secret"})}]
    refused(again, ErrorCode.unauthenticated, "already used")
