"""Access bound to attendance, with the mesh as real processes (attendance required).

Check-ins come from the time clock on the bus (its own broker identity), from the signed
webhook and from an administrator by hand; the gateway refuses an off-duty physician or
receptionist, and the keyvault refuses them again when a forged gateway message skips
the gateway's check. Attacks use stolen broker credentials, as in tests/gateway.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.exceptions import ChannelClosed
from aiormq.exceptions import ChannelAccessRefused
from typer.testing import CliRunner

from cli.main import app
from cli.sdk import ApiError, MedihavenClient
from contracts import attendance as att
from contracts import records
from contracts.base import EVENTS_EXCHANGE, GATEWAY, OPERATOR, Principal, Role
from contracts.errors import ErrorCode
from mesh.attendance import enforce
from mesh.errors import Unavailable
from tests.conftest import isolated_settings
from tests.gateway.support import Mesh, Staff
from tests.gateway.test_zero_trust import (
    Stolen,
    attack,
    audit_entries,
    captured,
    new_patient,
    principal_of,
)
from tests.keyvault.support import initialise, unseal
from tests.mesh.fixtures import client_runtime
from tests.processes import process_env, running
from tests.support.polling import until_sync

FIRST = ["services.keyvault", "services.chat", "services.audit"]
THEN = ["services.records", "services.scheduling"]


@dataclass
class World:
    mesh: Mesh
    webhook_key: str

    def on_duty(self, staff: Staff) -> bool:
        return bool(staff.client.get("/api/v1/me/attendance")["on_duty"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Every service and a gateway with attendance required; only auth holds the
    webhook's key (made here, for this run)."""
    logs = tmp_path_factory.mktemp("attlogs")
    key = secrets.token_urlsafe(32)
    with isolated_settings("att") as base:
        settings = base.model_copy(update={"attendance_required": True})
        with (
            running(FIRST, settings, logs) as first,
            running(["services.auth"], settings, logs, MEDIHAVEN_ATTENDANCE_WEBHOOK_SECRET=key),
        ):

            async def setup() -> list[str]:
                async with client_runtime(settings, "att-setup", OPERATOR) as client:
                    init = await initialise(client.rpc)
                    await unseal(client.rpc, init.shares)
                    return init.shares

            shares = asyncio.run(setup())
            env = {"MEDIHAVEN_RATE_ANONYMOUS_CAPACITY": "10000"}
            with running(THEN, settings, logs), running(["gateway"], settings, logs, **env) as gw:
                m = Mesh(settings, first, gw["gateway"], shares, logs)
                try:
                    yield World(m, key)
                finally:
                    for proc in m.extra_gateways:
                        proc.stop()


def check(admin: Staff, staff: Staff, kind: str, reason: str = "the time clock is broken") -> Any:
    return admin.client.post(f"/api/v1/staff/{staff.account_id}/{kind}", {"reason": reason})


def refused_off_duty(call: Any, *words: str) -> ApiError:
    with pytest.raises(ApiError) as refused:
        call()
    error = refused.value
    assert (error.status, error.code) == (403, "off_duty"), error
    assert error.message.startswith("You are not on duty ("), error.message
    for word in words:
        assert word in error.message, error.message
    return error


def audited(admin: Staff, type: str, predicate: Any = lambda e: True) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        found[:] = [e for e in audit_entries(admin, type=type) if predicate(e)]
        return bool(found)

    assert until_sync(seen, 20), f"no {type} audit entry"
    return found


# ---------------------------------------------------------------------------- by hand


