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


async def test_calendar_events_reach_the_physician_and_the_front_desk_only(world: Mesh) -> None:
    """Every calendar event (booked ... checked in, no-show, working time changed) goes to
    the appointment's physician and to every connected receptionist (whose calendars then
    update live); other physicians and administrators hear nothing."""
    from datetime import UTC, datetime, timedelta

    from contracts import scheduling as sched
    from tests.mesh.fixtures import client_runtime

    doctor, other = await member(world, "physician"), await member(world, "physician")
    desk, admin = await member(world, "receptionist"), await asyncio.to_thread(world.admin)
    sockets = {
        name: await open_ws(who, world.url)
        for name, who in (("doctor", doctor), ("other", other), ("desk", desk), ("admin", admin))
    }
    try:
        for ws in sockets.values():
            await until_ready(ws)
        start = datetime.now(UTC) + timedelta(days=1)
        booked = sched.AppointmentBooked(
            appointment_id="appt-1",
            physician_id=doctor.account_id,
            patient_id="pat-1",
            start=start,
            end=start + timedelta(minutes=30),
            by="desk",
        )
        arrived = sched.AppointmentCheckedIn(**booked.model_dump())
        hours = sched.AvailabilityChanged(physician_id=doctor.account_id, by="desk")
        # The same event from someone who is not scheduling is refused by the gateway
        # (publishers are checked against the contract), and never pushed.
        forged = booked.model_copy(update={"appointment_id": "appt-forged"})
        async with client_runtime(world.settings, "live-forger") as forger:
            await forger.events.publish(sched.APPOINTMENT_BOOKED, forged, message_id="e0")
        # Published as scheduling's broker identity (the one allowed to publish it).
        async with client_runtime(world.settings, "live-sched", sched.SERVICE) as scheduling:
            await scheduling.events.publish(sched.APPOINTMENT_BOOKED, booked, message_id="e1")
            await scheduling.events.publish(sched.APPOINTMENT_CHECKED_IN, arrived, message_id="e2")
            await scheduling.events.publish(sched.AVAILABILITY_CHANGED, hours, message_id="e3")
        for name in ("doctor", "desk"):
            frames = [await receive(sockets[name]) for _ in range(3)]
            assert sorted(f["type"] for f in frames) == sorted(
                e.routing_key
                for e in (
                    sched.APPOINTMENT_BOOKED,
                    sched.APPOINTMENT_CHECKED_IN,
                    sched.AVAILABILITY_CHANGED,
                )
            ), name
            assert {f.get("appointment_id") for f in frames} == {"appt-1", None}, name
            assert all(f["physician_id"] == doctor.account_id for f in frames)
        for ws in sockets.values():  # not the forged one, and nothing to the others
            assert await nothing_arrives(ws)
    finally:
        for ws in sockets.values():
            await ws.close()


async def test_a_long_absence_catches_up_one_page_then_names_where_to_go_on(
    world: Mesh,
) -> None:
    """More than a page missed: the handshake's one read (chat.catch_up) brings the first
    page, then a `catch_up_truncated` notice names the `after_id` from which the client
    reads the rest with signed requests."""
    from concurrent.futures import ThreadPoolExecutor

    from cli.sdk import MedihavenClient
    from contracts.chat import CATCH_UP_PAGE

    ann, bob = await member(world, "physician"), await member(world, "receptionist")
    cid = ann.client.post("/api/v1/chat/direct", {"other_account_id": bob.account_id})[
        "conversation_id"
    ]
    last_seen = send(ann, cid, "before the absence")["message_id"]
    # ann writes a lot while bob is away (through a gateway with a roomy bucket for her)
    roomy = await asyncio.to_thread(world.extra_gateway, MEDIHAVEN_RATE_GENERAL_CAPACITY="5000")
    writer = Staff(MedihavenClient(roomy.url, ann.account_id, ann.client.private_key), ann.account)
    total = CATCH_UP_PAGE + 7

    def write(i: int) -> int:
        return int(send(writer, cid, f"note {i}")["message_id"])

    with ThreadPoolExecutor(8) as pool:
        missed = sorted(await asyncio.to_thread(lambda: list(pool.map(write, range(total)))))
    bob_ws = await open_ws(bob, world.url, last_id=last_seen)
    try:
        frames = await until_ready(bob_ws)
        *messages, notice = frames
        assert [f["type"] for f in messages] == ["message"] * CATCH_UP_PAGE
        assert [f["message_id"] for f in messages] == missed[:CATCH_UP_PAGE]
        assert notice == {"type": "catch_up_truncated", "after_id": missed[CATCH_UP_PAGE - 1]}
        rest = bob.client.get("/api/v1/chat/messages", after_id=notice["after_id"], limit=200)
        assert [m["message_id"] for m in rest["messages"]] == missed[CATCH_UP_PAGE:]
        assert rest["next_cursor"] is None
    finally:
        await bob_ws.close()


