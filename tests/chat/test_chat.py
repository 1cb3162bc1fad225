"""The chat service over the real bus, keyvault and database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from contracts import chat
from contracts.base import Principal, Role
from mesh.errors import Forbidden, InvalidRequest, NotFound, RpcError, Unauthenticated
from mesh.events import ReceivedEvent
from mesh.runtime import ConsumerSpec, Runtime
from services.chat.handlers import router
from tests.support.clinic import Clinic, StaffMember, clinic
from tests.support.raw import gateway_reasons, is_4xx, signed_raw

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "chat" / "migrations"
NOTIFIED: list[chat.MessageSent] = []


def notified(_: Runtime):  # type: ignore[no-untyped-def]
    async def handle(event: ReceivedEvent[chat.MessageSent]) -> None:
        NOTIFIED.append(event.payload)

    return handle


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world() -> AsyncIterator[tuple[Clinic, Runtime]]:
    consumers = [ConsumerSpec("chattest-notify", [chat.MESSAGE_SENT], notified)]
    async with clinic("chat", client_consumers=consumers) as c:
        service = await Runtime.start("chat", c.settings, router=router, migrations=MIGRATIONS)
        try:
            yield c, service
        finally:
            await service.stop()


def key() -> str:
    return str(uuid.uuid4())


async def staff3(c: Clinic, tag: str) -> tuple[StaffMember, StaffMember, StaffMember]:
    return (
        await c.add_staff(f"dr-{tag}", Role.physician),
        await c.add_staff(f"rx-{tag}", Role.receptionist),
        await c.add_staff(f"adm-{tag}", Role.administrator),
    )


async def test_two_staff_chat_and_a_third_sees_nothing(world: tuple[Clinic, Runtime]) -> None:
    c, service = world
    ann, bob, eve = await staff3(c, "a")
    direct = await c.call(
        chat.OPEN_DIRECT,
        chat.OpenDirectRequest(other_account_id=bob.account_id),
        ann,
        idempotency_key=key(),
    )
    again = await c.call(
        chat.OPEN_DIRECT,
        chat.OpenDirectRequest(other_account_id=ann.account_id),
        bob,
        idempotency_key=key(),
    )
    assert again.conversation_id == direct.conversation_id  # one conversation per pair
    texts = ["Mrs Okafor's INR is 4.2, please call", "On it", "Thanks"]
    senders = [ann, bob, ann]
    for text, sender in zip(texts, senders, strict=True):
        await c.call(
            chat.SEND,
            chat.SendRequest(conversation_id=direct.conversation_id, text=text),
            sender,
            idempotency_key=key(),
        )
    page = await c.call(
        chat.HISTORY, chat.HistoryRequest(conversation_id=direct.conversation_id), bob
    )
    assert [m.text for m in page.messages] == texts
    assert [m.sender_id for m in page.messages] == [s.account_id for s in senders]
    ids = [m.message_id for m in page.messages]
    assert ids == sorted(ids)
    # The third staff member can neither read nor post, and sees no such conversation.
    with pytest.raises(Forbidden):
        await c.call(chat.HISTORY, chat.HistoryRequest(conversation_id=direct.conversation_id), eve)
    with pytest.raises(Forbidden):
        await c.call(
            chat.SEND,
            chat.SendRequest(conversation_id=direct.conversation_id, text="hi"),
            eve,
            idempotency_key=key(),
        )
    eve_page = await c.call(chat.HISTORY, chat.HistoryRequest(), eve)
    assert eve_page.messages == []
    eve_list = await c.call(chat.LIST_CONVERSATIONS, chat.ListConversationsRequest(), eve)
    assert eve_list.conversations == []
    # At rest: only ciphertext.
    assert service.db is not None
    stored = await service.db.fetchall("SELECT text_enc FROM messages")
    dump = " ".join(r[0] for r in stored)
    kept = await service.db.fetchall("SELECT response FROM mesh_idempotency")
    dump += " ".join(bytes(r[0] or b"").decode() for r in kept)
    for text in texts:
        assert text not in dump and "Okafor" not in dump
    # Live notifications carry ids, never the text.
    for _ in range(100):
        if len([n for n in NOTIFIED if n.conversation_id == direct.conversation_id]) >= 3:
            break
        await asyncio.sleep(0.05)
    mine = [n for n in NOTIFIED if n.conversation_id == direct.conversation_id]
    assert [n.message_id for n in mine] == ids
    assert all(set(n.member_ids) == {ann.account_id, bob.account_id} for n in mine)


async def test_unread_counts_receipts_and_catch_up(world: tuple[Clinic, Runtime]) -> None:
    c, _ = world
    ann, bob, _eve = await staff3(c, "b")
    conv = await c.call(
        chat.OPEN_DIRECT,
        chat.OpenDirectRequest(other_account_id=bob.account_id),
        ann,
        idempotency_key=key(),
    )
    sent = [
        await c.call(
            chat.SEND,
            chat.SendRequest(conversation_id=conv.conversation_id, text=f"m{i}"),
            ann,
            idempotency_key=key(),
        )
        for i in range(5)
    ]
    listing = await c.call(chat.LIST_CONVERSATIONS, chat.ListConversationsRequest(), bob)
    (summary,) = [
        s for s in listing.conversations if s.conversation.conversation_id == conv.conversation_id
    ]
    assert summary.unread == 5 and summary.last_message_id == sent[-1].message_id
    receipt = await c.call(
        chat.MARK_READ,
        chat.MarkReadRequest(
            conversation_id=conv.conversation_id, up_to_message_id=sent[2].message_id
        ),
        bob,
        idempotency_key=key(),
    )
    assert receipt.read_up_to == sent[2].message_id
    listing = await c.call(chat.LIST_CONVERSATIONS, chat.ListConversationsRequest(), bob)
    (summary,) = [
        s for s in listing.conversations if s.conversation.conversation_id == conv.conversation_id
    ]
    assert summary.unread == 2
    receipts = await c.call(
        chat.RECEIPTS, chat.ReceiptsRequest(conversation_id=conv.conversation_id), ann
    )
    assert {r.account_id: r.read_up_to for r in receipts.receipts}[bob.account_id] == sent[
        2
    ].message_id
    # A client that saw message 2 catches up: 3 and 4, in order, once each, across pages.
    seen: list[int] = []
    cursor = sent[1].message_id
    while True:
        page = await c.call(chat.HISTORY, chat.HistoryRequest(after_id=cursor, limit=2), bob)
        seen += [m.message_id for m in page.messages if m.conversation_id == conv.conversation_id]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [m.message_id for m in sent[2:]]
    # Scrolling back.
    back = await c.call(
        chat.HISTORY,
        chat.HistoryRequest(
            conversation_id=conv.conversation_id, before_id=sent[2].message_id, limit=10
        ),
        bob,
    )
    assert [m.text for m in back.messages] == ["m1", "m0"]


async def test_groups(world: tuple[Clinic, Runtime]) -> None:
    c, service = world
    ann, bob, eve = await staff3(c, "c")
    group = await c.call(
        chat.CREATE_GROUP,
        chat.CreateGroupRequest(
            name="Ward 3 handover", member_ids=[bob.account_id, eve.account_id]
        ),
        ann,
        idempotency_key=key(),
    )
    assert set(group.member_ids) == {ann.account_id, bob.account_id, eve.account_id}
    await c.call(
        chat.SEND,
        chat.SendRequest(conversation_id=group.conversation_id, text="handover at 7"),
        eve,
        idempotency_key=key(),
    )
    listing = await c.call(chat.LIST_CONVERSATIONS, chat.ListConversationsRequest(), bob)
    assert any(s.conversation.name == "Ward 3 handover" for s in listing.conversations)
    assert service.db is not None
    names = await service.db.fetchall("SELECT name_enc FROM conversations WHERE kind = 'group'")
    assert all("Ward" not in (r[0] or "") for r in names)


async def test_bad_input_gets_clear_4xx(world: tuple[Clinic, Runtime]) -> None:
    c, _ = world
    ann, bob, _eve = await staff3(c, "d")
    conv = await c.call(
        chat.OPEN_DIRECT,
        chat.OpenDirectRequest(other_account_id=bob.account_id),
        ann,
        idempotency_key=key(),
    )
    # Too long a text, sent raw with ann's signature of it: not a valid request of the
    # route, so the gateway answers 422 naming the text, and the service refuses it.
    raw = (
        chat.SendRequest.model_construct(conversation_id=conv.conversation_id, text="x" * 5000)
        .model_dump_json()
        .encode()
    )
    assert "text" in (gateway_reasons(chat.SEND, raw) or "")
    proof, body = signed_raw(ann, chat.SEND, raw)
    with pytest.raises(RpcError) as err:
        await c.client.rpc.call_raw(
            chat.SEND.queue,
            chat.SEND.name,
            raw,
            principal=ann.principal,
            proof=proof,
            signed_body=body,
            idempotency_key=key(),
        )
    assert is_4xx(err.value.code), err.value
    with pytest.raises(NotFound):
        await c.call(
            chat.SEND,
            chat.SendRequest(conversation_id=str(uuid.uuid4()), text="x"),
            ann,
            idempotency_key=key(),
        )
    with pytest.raises(NotFound):
        await c.call(
            chat.OPEN_DIRECT,
            chat.OpenDirectRequest(other_account_id="acc-nobody"),
            ann,
            idempotency_key=key(),
        )
    with pytest.raises(InvalidRequest):
        await c.call(
            chat.OPEN_DIRECT,
            chat.OpenDirectRequest(other_account_id=ann.account_id),
            ann,
            idempotency_key=key(),
        )
    with pytest.raises(InvalidRequest):
        await c.call(
            chat.MARK_READ,
            chat.MarkReadRequest(conversation_id=conv.conversation_id, up_to_message_id=10**9),
            ann,
            idempotency_key=key(),
        )
    with pytest.raises(InvalidRequest):
        await c.call(chat.HISTORY, chat.HistoryRequest(after_id=1, before_id=5), ann)
    # Without a principal or a signature (a forged request on the bus): refused.
    with pytest.raises(Unauthenticated):
        await c.client.rpc.call(chat.HISTORY, chat.HistoryRequest())
    # A forged principal without the member's signature cannot read the text.
    await c.call(
        chat.SEND,
        chat.SendRequest(conversation_id=conv.conversation_id, text="secret"),
        ann,
        idempotency_key=key(),
    )
    with pytest.raises(Unauthenticated):
        await c.client.rpc.call(
            chat.HISTORY,
            chat.HistoryRequest(conversation_id=conv.conversation_id),
            principal=Principal(account_id=bob.account_id, role=Role.receptionist),
            proof=ann.proof(),
        )


async def test_a_forged_sender_without_a_proof_sends_nothing(
    world: tuple[Clinic, Runtime],
) -> None:
    """Someone on the bus as the gateway puts a member in the headers of chat.send, with
    no signature of theirs: refused before any handler, and nothing is sent."""
    c, _ = world
    ann, bob, _eve = await staff3(c, "e")
    conv = await c.call(
        chat.OPEN_DIRECT,
        chat.OpenDirectRequest(other_account_id=bob.account_id),
        ann,
        idempotency_key=key(),
    )
    forged = chat.SendRequest(conversation_id=conv.conversation_id, text="wire me the codes")
    for principal in (ann.principal, bob.principal):
        with pytest.raises(Unauthenticated):
            await c.client.rpc.call(chat.SEND, forged, principal=principal, idempotency_key=key())
    # The same message with ann's own signature of it goes through (so only the proof
    # was missing), and it is the only one there.
    await c.call(chat.SEND, forged, ann, idempotency_key=key())
    page = await c.call(
        chat.HISTORY, chat.HistoryRequest(conversation_id=conv.conversation_id), bob
    )
    assert [m.text for m in page.messages] == ["wire me the codes"]


async def test_every_write_at_four_times_the_pool_size_completes(
    world: tuple[Clinic, Runtime],
) -> None:
    """Sends and read marks, 4x the database pool at once: no write waits for a second
    pool connection while it holds one (it used to hang for good at 16 sends)."""
    c, service = world
    ann, bob, _ = await staff3(c, "pool")
    direct = await c.call(
        chat.OPEN_DIRECT,
        chat.OpenDirectRequest(other_account_id=bob.account_id),
        ann,
        idempotency_key=key(),
    )
    many = 4 * service.settings.db_pool_size
    sends = [
        c.call(
            chat.SEND,
            chat.SendRequest(conversation_id=direct.conversation_id, text=f"ping {i}"),
            ann if i % 2 else bob,
            idempotency_key=key(),
        )
        for i in range(many)
    ]
    sent = await asyncio.wait_for(asyncio.gather(*sends), timeout=60)
    last = max(m.message_id for m in sent)
    marks = [
        c.call(
            chat.MARK_READ,
            chat.MarkReadRequest(conversation_id=direct.conversation_id, up_to_message_id=last),
            reader,
            idempotency_key=key(),
        )
        for reader in [ann, bob] * (many // 2)
    ]
    receipts = await asyncio.wait_for(asyncio.gather(*marks), timeout=60)
    assert {r.read_up_to for r in receipts} == {last}
    groups = [
        c.call(
            chat.CREATE_GROUP,
            chat.CreateGroupRequest(name=f"ward {i}", member_ids=[bob.account_id]),
            ann,
            idempotency_key=key(),
        )
        for i in range(many)
    ]
    assert len(await asyncio.wait_for(asyncio.gather(*groups), timeout=60)) == many
