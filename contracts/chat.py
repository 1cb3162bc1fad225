"""Wire contracts of the chat service: conversations and messages between staff.

Message text is encrypted at rest by the keyvault and decrypted only for a signed
request of a member. Live delivery therefore pushes a notification (`MessageSent`, ids
only) and the client fetches the text with a signed request (`HISTORY`, `after_id`),
which is also how a reconnecting client catches up, in order and without duplicates.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from contracts.base import ALL_ROLES, EventType, Model, RpcMethod

SERVICE = "chat"

MAX_MESSAGE_CHARS = 4000
MAX_GROUP_MEMBERS = 50


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
    member_ids: list[str] = Field(min_length=1, max_length=MAX_GROUP_MEMBERS)


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
    after_id: int | None = Field(default=None, ge=0)
    before_id: int | None = Field(default=None, ge=1)
    limit: int = Field(default=50, ge=1, le=200)


class MessagePage(Model):
    messages: list[Message]
    next_cursor: int | None = Field(
        default=None, description="Pass as after_id/before_id to get the next page."
    )


class MarkReadRequest(Model):
    conversation_id: str = Field(max_length=64)
    up_to_message_id: int = Field(ge=1)


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


OPEN_DIRECT = RpcMethod(
    SERVICE, "chat.open_direct", OpenDirectRequest, Conversation, write=True, roles=ALL_ROLES
)
CREATE_GROUP = RpcMethod(  # the reply holds the group's name
    SERVICE,
    "chat.create_group",
    CreateGroupRequest,
    Conversation,
    write=True,
    roles=ALL_ROLES,
    keep_reply=False,
)
LIST_CONVERSATIONS = RpcMethod(
    SERVICE, "chat.list_conversations", ListConversationsRequest, ConversationList, roles=ALL_ROLES
)
SEND = RpcMethod(  # the reply holds the text: not kept in clear for repeats
    SERVICE, "chat.send", SendRequest, Message, write=True, roles=ALL_ROLES, keep_reply=False
)
HISTORY = RpcMethod(SERVICE, "chat.history", HistoryRequest, MessagePage, roles=ALL_ROLES)
MARK_READ = RpcMethod(
    SERVICE, "chat.mark_read", MarkReadRequest, Receipt, write=True, roles=ALL_ROLES
)
RECEIPTS = RpcMethod(SERVICE, "chat.receipts", ReceiptsRequest, ReceiptList, roles=ALL_ROLES)

MESSAGE_SENT = EventType("chat.message.sent", MessageSent)
MESSAGES_READ = EventType("chat.messages.read", MessagesRead)
