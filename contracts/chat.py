"""Wire contracts of the chat service: conversations and messages between staff.

Message text is encrypted at rest by the keyvault and decrypted only for a signed
request of a member. Live delivery therefore pushes a notification (`MessageSent`, ids
only) and the client fetches the text with a signed request (`HISTORY`, `after_id`),
which is also how a reconnecting client catches up, in order and without duplicates.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from contracts.base import ALL_ROLES, EventType, HttpRoute, Model, RpcMethod
from contracts.grants import Decrypt, Grant

SERVICE = "chat"

MAX_MESSAGE_CHARS = 4000
MAX_GROUP_MEMBERS = 50
MAX_MESSAGE_ID = 2**63 - 1
AccountId = Annotated[str, Field(min_length=1, max_length=64)]


class ConversationKind(StrEnum):
    direct = "direct"
    group = "group"


class Conversation(Model):
    conversation_id: str
    kind: ConversationKind
    name: str | None = None
    member_ids: list[str]
    created_by: str
    created_at: datetime


class ConversationSummary(Model):
    conversation: Conversation
    unread: int
    last_message_id: int | None = None
    last_message_at: datetime | None = None


class Message(Model):
    message_id: int = Field(description="Increasing across the whole service: a cursor.")
    conversation_id: str
    sender_id: str
    sent_at: datetime
    text: str


class Receipt(Model):
    conversation_id: str
    account_id: str
    read_up_to: int
    read_at: datetime


class OpenDirectRequest(Model):
    other_account_id: str = Field(min_length=1, max_length=64)


class CreateGroupRequest(Model):
    name: str = Field(min_length=1, max_length=100)
    member_ids: list[AccountId] = Field(min_length=1, max_length=MAX_GROUP_MEMBERS)


class ListConversationsRequest(Model):
    pass


class ConversationList(Model):
    conversations: list[ConversationSummary]


class SendRequest(Model):
    conversation_id: str = Field(max_length=64)
    text: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


class HistoryRequest(Model):
    """Messages of one conversation, or of all the caller's conversations when omitted.

    `after_id` pages forward (catching up after a reconnect, oldest first);
    `before_id` pages backward (scrolling up, newest first)."""

    conversation_id: str | None = Field(default=None, max_length=64)
    after_id: int | None = Field(default=None, ge=0, le=MAX_MESSAGE_ID)
    before_id: int | None = Field(default=None, ge=1, le=MAX_MESSAGE_ID)
    limit: int = Field(default=50, ge=1, le=200)


class CatchUpRequest(Model):
    """What a live connection missed: every message of the caller's conversations after
    `last_id`, oldest first (a page; the client fetches the rest with HISTORY).

    `after_event` is the gateway's alone: the last live-log event the client got (every
    kind: calendar, chat, receipts, notices), from which the gateway resumes the channel;
    the chat service reads no messages for a handshake without `last_id`."""

    last_id: int | None = Field(default=None, ge=0, le=MAX_MESSAGE_ID)
    after_event: int | None = Field(default=None, ge=0, le=2**53 - 1)


class MessagePage(Model):
    messages: list[Message]
    next_cursor: int | None = Field(
        default=None, description="Pass as after_id/before_id to get the next page."
    )


class MarkReadRequest(Model):
    conversation_id: str = Field(max_length=64)
    up_to_message_id: int = Field(ge=1, le=MAX_MESSAGE_ID)


class ReceiptsRequest(Model):
    conversation_id: str = Field(max_length=64)


class ReceiptList(Model):
    receipts: list[Receipt]


class MessageSent(Model):
    """A notification: who should fetch what. Never the text."""

    message_id: int
    conversation_id: str
    sender_id: str
    member_ids: list[str]
    sent_at: datetime


class MessagesRead(Model):
    conversation_id: str
    account_id: str
    read_up_to: int
    member_ids: list[str]


MESSAGES_TABLE = "messages"
CONVERSATIONS_TABLE = "conversations"
CATCH_UP_PAGE = 500

OPEN_DIRECT = RpcMethod(
    SERVICE,
    "chat.open_direct",
    OpenDirectRequest,
    Conversation,
    write=True,
    roles=ALL_ROLES,
    route=HttpRoute("POST", "/chat/direct"),
)
CREATE_GROUP = RpcMethod(  # the reply holds the group's name
    SERVICE,
    "chat.create_group",
    CreateGroupRequest,
    Conversation,
    write=True,
    roles=ALL_ROLES,
    keep_reply=False,
    route=HttpRoute("POST", "/chat/groups", status=201),
)
LIST_CONVERSATIONS = RpcMethod(
    SERVICE,
    "chat.list_conversations",
    ListConversationsRequest,
    ConversationList,
    roles=ALL_ROLES,
    route=HttpRoute("GET", "/chat/conversations"),
    grant=Grant(
        decrypt=Decrypt(tables=frozenset({CONVERSATIONS_TABLE}), columns=frozenset({"name"}))
    ),
)
SEND = RpcMethod(  # the reply holds the text: not kept in clear for repeats
    SERVICE,
    "chat.send",
    SendRequest,
    Message,
    write=True,
    roles=ALL_ROLES,
    keep_reply=False,
    route=HttpRoute("POST", "/chat/conversations/{conversation_id}/messages", status=201),
)
HISTORY = RpcMethod(
    SERVICE,
    "chat.history",
    HistoryRequest,
    MessagePage,
    roles=ALL_ROLES,
    route=HttpRoute(
        "GET",
        "/chat/messages",
        query=("conversation_id", "after_id", "before_id", "limit"),
        summary="A page of messages; `after_id` is how a client catches up after a reconnect.",
    ),
    grant=Grant(
        decrypt=Decrypt(
            tables=frozenset({MESSAGES_TABLE}),
            conversation="conversation_id",
            columns=frozenset({"text"}),
            max_rows="limit",
        )
    ),
)
CATCH_UP = RpcMethod(
    SERVICE,
    "chat.catch_up",
    CatchUpRequest,
    MessagePage,
    roles=ALL_ROLES,
    route=HttpRoute("GET", "/ws", query=("last_id", "after_event")),
    grant=Grant(
        decrypt=Decrypt(
            tables=frozenset({MESSAGES_TABLE}), columns=frozenset({"text"}), max_rows=CATCH_UP_PAGE
        )
    ),
)
"""The live channel's signed handshake (`GET /api/v1/ws?last_id=N&after_event=E`) stands
for this read."""
MARK_READ = RpcMethod(
    SERVICE,
    "chat.mark_read",
    MarkReadRequest,
    Receipt,
    write=True,
    roles=ALL_ROLES,
    route=HttpRoute("POST", "/chat/conversations/{conversation_id}/read"),
)
RECEIPTS = RpcMethod(
    SERVICE,
    "chat.receipts",
    ReceiptsRequest,
    ReceiptList,
    roles=ALL_ROLES,
    route=HttpRoute("GET", "/chat/conversations/{conversation_id}/receipts"),
)

MESSAGE_SENT = EventType("chat.message.sent", MessageSent, publishers=frozenset({SERVICE}))
MESSAGES_READ = EventType("chat.messages.read", MessagesRead, publishers=frozenset({SERVICE}))