def ws_resume(base: str, after_event: int, last_id: int | None = None) -> str:
    query = f"after_event={after_event}" + (f"&last_id={last_id}" if last_id else "")
    return base.replace("http://", "ws://") + f"/api/v1/ws?{query}"


async def open_resume(
    staff: Staff, base: str, after_event: int, last_id: int | None = None
) -> ClientConnection:
    url = ws_resume(base, after_event, last_id)
    return await connect(url, additional_headers=handshake(staff, url))


async def ready_frames(ws: ClientConnection) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The catch-up frames and the `ready` frame itself."""
    frames: list[dict[str, Any]] = []
    while True:
        frame = await receive(ws)
        if frame["type"] == "ready":
            return frames, frame
        frames.append(frame)


def booking(physician_id: str, appointment_id: str) -> Any:
    from datetime import UTC, datetime, timedelta

    from contracts import scheduling as sched

    start = datetime.now(UTC) + timedelta(days=2)
    return sched.AppointmentBooked(
        appointment_id=appointment_id,
        physician_id=physician_id,
        patient_id="pat-9",
        start=start,
        end=start + timedelta(minutes=30),
        by="desk",
    )


async def test_a_resume_from_the_start_brings_only_the_callers_own_events(world: Mesh) -> None:
    """An attacker's account asking to resume from event 0 is sent nothing of anyone
    else's (not the calendar of another physician, not a conversation it is not in), while
    the physician, the front desk and the conversation's members get theirs, in order."""
    from contracts import scheduling as sched
    from tests.mesh.fixtures import client_runtime

    doctor, eve = await member(world, "physician"), await member(world, "physician")
    desk, admin = await member(world, "receptionist"), await asyncio.to_thread(world.admin)
    cid = doctor.client.post("/api/v1/chat/direct", {"other_account_id": desk.account_id})[
        "conversation_id"
    ]
    watcher = await open_ws(desk, world.url)  # to know when each event is in the log
    try:
        await until_ready(watcher)
        async with client_runtime(world.settings, "resume-sched", sched.SERVICE) as scheduling:
            for n in range(3):
                event = booking(doctor.account_id, f"appt-r{n}")
                await scheduling.events.publish(sched.APPOINTMENT_BOOKED, event, message_id=f"r{n}")
                # a redelivered event (the same bus message id) is logged once
                await scheduling.events.publish(sched.APPOINTMENT_BOOKED, event, message_id=f"r{n}")
        sent = send(doctor, cid, "for the desk only")
        seen = [await receive(watcher) for _ in range(4)]
        assert [f.get("appointment_id") for f in seen[:3]] == ["appt-r0", "appt-r1", "appt-r2"]
        assert seen[3]["type"] == "message_sent" and seen[3]["message_id"] == sent["message_id"]
        assert await nothing_arrives(watcher, 0.5)
    finally:
        await watcher.close()
    ids = [f["event_id"] for f in seen]
    assert ids == sorted(ids) and len(set(ids)) == 4

    for who in (eve, admin):  # the attacker: a physician, and an administrator
        ws = await open_resume(who, world.url, 0)
        try:
            frames, ready = await ready_frames(ws)
            assert all(f["type"] == "resume_gap" for f in frames) or not frames
            assert not [f for f in frames if "event_id" in f]
            assert ready["event_id"] >= ids[-1]  # where it would go on: nothing of others'
            assert await nothing_arrives(ws, 0.5)
        finally:
            await ws.close()

    for who, expected in ((doctor, seen), (desk, seen)):
        ws = await open_resume(who, world.url, 0)
        try:
            frames, ready = await ready_frames(ws)
            mine = [f for f in frames if f.get("event_id") in ids]
            assert [f["event_id"] for f in mine] == ids, who.account_id
            assert [f["type"] for f in mine] == [f["type"] for f in expected]
            assert ready["event_id"] >= ids[-1]
        finally:
            await ws.close()