def test_off_duty_is_refused_and_a_check_in_opens_at_once_on_every_replica(world: World) -> None:
    m = world.mesh
    admin, desk = m.admin(), m.staff("receptionist")
    other = m.extra_gateway()
    desk_there = MedihavenClient(other.url, desk.account_id, desk.client.private_key)
    status = desk.client.get("/api/v1/me/attendance")
    assert status["on_duty"] is False and status["required"] is True
    refused_off_duty(lambda: new_patient(desk), "no check-in for you", "ask an administrator")
    assert "conversations" in desk.client.get("/api/v1/chat/conversations")  # chat stays open

    assert check(admin, desk, "check-in")["on_duty"] is True
    patient_id = new_patient(desk)  # at once, here …
    assert desk_there.get(f"/api/v1/patients/{patient_id}")["patient_id"] == patient_id  # … there

    out = check(admin, desk, "check-out", "left early, badge kept")
    assert out["on_duty"] is False and out["checked_out_at"] is not None
    refused_off_duty(lambda: desk_there.get(f"/api/v1/patients/{patient_id}"), "you checked out")
    refused_off_duty(lambda: desk.client.get(f"/api/v1/patients/{patient_id}"), "you checked out")

    listed = {s["account_id"]: s for s in admin.client.get("/api/v1/attendance")["staff"]}
    assert listed[desk.account_id]["on_duty"] is False
    audited(
        admin, "attendance.check_in", lambda e: "the time clock is broken" in e["event"]["detail"]
    )
    audited(admin, "attendance.check_out", lambda e: "badge kept" in e["event"]["detail"])
    refusals = audited(
        admin,
        "attendance.off_duty_refused",
        lambda e: e["event"]["agent"]["account_id"] == desk.account_id,
    )
    assert {e["publisher"] for e in refusals} >= {"gateway"}


def test_only_physicians_and_receptionists_are_checked_in_and_with_a_reason(world: World) -> None:
    admin = world.mesh.admin()
    with pytest.raises(ApiError) as refused:
        check(admin, admin, "check-in")
    assert refused.value.status == 422 and "not bound to attendance" in refused.value.message
    desk = world.mesh.staff("receptionist")
    with pytest.raises(ApiError) as no_reason:
        check(admin, desk, "check-in", reason="")
    assert no_reason.value.status == 422
    with pytest.raises(ApiError) as not_admin:
        check(desk, desk, "check-in")
    assert not_admin.value.status == 403


# ---------------------------------------------------------------------------- keyvault


def test_the_keyvault_refuses_an_off_duty_signer_sent_by_a_forged_gateway(world: World) -> None:
    """(services/keyvault/attendance.py: the gateway's check skipped, the keyvault's not)"""
    m = world.mesh
    admin, desk = m.admin(), m.staff("receptionist")
    check(admin, desk, "check-in")
    patient_id = new_patient(desk)
    request = records.GetPatientRequest(patient_id=patient_id)

    def forged() -> Any:
        proof, _ = captured(m, desk, "GET", f"/api/v1/patients/{patient_id}", send=False)

        async def main() -> Any:
            async with Stolen(m.settings, "gateway") as gateway:
                return await gateway.call(
                    records.GET_PATIENT, request, principal=principal_of(desk), proof=proof
                )

        return attack(main())

    served = forged()
    assert served.status == "ok", served.body  # on duty: the forged path works …
    check(admin, desk, "check-out")
    reply = forged()  # … off duty the gateway's check is skipped, the keyvault's is not
    error = reply.error
    assert error.code is ErrorCode.off_duty, error
    assert error.message.startswith("You are not on duty (you checked out"), error
    audited(
        admin,
        "attendance.off_duty_refused",
        lambda e: (
            e["publisher"] == "keyvault" and e["event"]["agent"]["account_id"] == desk.account_id
        ),
    )


# ---------------------------------------------------------------------------- break-glass


def test_an_off_duty_physician_still_gets_in_by_break_glass_audited(world: World) -> None:
    m = world.mesh
    admin, desk, doctor = m.admin(), m.staff("receptionist"), m.staff("physician")
    check(admin, desk, "check-in")
    patient_id, other_id = new_patient(desk), new_patient(desk)
    summary = f"/api/v1/patients/{patient_id}/summary"
    refused_off_duty(lambda: doctor.client.get(summary), "break-glass")
    day = datetime.now(UTC).date().isoformat()
    own = doctor.client.get(f"/api/v1/physicians/{doctor.account_id}/calendar", day=day)
    assert "appointments" in own  # the own calendar stays open off duty

    doctor.client.post(
        f"/api/v1/patients/{patient_id}/break-glass", {"reason": "collapsed in the car park"}
    )
    assert doctor.client.get(summary)["patient"]["patient_id"] == patient_id
    refused_off_duty(lambda: doctor.client.get(f"/api/v1/patients/{other_id}/summary"))

    def by_doctor(entry: dict[str, Any]) -> bool:
        return bool(entry["event"]["agent"]["account_id"] == doctor.account_id)

    door = audited(admin, "attendance.off_duty_break_glass", by_doctor)
    assert door[0]["event"]["purpose_of_use"] == "ETREAT"
    served = audited(admin, "attendance.off_duty_emergency", by_doctor)
    assert {e["event"]["patient_id"] for e in served} == {patient_id}
    assert {e["publisher"] for e in served} == {"gateway", "keyvault"}
    assert all(e["event"]["purpose_of_use"] == "ETREAT" for e in served)


