CREATE TABLE conversations (
    conversation_id CHAR(36) NOT NULL PRIMARY KEY,
    kind ENUM('direct', 'group') NOT NULL,
    -- group name: encrypted (base64 keyvault ciphertext); direct: NULL
    name_enc TEXT NULL,
    -- for direct conversations: "<smaller id>|<larger id>", so a pair has one conversation
    direct_key VARCHAR(200) NULL UNIQUE,
    created_by VARCHAR(64) NOT NULL,
    created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB;

CREATE TABLE conversation_members (
    conversation_id CHAR(36) NOT NULL,
    account_id VARCHAR(64) NOT NULL,
    read_up_to BIGINT UNSIGNED NOT NULL DEFAULT 0,
    read_at TIMESTAMP(6) NULL,
    PRIMARY KEY (conversation_id, account_id),
    KEY by_account (account_id)
) ENGINE=InnoDB;

-- Message ids come from this one-row sequence, taken inside the sending transaction: the
-- row lock makes ids commit in increasing order, so a reader that has seen id N and
-- asks for "after N" can never miss a message that commits later with a smaller id.
CREATE TABLE message_sequence (
    id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
    next_id BIGINT UNSIGNED NOT NULL
) ENGINE=InnoDB;
INSERT INTO message_sequence (id, next_id) VALUES (1, 0);

CREATE TABLE messages (
    message_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    -- the keyvault context row id of text_enc (known before the id is taken)
    message_uuid CHAR(36) NOT NULL UNIQUE,
    conversation_id CHAR(36) NOT NULL,
    sender_id VARCHAR(64) NOT NULL,
    text_enc MEDIUMTEXT NOT NULL,
    sent_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY by_conversation (conversation_id, message_id)
) ENGINE=InnoDB;
