"""Chat's tables for the online rewrap (`mesh.rewrap`): group names and messages, bound to
their conversation; a message's context row id is its uuid (known before its id)."""

from __future__ import annotations

from contracts.chat import SERVICE
from mesh.rewrap import RewrapJob, Table
from services.chat.handlers import router as handlers_router

CONVERSATION = {"conversation": "conversation_id"}

TABLES = (
    Table("conversations", pk=("conversation_id",), encrypted=("name_enc",), binding=CONVERSATION),
    Table(
        "messages",
        pk=("message_id",),
        row_id="message_uuid",
        encrypted=("text_enc",),
        binding=CONVERSATION,
    ),
)

JOB = RewrapJob(SERVICE, TABLES)
router = JOB.serve(handlers_router)
"""Chat's handlers, with its `key_usage` scan and the rewrap worker."""
