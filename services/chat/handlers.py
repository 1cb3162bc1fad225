"""RPC handlers of the chat service.

Text (messages, group names) is keyvault ciphertext at rest, bound to its conversation;
every read decrypts in one keyvault batch, which the keyvault serves only for the reader's
own signed request, once, within what that request names (a conversation, a page).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from contracts import chat
from contracts.auth import AccountStatus
from contracts.base import Principal
from mesh import keyvault, outbox
from mesh.context import CallContext, runtime_of
from mesh.errors import Forbidden, InvalidRequest, NotFound
from mesh.rpc import RpcRouter
from mesh.runtime import Runtime
from services.chat import store

router = RpcRouter(chat.SERVICE)

MESSAGES_TABLE = chat.MESSAGES_TABLE
CONVERSATIONS_TABLE = chat.CONVERSATIONS_TABLE


def _me(ctx: CallContext) -> Principal:
    assert ctx.principal is not None  # every chat method requires a role
    return ctx.principal


async def _require_active_staff(runtime: Runtime, account_ids: list[str]) -> None:
    for account_id in account_ids:
        record = await runtime.accounts.get(account_id) if runtime.accounts else None
        if record is None:
            raise NotFound(f"no staff member {account_id!r}", details={"account_id": account_id})
        if record.account.status is not AccountStatus.active:
            raise InvalidRequest(f"staff member {account_id!r} is disabled")


async def _member_conversation(ctx: CallContext, conversation_id: str) -> store.ConversationRow:
    """The conversation, if it exists and the caller is a member (404 / 403 otherwise).
    A write reads it through its own transaction (never a second pool connection)."""
    target = ctx.transaction if ctx.transaction is not None else runtime_of(ctx).db
    conversation = await store.get_conversation(target, conversation_id)
    if conversation is None:
        raise NotFound("unknown conversation", details={"conversation_id": conversation_id})
    if _me(ctx).account_id not in conversation.member_ids:
        raise Forbidden("you are not a member of this conversation")
    return conversation


def _conversation(row: store.ConversationRow, name: str | None) -> chat.Conversation:
    return chat.Conversation(
        conversation_id=row.conversation_id,
        kind=chat.ConversationKind(row.kind),
        name=name,
        member_ids=row.member_ids,
        created_by=row.created_by,
        created_at=row.created_at,
    )


@router.handler(chat.OPEN_DIRECT)
async def open_direct(req: chat.OpenDirectRequest, ctx: CallContext) -> chat.Conversation:
    """The one direct conversation of two staff members (made on first use)."""
    me = _me(ctx).account_id
    if req.other_account_id == me:
        raise InvalidRequest("a direct conversation needs another staff member")
    runtime = runtime_of(ctx)
    await _require_active_staff(runtime, [req.other_account_id])
    pair = sorted([me, req.other_account_id])
    direct_key = "|".join(pair)
    existing = await store.find_direct(ctx.tx, direct_key)
    if existing is None:
        existing = str(uuid.uuid4())
        await store.insert_conversation(ctx.tx, existing, "direct", None, direct_key, me, pair)
    row = await store.get_conversation(ctx.tx, existing)
    assert row is not None
    return _conversation(row, None)


@router.handler(chat.CREATE_GROUP)
async def create_group(req: chat.CreateGroupRequest, ctx: CallContext) -> chat.Conversation:
    me = _me(ctx).account_id
    members = sorted({me, *req.member_ids})
    if len(members) < 2:
        raise InvalidRequest("a group needs at least one other member")
    runtime = runtime_of(ctx)
    await _require_active_staff(runtime, [m for m in members if m != me])
    conversation_id = str(uuid.uuid4())
    cipher = await keyvault.encrypt_row(
        runtime,
        CONVERSATIONS_TABLE,
        conversation_id,
        {"name": req.name},
        conversation=conversation_id,
    )
    await store.insert_conversation(
        ctx.tx, conversation_id, "group", cipher["name"], None, me, members
    )
    row = await store.get_conversation(ctx.tx, conversation_id)
    assert row is not None
    return _conversation(row, req.name)


@router.handler(chat.LIST_CONVERSATIONS)
async def list_conversations(
    req: chat.ListConversationsRequest, ctx: CallContext
) -> chat.ConversationList:
    runtime = runtime_of(ctx)
    assert runtime.db is not None
    me = _me(ctx).account_id
    rows = await store.conversations_of(runtime.db, me)
    counts = await store.unread_and_last(runtime.db, me)
    named = [r for r in rows if r.name_enc]
    batch = keyvault.Batch()
    for r in named:
        batch.add(
            CONVERSATIONS_TABLE,
            r.conversation_id,
            {"name": r.name_enc or ""},
            conversation=r.conversation_id,
        )
    names = (await keyvault.decrypt(runtime, batch)).rows
    name_of = {r.conversation_id: n.get("name") for r, n in zip(named, names, strict=True)}
    summaries = []
    for row in rows:
        unread, last_id, last_at = counts.get(row.conversation_id, (0, None, None))
        summaries.append(
            chat.ConversationSummary(
                conversation=_conversation(row, name_of.get(row.conversation_id)),
                unread=unread,
                last_message_id=last_id,
                last_message_at=last_at,
            )
        )
    summaries.sort(key=lambda s: s.last_message_id or 0, reverse=True)
    return chat.ConversationList(conversations=summaries)


@router.handler(chat.SEND)
async def send(req: chat.SendRequest, ctx: CallContext) -> chat.Message:
    runtime = runtime_of(ctx)
    conversation = await _member_conversation(ctx, req.conversation_id)
    message_uuid = str(uuid.uuid4())
    cipher = await keyvault.encrypt_row(
        runtime,
        MESSAGES_TABLE,
        message_uuid,
        {"text": req.text},
        conversation=conversation.conversation_id,
    )
    sent_at = datetime.now(UTC)
    # Taken last, so the sequence row is locked only for the insert and the commit.
    message_id = await store.next_message_id(ctx.tx)
    me = _me(ctx).account_id
    message = store.MessageRow(
        message_id,
        message_uuid,
        conversation.conversation_id,
        me,
        cipher["text"],
        sent_at,
    )
    await store.insert_message(ctx.tx, message)
    await store.sent(ctx.tx, message)
    await outbox.add_event(
        ctx.tx,
        chat.MESSAGE_SENT,
        chat.MessageSent(
            message_id=message_id,
            conversation_id=conversation.conversation_id,
            sender_id=me,
            member_ids=conversation.member_ids,
            sent_at=sent_at,
        ),
    )
    return chat.Message(
        message_id=message_id,
        conversation_id=conversation.conversation_id,
        sender_id=me,
        sent_at=sent_at,
        text=req.text,
    )


@router.handler(chat.HISTORY)
async def history(req: chat.HistoryRequest, ctx: CallContext) -> chat.MessagePage:
    if req.after_id is not None and req.before_id is not None:
        raise InvalidRequest("give after_id or before_id, not both")
    if req.conversation_id is not None:
        await _member_conversation(ctx, req.conversation_id)
    return await _page(ctx, req.conversation_id, req.after_id, req.before_id, req.limit)


@router.handler(chat.CATCH_UP)
async def catch_up(req: chat.CatchUpRequest, ctx: CallContext) -> chat.MessagePage:
    """What a reconnecting live channel missed, oldest first (one page); nothing for a
    handshake that names no message (the gateway then does not ask)."""
    if req.last_id is None:
        return chat.MessagePage(messages=[])
    return await _page(ctx, None, req.last_id, None, chat.CATCH_UP_PAGE)


async def _page(
    ctx: CallContext,
    conversation_id: str | None,
    after_id: int | None,
    before_id: int | None,
    limit: int,
) -> chat.MessagePage:
    runtime = runtime_of(ctx)
    assert runtime.db is not None
    rows = await store.messages(
        runtime.db, _me(ctx).account_id, conversation_id, after_id, before_id, limit
    )
    batch = keyvault.Batch()
    for r in rows:
        batch.add(
            MESSAGES_TABLE, r.message_uuid, {"text": r.text_enc}, conversation=r.conversation_id
        )
    texts = (await keyvault.decrypt(runtime, batch)).rows
    messages = [
        chat.Message(
            message_id=r.message_id,
            conversation_id=r.conversation_id,
            sender_id=r.sender_id,
            sent_at=r.sent_at,
            text=t.get("text", "(this message does not decrypt)"),
        )
        for r, t in zip(rows, texts, strict=True)
    ]
    cursor = rows[-1].message_id if len(rows) == limit else None
    return chat.MessagePage(messages=messages, next_cursor=cursor)


@router.handler(chat.MARK_READ)
async def mark_read(req: chat.MarkReadRequest, ctx: CallContext) -> chat.Receipt:
    conversation = await _member_conversation(ctx, req.conversation_id)
    runtime = runtime_of(ctx)
    assert runtime.db is not None
    if req.up_to_message_id > await store.max_message_id(ctx.tx, req.conversation_id):
        raise InvalidRequest("up_to_message_id is beyond the conversation's last message")
    me = _me(ctx).account_id
    read_up_to = await store.mark_read(ctx.tx, req.conversation_id, me, req.up_to_message_id)
    await outbox.add_event(
        ctx.tx,
        chat.MESSAGES_READ,
        chat.MessagesRead(
            conversation_id=req.conversation_id,
            account_id=me,
            read_up_to=read_up_to,
            member_ids=conversation.member_ids,
        ),
    )
    return chat.Receipt(
        conversation_id=req.conversation_id,
        account_id=me,
        read_up_to=read_up_to,
        read_at=datetime.now(UTC),
    )


@router.handler(chat.RECEIPTS)
async def receipts(req: chat.ReceiptsRequest, ctx: CallContext) -> chat.ReceiptList:
    await _member_conversation(ctx, req.conversation_id)
    runtime = runtime_of(ctx)
    assert runtime.db is not None
    return chat.ReceiptList(
        receipts=[
            chat.Receipt(
                conversation_id=req.conversation_id,
                account_id=account_id,
                read_up_to=up_to,
                read_at=read_at or datetime.fromtimestamp(0, UTC),
            )
            for account_id, up_to, read_at in await store.receipts(runtime.db, req.conversation_id)
        ]
    )