# ---------------------------------------------------------------------------- the time clock


async def _publish(world: World, identity: str, event: Any, payload: Any) -> None:
    """An attendance event with `identity`'s broker credentials (publisher confirms)."""
    stolen = Stolen(world.mesh.settings, identity)
    connection = await aio_pika.connect(stolen.url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
        await exchange.publish(
            aio_pika.Message(
                payload.model_dump_json().encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=str(uuid.uuid4()),
                user_id=stolen.user,
            ),
            event.routing_key,
        )
    finally:
        await connection.close()


def test_time_clock_events_count_only_from_the_time_clocks_identity(world: World) -> None:
    m = world.mesh
    admin, desk = m.admin(), m.staff("receptionist")
    now = datetime.now(UTC)
    payload = att.CheckedIn(staff_id=desk.account_id, at=now, place="Main entrance")
    # A taken-over records service: the broker's topic permissions refuse it outright.
    with pytest.raises((ChannelAccessRefused, ChannelClosed)):
        attack(_publish(world, "records", att.CHECKED_IN, payload))
    # An identity the broker lets publish anything here: auth's runtime refuses it.
    attack(_publish(world, "outsider", att.CHECKED_IN, payload))
    audited(  # by auth, which keeps the state (the gateways, which push it, refuse it too)
        admin,
        "bus.event_refused",
        lambda e: (
            "attendance.checked_in from outsider" in (e["event"]["detail"] or "")
            and e["publisher"] == "auth"
        ),
    )
    assert world.on_duty(desk) is False
    # The time clock itself: on duty, as soon as auth has it.
    attack(_publish(world, "timeclock", att.CHECKED_IN, payload))
    assert until_sync(lambda: world.on_duty(desk), 20)
    status = desk.client.get("/api/v1/me/attendance")
    assert status["source"] == "timeclock" and status["place"] == "Main entrance"
    # An older check-out arriving late changes nothing; a newer one closes the shift.
    late = att.CheckedOut(staff_id=desk.account_id, at=now - timedelta(hours=1))
    attack(_publish(world, "timeclock", att.CHECKED_OUT, late))
    audited(
        admin,
        "attendance.check_out",
        lambda e: (
            "nothing changed" in e["event"]["detail"] and e["event"]["entity_id"] == desk.account_id
        ),
    )
    assert world.on_duty(desk) is True
    later = att.CheckedOut(staff_id=desk.account_id, at=datetime.now(UTC))
    attack(_publish(world, "timeclock", att.CHECKED_OUT, later))
    assert until_sync(lambda: not world.on_duty(desk), 20)


def test_a_shift_without_a_check_out_ends_after_the_maximum(world: World) -> None:
    m = world.mesh
    admin, early, late = m.admin(), m.staff("receptionist"), m.staff("receptionist")
    now = datetime.now(UTC)
    for member, hours in ((early, 12.5), (late, 11.5)):
        payload = att.CheckedIn(staff_id=member.account_id, at=now - timedelta(hours=hours))
        attack(_publish(world, "timeclock", att.CHECKED_IN, payload))

    def listed() -> dict[str, Any]:
        return {s["account_id"]: s for s in admin.client.get("/api/v1/attendance")["staff"]}

    assert until_sync(lambda: all(listed()[s.account_id]["since"] for s in (early, late)), 20)
    shifts = listed()
    assert shifts[late.account_id]["on_duty"] is True
    assert shifts[early.account_id]["on_duty"] is False
    assert shifts[early.account_id]["source"] == "shift_limit"
    refused_off_duty(lambda: new_patient(early), "ended by itself after 12 hours")
    assert new_patient(late)


# ---------------------------------------------------------------------------- webhook


def _webhook(
    world: World, event: dict[str, Any], *, key: str | None = None, stamp: int | None = None
) -> tuple[httpx.Response, dict[str, str], bytes]:
    body = json.dumps(event).encode()
    timestamp = str(int(time.time()) if stamp is None else stamp)
    headers = {
        "Content-Type": "application/json",
        att.WEBHOOK_TIMESTAMP_HEADER: timestamp,
        att.WEBHOOK_SIGNATURE_HEADER: att.webhook_signature(
            (key or world.webhook_key).encode(), timestamp, body
        ),
    }
    url = f"{world.mesh.url}/api/v1{att.WEBHOOK_PATH}"
    return httpx.post(url, content=body, headers=headers, timeout=10), headers, body


def test_the_signed_webhook_checks_in_once_and_refuses_forgeries(world: World) -> None:
    m = world.mesh
    admin, desk = m.admin(), m.staff("receptionist")
    event = {
        "event_id": f"clock-{uuid.uuid4().hex}",
        "type": "attendance.checked_in",
        "staff_id": desk.account_id,
        "at": datetime.now(UTC).isoformat(),
        "place": "Ward 3 terminal",
    }
    forged, _, _ = _webhook(world, event, key=secrets.token_urlsafe(32))
    assert forged.status_code == 401, forged.text
    assert forged.json()["error"]["details"]["reason"] == "bad_signature"
    stale, _, _ = _webhook(world, event, stamp=int(time.time()) - 3600)
    assert stale.status_code == 401 and stale.json()["error"]["details"]["reason"] == "stale"
    assert world.on_duty(desk) is False

    accepted, headers, body = _webhook(world, event)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["accepted"] is True and accepted.json()["status"]["on_duty"] is True
    assert world.on_duty(desk) is True
    replayed = httpx.post(accepted.request.url, content=body, headers=headers, timeout=10)
    assert replayed.status_code == 409, replayed.text
    assert replayed.json()["error"]["details"]["reason"] == "replayed"

    tampered = dict(event, staff_id=admin.account_id)  # same signature, other body
    response = httpx.post(
        accepted.request.url, content=json.dumps(tampered).encode(), headers=headers, timeout=10
    )
    assert response.status_code == 401

    out = dict(
        event,
        event_id=f"clock-{uuid.uuid4().hex}",
        type="attendance.checked_out",
        at=datetime.now(UTC).isoformat(),
    )
    closed, _, _ = _webhook(world, out)
    assert closed.status_code == 200 and closed.json()["status"]["on_duty"] is False
    assert world.on_duty(desk) is False
    refusals = audited(admin, "attendance.webhook_refused")
    reasons = {e["event"]["detail"].split(":")[0] for e in refusals}
    assert {"bad_signature", "stale"} <= reasons


# ---------------------------------------------------------------------------- fail closed


async def test_when_the_attendance_state_cannot_be_read_patient_data_is_refused() -> None:
    """No auth on the bus (as when it is down): the check refuses, it does not pass."""
    principal = Principal(account_id=str(uuid.uuid4()), role=Role.receptionist)
    request = records.GetPatientRequest(patient_id=str(uuid.uuid4()))
    with isolated_settings("attdown") as base:
        settings = base.model_copy(update={"attendance_required": True})
        async with client_runtime(settings, "att-gateway", GATEWAY) as gateway:
            with pytest.raises(Unavailable, match="attendance state cannot be read"):
                await enforce(gateway, principal, records.GET_PATIENT, request)
            # not required: nothing is asked (what the rest of the test suite runs with)
            off = settings.model_copy(update={"attendance_required": False})
            gateway.settings = off
            assert await enforce(gateway, principal, records.GET_PATIENT, request) is False


# ---------------------------------------------------------------------------- the CLI


def test_an_administrator_checks_staff_in_and_out_from_the_command_line(
    world: World, tmp_path: Path
) -> None:
    m = world.mesh
    desk = m.staff("receptionist")
    env = process_env(
        m.settings, MEDIHAVEN_HOME=str(tmp_path / "home"), MEDIHAVEN_PASSPHRASE="long enough pass"
    )
    token = m.admin().client.post("/api/v1/tokens", {"role": "administrator"})["token"]
    runner = CliRunner()
    username = f"admin-cli-{uuid.uuid4().hex[:6]}"
    registered = runner.invoke(
        app,
        [
            "register",
            "--token",
            token,
            "--username",
            username,
            "--display-name",
            "Ada Cli",
            "--url",
            m.url,
        ],
        env=env,
    )
    assert registered.exit_code == 0, registered.output
    no_reason = runner.invoke(app, ["attendance", "check-in", desk.account_id], env=env)
    assert no_reason.exit_code != 0 and "--reason" in no_reason.output
    done = runner.invoke(
        app,
        [
            "attendance",
            "check-in",
            desk.account_id,
            "--reason",
            "badge reader down",
            "--place",
            "Front desk",
        ],
        env=env,
    )
    assert done.exit_code == 0 and "on duty since" in done.output, done.output
    assert world.on_duty(desk) is True
    listed = runner.invoke(app, ["attendance", "list"], env=env)
    assert f"{desk.account_id}  on duty since" in listed.output, listed.output
    done = runner.invoke(
        app, ["attendance", "check-out", desk.account_id, "--reason", "went home ill"], env=env
    )
    assert done.exit_code == 0 and "off duty (checked out at" in done.output, done.output
    assert world.on_duty(desk) is False
    audited(m.admin(), "attendance.check_out", lambda e: "went home ill" in e["event"]["detail"])


# ---------------------------------------------------------------------------- deploy/


def test_the_example_time_clock_publisher_works_both_ways(world: World) -> None:
    m = world.mesh
    desk = m.staff("receptionist")
    script = Path(__file__).resolve().parents[2] / "deploy" / "timeclock" / "publish.py"
    env = {
        **os.environ,
        "TIMECLOCK_AMQP_URL": Stolen(m.settings, "timeclock").url,
        "TIMECLOCK_WEBHOOK_KEY": world.webhook_key,
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(script), *args, "--staff-id", desk.account_id]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    published = run("amqp", "--check", "in", "--place", "Gate 2")
    assert published.returncode == 0, published.stderr
    assert until_sync(lambda: world.on_duty(desk), 20)
    url = f"{m.url}/api/v1{att.WEBHOOK_PATH}"
    posted = run("webhook", "--url", url, "--check", "out")
    assert posted.returncode == 0 and posted.stdout.startswith("200 "), posted.stdout
    assert world.on_duty(desk) is False
    forged = subprocess.run(
        [
            sys.executable,
            str(script),
            "webhook",
            "--url",
            url,
            "--check",
            "in",
            "--staff-id",
            desk.account_id,
        ],
        env={**env, "TIMECLOCK_WEBHOOK_KEY": secrets.token_urlsafe(32)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert forged.returncode == 1 and forged.stdout.startswith("401 "), forged.stdout


# ---------------------------------------------------------------------------- live


async def test_a_check_in_is_pushed_to_the_staff_member_and_administrators(world: World) -> None:
    from tests.gateway.test_live import nothing_arrives, open_ws, receive, until_ready

    m = world.mesh
    admin = await asyncio.to_thread(m.admin)
    desk = await asyncio.to_thread(m.staff, "receptionist")
    other = await asyncio.to_thread(m.staff, "receptionist")
    sockets = {
        name: await open_ws(who, m.url)
        for name, who in (("desk", desk), ("other", other), ("admin", admin))
    }
    try:
        for ws in sockets.values():
            await until_ready(ws)
        await asyncio.to_thread(check, admin, desk, "check-in", "the clock lost power")
        for name in ("desk", "admin"):
            frame = await receive(sockets[name], timeout=10)
            assert frame["type"] == att.CHECKED_IN.routing_key, frame
            assert frame["staff_id"] == desk.account_id, frame
        assert await nothing_arrives(sockets["other"])  # a colleague hears nothing
    finally:
        for ws in sockets.values():
            await ws.close()
