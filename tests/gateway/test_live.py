"""Live chat delivery over the signed WebSocket, across gateway replicas and restarts."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from mesh.httpsig import sign_request
from tests.gateway.support import Mesh, Staff, mesh
from tests.processes import Process


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with mesh("gwlive", tmp_path_factory.mktemp("livelogs")) as m:
        yield m


def ws_url(base: str, last_id: int | None = None) -> str:
    url = base.replace("http://", "ws://") + "/api/v1/ws"
    return url if last_id is None else f"{url}?last_id={last_id}"


def handshake(staff: Staff, url: str, **kwargs: Any) -> dict[str, str]:
    return sign_request(staff.client.private_key, staff.account_id, "GET", url, b"", **kwargs)


async def open_ws(staff: Staff, base: str, last_id: int | None = None) -> ClientConnection:
    url = ws_url(base, last_id)
    ws = await connect(url, additional_headers=handshake(staff, url))
    return ws


async def receive(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), timeout)))


async def until_ready(ws: ClientConnection) -> list[dict[str, Any]]:
    """Everything sent before the `ready` frame (the catch-up)."""
    frames: list[dict[str, Any]] = []
    while True:
        frame = await receive(ws)
        if frame["type"] == "ready":
            return frames
        frames.append(frame)


async def nothing_arrives(ws: ClientConnection, seconds: float = 1.0) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return True
    return False


async def member(world: Mesh, role: str) -> Staff:
    """A registered staff member (setup runs operator actions on its own event loop)."""
    return await asyncio.to_thread(world.staff, role)


def send(staff: Staff, conversation_id: str, text: str) -> dict[str, Any]:
    result: dict[str, Any] = staff.client.post(
        f"/api/v1/chat/conversations/{conversation_id}/messages", {"text": text}
    )
    return result


async def test_two_clients_chat_live_and_a_third_sees_nothing(world: Mesh) -> None:
    ann, bob, eve = (
        await member(world, "physician"),
        await member(world, "receptionist"),
        await member(world, "physician"),
    )
    cid = ann.client.post("/api/v1/chat/direct", {"other_account_id": bob.account_id})[
        "conversation_id"
    ]
    bob_ws, eve_ws = await open_ws(bob, world.url), await open_ws(eve, world.url)
    try:
        await until_ready(bob_ws)
        await until_ready(eve_ws)
        sent = send(ann, cid, "Mr Hale is in room 2")
        note = await receive(bob_ws)
        assert note["type"] == "message_sent" and note["message_id"] == sent["message_id"]
        assert "text" not in note  # ids only: the text needs the reader's own signature
        page = bob.client.get("/api/v1/chat/messages", after_id=note["message_id"] - 1)
        assert page["messages"][0]["text"] == "Mr Hale is in room 2"
        assert await nothing_arrives(eve_ws)
    finally:
        await bob_ws.close()
        await eve_ws.close()


async def test_stale_and_replayed_handshakes_are_refused(world: Mesh) -> None:
    bob = await member(world, "receptionist")
    url = ws_url(world.url)
    with pytest.raises(InvalidStatus) as err:
        await connect(url, additional_headers=handshake(bob, url, created=int(time.time()) - 120))
    assert err.value.response.status_code == 401
    assert b"stale" in err.value.response.body
    headers = handshake(bob, url)
    ws = await connect(url, additional_headers=headers)
    await until_ready(ws)
    await ws.close()
    with pytest.raises(InvalidStatus) as err:
        await connect(url, additional_headers=headers)
    assert b"replayed" in err.value.response.body
    with pytest.raises(InvalidStatus) as err:
        await connect(url)
    assert err.value.response.status_code == 401


async def test_a_message_through_one_replica_reaches_a_client_on_another(world: Mesh) -> None:
    second = await asyncio.to_thread(world.extra_gateway)
    ann, bob = await member(world, "physician"), await member(world, "receptionist")
    cid = ann.client.post("/api/v1/chat/direct", {"other_account_id": bob.account_id})[
        "conversation_id"
    ]
    bob_ws = await open_ws(bob, second.url)  # bob on the second replica, ann on the first
    try:
        await until_ready(bob_ws)
        sent = send(ann, cid, "across replicas")
        note = await receive(bob_ws)
        assert note["message_id"] == sent["message_id"]
    finally:
        await bob_ws.close()


async def test_reconnect_after_a_gateway_restart_gets_the_missed_messages_once(
    world: Mesh, tmp_path: Path
) -> None:
    ann, bob = await member(world, "physician"), await member(world, "receptionist")
    cid = ann.client.post("/api/v1/chat/direct", {"other_account_id": bob.account_id})[
        "conversation_id"
    ]
    doomed = await asyncio.to_thread(Process, "gateway", world.settings, tmp_path)
    await asyncio.to_thread(doomed.wait_ready)
    bob_ws = await open_ws(bob, doomed.url)
    await until_ready(bob_ws)
    first = send(ann, cid, "one")
    assert (await receive(bob_ws))["message_id"] == first["message_id"]
    last_seen = first["message_id"]
    doomed.stop()  # the gateway bob is connected to goes away mid-conversation
    missed = [send(ann, cid, text)["message_id"] for text in ("two", "three", "four")]
    restarted = await asyncio.to_thread(Process, "gateway", world.settings, tmp_path)
    await asyncio.to_thread(restarted.wait_ready)
    try:
        bob_ws = await open_ws(bob, restarted.url, last_id=last_seen)
        frames = await until_ready(bob_ws)
        mine = [f for f in frames if f["conversation_id"] == cid]
        assert [f["message_id"] for f in mine] == missed
        assert [f["text"] for f in mine] == ["two", "three", "four"]
        later = send(ann, cid, "five")
        note = await receive(bob_ws)
        assert note["message_id"] == later["message_id"]
        assert await nothing_arrives(bob_ws, 0.5)  # nothing twice
        await bob_ws.close()
    finally:
        restarted.stop()


async def test_appointment_events_reach_the_physician_only(world: Mesh) -> None:
    from datetime import UTC, datetime, timedelta

    from contracts import scheduling as sched
    from tests.mesh.fixtures import client_runtime

    doctor, other = await member(world, "physician"), await member(world, "physician")
    doctor_ws, other_ws = await open_ws(doctor, world.url), await open_ws(other, world.url)
    try:
        await until_ready(doctor_ws)
        await until_ready(other_ws)
        start = datetime.now(UTC) + timedelta(days=1)
        booked = sched.AppointmentBooked(
            appointment_id="appt-1",
            physician_id=doctor.account_id,
            patient_id="pat-1",
            start=start,
            end=start + timedelta(minutes=30),
            by="desk",
        )
        async with client_runtime(world.settings, "live-sched") as scheduling:
            await scheduling.events.publish(sched.APPOINTMENT_BOOKED, booked, message_id="e1")
        frame = await receive(doctor_ws)
        assert frame["type"] == sched.APPOINTMENT_BOOKED.routing_key
        assert frame["appointment_id"] == "appt-1"
        assert await nothing_arrives(other_ws)
    finally:
        await doctor_ws.close()
        await other_ws.close()
