"""SQL of the chat service: conversations, members, messages, read receipts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mesh import db
from mesh.db import Database, Sql


@dataclass(frozen=True)
class ConversationRow:
    conversation_id: str
    kind: str
    name_enc: str | None
    created_by: str
    created_at: datetime
    member_ids: list[str]


@dataclass(frozen=True)
class MessageRow:
    message_id: int
    message_uuid: str
    conversation_id: str
    sender_id: str
    text_enc: str
    sent_at: datetime


async def find_direct(conn: Sql, direct_key: str) -> str | None:
    row = await db.fetchone(
        conn, "SELECT conversation_id FROM conversations WHERE direct_key = %s", (direct_key,)
    )
    return str(row[0]) if row else None


async def insert_conversation(
    conn: Sql,
    conversation_id: str,
    kind: str,
    name_enc: str | None,
    direct_key: str | None,
    created_by: str,
    member_ids: list[str],
) -> None:
    await db.execute(
        conn,
        "INSERT INTO conversations (conversation_id, kind, name_enc, direct_key, created_by) "
        "VALUES (%s, %s, %s, %s, %s)",
        (conversation_id, kind, name_enc, direct_key, created_by),
    )
    for account_id in member_ids:
        await db.execute(
            conn,
            "INSERT INTO conversation_members (conversation_id, account_id) VALUES (%s, %s)",
            (conversation_id, account_id),
        )


async def get_conversation(
    database: Database | Any, conversation_id: str
) -> ConversationRow | None:
    rows = await db.fetchall(
        database,
        "SELECT c.conversation_id, c.kind, c.name_enc, c.created_by, c.created_at, m.account_id "
        "FROM conversations c JOIN conversation_members m USING (conversation_id) "
        "WHERE c.conversation_id = %s ORDER BY m.account_id",
        (conversation_id,),
    )
    if not rows:
        return None
    first = rows[0]
    return ConversationRow(
        str(first[0]), str(first[1]), first[2], str(first[3]), first[4], [str(r[5]) for r in rows]
    )


async def conversations_of(database: Database, account_id: str) -> list[ConversationRow]:
    rows = await database.fetchall(
        "SELECT c.conversation_id, c.kind, c.name_enc, c.created_by, c.created_at, m2.account_id "
        "FROM conversation_members m "
        "JOIN conversations c USING (conversation_id) "
        "JOIN conversation_members m2 ON m2.conversation_id = c.conversation_id "
        "WHERE m.account_id = %s ORDER BY c.created_at, c.conversation_id, m2.account_id",
        (account_id,),
    )
    grouped: dict[str, ConversationRow] = {}
    for r in rows:
        cid = str(r[0])
        if cid not in grouped:
            grouped[cid] = ConversationRow(cid, str(r[1]), r[2], str(r[3]), r[4], [])
        grouped[cid].member_ids.append(str(r[5]))
    return list(grouped.values())


async def unread_and_last(
    database: Database, account_id: str
) -> dict[str, tuple[int, int | None, datetime | None]]:
    """Per conversation of `account_id`: unread count, last message id and time (kept up
    to date by `sent` and `mark_read`: no message is read here)."""
    rows = await database.fetchall(
        "SELECT m.conversation_id, m.unread, c.last_message_id, c.last_message_at "
        "FROM conversation_members m JOIN conversations c USING (conversation_id) "
        "WHERE m.account_id = %s",
        (account_id,),
    )
    return {
        str(r[0]): (int(r[1] or 0), int(r[2]) if r[2] is not None else None, r[3]) for r in rows
    }


async def sent(conn: Sql, message: MessageRow) -> None:
    """A new last message, and one more unread for every other member."""
    await db.execute(
        conn,
        "UPDATE conversations SET last_message_id = %s, last_message_at = %s "
        "WHERE conversation_id = %s",
        (message.message_id, message.sent_at, message.conversation_id),
    )
    await db.execute(
        conn,
        "UPDATE conversation_members SET unread = unread + 1 "
        "WHERE conversation_id = %s AND account_id <> %s",
        (message.conversation_id, message.sender_id),
    )


async def next_message_id(conn: Sql) -> int:
    """Take the next message id; the row lock is held until the transaction ends."""
    await db.execute(
        conn, "UPDATE message_sequence SET next_id = LAST_INSERT_ID(next_id + 1) WHERE id = 1"
    )
    row = await db.fetchone(conn, "SELECT LAST_INSERT_ID()")
    assert row is not None
    return int(row[0])


async def insert_message(conn: Sql, message: MessageRow) -> None:
    await db.execute(
        conn,
        "INSERT INTO messages (message_id, message_uuid, conversation_id, sender_id, text_enc, "
        "sent_at) VALUES (%s, %s, %s, %s, %s, %s)",
        (
            message.message_id,
            message.message_uuid,
            message.conversation_id,
            message.sender_id,
            message.text_enc,
            message.sent_at,
        ),
    )


SELECT_MESSAGES = (
    "SELECT msg.message_id, msg.message_uuid, msg.conversation_id, msg.sender_id, "
    "msg.text_enc, msg.sent_at FROM messages msg "
    "JOIN conversation_members m ON m.conversation_id = msg.conversation_id"
)


async def messages(
    database: Database,
    account_id: str,
    conversation_id: str | None,
    after_id: int | None,
    before_id: int | None,
    limit: int,
) -> list[MessageRow]:
    """A page of messages in the caller's conversations (oldest first when paging forward)."""
    where = ["m.account_id = %s"]
    args: list[Any] = [account_id]
    if conversation_id is not None:
        where.append("msg.conversation_id = %s")
        args.append(conversation_id)
    if before_id is not None:
        where.append("msg.message_id < %s")
        args.append(before_id)
        order = "DESC"
    else:
        where.append("msg.message_id > %s")
        args.append(after_id or 0)
        order = "ASC"
    # Only constant fragments are joined here; every value is a parameter.
    condition = " AND ".join(where)
    sql = f"{SELECT_MESSAGES} WHERE {condition} ORDER BY msg.message_id {order} LIMIT %s"
    rows = await database.fetchall(sql, (*args, limit))
    return [MessageRow(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), r[5]) for r in rows]