async def test_every_kind_missed_while_the_gateway_was_down_arrives_once_in_order(
    world: Mesh, tmp_path: Path
) -> None:
    """The physician's gateway stops; a booking, a reschedule, a cancellation and a chat
    message are made; a gateway starts again: the reconnect (from the last event it got)
    brings all four, in order, once, then live delivery goes on. (With every gateway down
    the shared durable queue holds the events: the browser tests stop the only one.)"""
    from contracts import scheduling as sched
    from tests.mesh.fixtures import client_runtime

    doctor, desk = await member(world, "physician"), await member(world, "receptionist")
    cid = desk.client.post("/api/v1/chat/direct", {"other_account_id": doctor.account_id})[
        "conversation_id"
    ]
    doomed = await asyncio.to_thread(Process, "gateway", world.settings, tmp_path)
    await asyncio.to_thread(doomed.wait_ready)
    ws = await open_ws(doctor, doomed.url)
    _, ready = await ready_frames(ws)
    last_event = int(ready["event_id"])
    await ws.close()
    doomed.stop()  # the physician's gateway goes away; the desk writes through another
    booked = booking(doctor.account_id, "appt-out")
    moved = sched.AppointmentRescheduled(
        **booked.model_dump(), previous_start=booked.start, previous_end=booked.end
    )
    cancelled = sched.AppointmentCancelled(**booked.model_dump())
    async with client_runtime(world.settings, "outage-sched", sched.SERVICE) as scheduling:
        await scheduling.events.publish(sched.APPOINTMENT_BOOKED, booked, message_id="o1")
        await scheduling.events.publish(sched.APPOINTMENT_RESCHEDULED, moved, message_id="o2")
        await scheduling.events.publish(sched.APPOINTMENT_CANCELLED, cancelled, message_id="o3")
    sent = send(desk, cid, "while you were away")
    restarted = await asyncio.to_thread(Process, "gateway", world.settings, tmp_path)
    await asyncio.to_thread(restarted.wait_ready)
    try:
        ws = await open_resume(doctor, restarted.url, last_event)
        frames, ready = await ready_frames(ws)
        kinds = [f["type"] for f in frames]
        assert kinds == [
            sched.APPOINTMENT_BOOKED.routing_key,
            sched.APPOINTMENT_RESCHEDULED.routing_key,
            sched.APPOINTMENT_CANCELLED.routing_key,
            "message_sent",
        ]
        assert frames[3]["message_id"] == sent["message_id"]
        ids = [f["event_id"] for f in frames]
        assert ids == sorted(ids) and ids[0] > last_event and ready["event_id"] == ids[-1]
        later = send(desk, cid, "and now live")
        frame = await receive(ws)
        assert frame["type"] == "message_sent" and frame["message_id"] == later["message_id"]
        assert frame["event_id"] > ids[-1]
        assert await nothing_arrives(ws, 0.5)  # nothing twice
        await ws.close()
    finally:
        restarted.stop()
