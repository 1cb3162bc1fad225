"""Chat between staff. Live delivery is the WebSocket (`/api/v1/ws`); these are the reads
and writes, each signed (the keyvault decrypts message text only for its reader)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from contracts import chat
from gateway.deps import relay, signed
from gateway.security import Caller

router = APIRouter(prefix="/chat", tags=["chat"])
caller = Depends(signed())


@router.post("/direct", response_model=chat.Conversation)
async def open_direct(
    body: chat.OpenDirectRequest, request: Request, who: Caller = caller
) -> Response:
    return await relay(request, who, chat.OPEN_DIRECT, body)


@router.post("/groups", response_model=chat.Conversation, status_code=201)
async def create_group(
    body: chat.CreateGroupRequest, request: Request, who: Caller = caller
) -> Response:
    return await relay(request, who, chat.CREATE_GROUP, body)


@router.get("/conversations", response_model=chat.ConversationList)
async def conversations(request: Request, who: Caller = caller) -> Response:
    return await relay(request, who, chat.LIST_CONVERSATIONS, chat.ListConversationsRequest())


class Text(BaseModel):
    text: str = Field(min_length=1, max_length=chat.MAX_MESSAGE_CHARS)


@router.post(
    "/conversations/{conversation_id}/messages", response_model=chat.Message, status_code=201
)
async def send(
    conversation_id: str, body: Text, request: Request, who: Caller = caller
) -> Response:
    return await relay(
        request, who, chat.SEND, chat.SendRequest(conversation_id=conversation_id, text=body.text)
    )


@router.get("/messages", response_model=chat.MessagePage)
async def messages(
    request: Request,
    conversation_id: str | None = Query(default=None, max_length=64),
    after_id: int | None = Query(default=None, ge=0),
    before_id: int | None = Query(default=None, ge=1),
    limit: int = Query(default=50, ge=1, le=200),
    who: Caller = caller,
) -> Response:
    """A page of messages; `after_id` is how a client catches up after a reconnect."""
    return await relay(
        request,
        who,
        chat.HISTORY,
        chat.HistoryRequest(
            conversation_id=conversation_id, after_id=after_id, before_id=before_id, limit=limit
        ),
    )


class ReadUpTo(BaseModel):
    up_to_message_id: int = Field(ge=1)


@router.post("/conversations/{conversation_id}/read", response_model=chat.Receipt)
async def mark_read(
    conversation_id: str, body: ReadUpTo, request: Request, who: Caller = caller
) -> Response:
    return await relay(
        request,
        who,
        chat.MARK_READ,
        chat.MarkReadRequest(
            conversation_id=conversation_id, up_to_message_id=body.up_to_message_id
        ),
    )


@router.get("/conversations/{conversation_id}/receipts", response_model=chat.ReceiptList)
async def receipts(conversation_id: str, request: Request, who: Caller = caller) -> Response:
    return await relay(
        request, who, chat.RECEIPTS, chat.ReceiptsRequest(conversation_id=conversation_id)
    )