async def mark_read(conn: Sql, conversation_id: str, account_id: str, up_to: int) -> int:
    """Move the read marker forward (never back); returns the marker after the update."""
    await db.execute(
        conn,
        "UPDATE conversation_members SET read_up_to = GREATEST(read_up_to, %s), "
        "read_at = NOW(6) WHERE conversation_id = %s AND account_id = %s",
        (up_to, conversation_id, account_id),
    )
    row = await db.fetchone(
        conn,
        "SELECT read_up_to FROM conversation_members WHERE conversation_id = %s "
        "AND account_id = %s",
        (conversation_id, account_id),
    )
    read_up_to = int(row[0]) if row else 0
    # Unread: the others' messages after the marker (an index range, not the history).
    await db.execute(
        conn,
        "UPDATE conversation_members SET unread = (SELECT COUNT(*) FROM messages "
        "WHERE conversation_id = %s AND message_id > %s AND sender_id <> %s) "
        "WHERE conversation_id = %s AND account_id = %s",
        (conversation_id, read_up_to, account_id, conversation_id, account_id),
    )
    return read_up_to


async def receipts(
    database: Database, conversation_id: str
) -> list[tuple[str, int, datetime | None]]:
    rows = await database.fetchall(
        "SELECT account_id, read_up_to, read_at FROM conversation_members "
        "WHERE conversation_id = %s ORDER BY account_id",
        (conversation_id,),
    )
    return [(str(r[0]), int(r[1]), r[2]) for r in rows]


async def max_message_id(target: Database | Any, conversation_id: str) -> int:
    row = await db.fetchone(
        target,
        "SELECT COALESCE(MAX(message_id), 0) FROM messages WHERE conversation_id = %s",
        (conversation_id,),
    )
    return int(row[0]) if row else 0
