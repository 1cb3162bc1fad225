-- Each entry keeps the service that published it, as the broker validated it (AMQP
-- user_id), inside the hash chain; an event whose claimed source is not its publisher, or
-- of a type that publisher may not record, is kept apart here instead (never chained).
ALTER TABLE audit_log ADD COLUMN publisher VARCHAR(64) NULL;

CREATE TABLE audit_quarantine (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id VARCHAR(64) NOT NULL,
    publisher VARCHAR(64) NULL,
    reason VARCHAR(300) NOT NULL,
    payload MEDIUMTEXT NOT NULL,
    received_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    UNIQUE KEY by_event (event_id)
) ENGINE=InnoDB;
