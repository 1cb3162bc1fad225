-- The conversation list from maintained state, not a join over every message: each
-- conversation keeps its last message, each member their unread count (both kept in the
-- sending and the reading transactions).
ALTER TABLE conversations
    ADD COLUMN last_message_id BIGINT UNSIGNED NULL,
    ADD COLUMN last_message_at TIMESTAMP(6) NULL;
ALTER TABLE conversation_members ADD COLUMN unread INT UNSIGNED NOT NULL DEFAULT 0;

UPDATE conversations c
JOIN (SELECT conversation_id, MAX(message_id) AS last_id, MAX(sent_at) AS last_at
      FROM messages GROUP BY conversation_id) m USING (conversation_id)
SET c.last_message_id = m.last_id, c.last_message_at = m.last_at;

UPDATE conversation_members cm
JOIN (SELECT mem.conversation_id, mem.account_id, COUNT(msg.message_id) AS n
      FROM conversation_members mem
      JOIN messages msg ON msg.conversation_id = mem.conversation_id
       AND msg.message_id > mem.read_up_to AND msg.sender_id <> mem.account_id
      GROUP BY mem.conversation_id, mem.account_id) u
  ON u.conversation_id = cm.conversation_id AND u.account_id = cm.account_id
SET cm.unread = u.n;
