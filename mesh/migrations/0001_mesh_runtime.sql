-- Tables the shared runtime keeps in every service's database.

-- Transactional outbox: an event is written in the same transaction as the change it
-- describes and published by the relay afterwards; `id` becomes the event's message_id.
CREATE TABLE mesh_outbox (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    routing_key VARCHAR(255) NOT NULL,
    payload LONGBLOB NOT NULL,
    headers TEXT NOT NULL,
    created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    sent_at TIMESTAMP(6) NULL,
    KEY pending (sent_at, id)
) ENGINE=InnoDB;

-- Idempotent consumers: a message id is recorded in the same transaction as its effect.
CREATE TABLE mesh_processed_events (
    consumer VARCHAR(128) NOT NULL,
    message_id VARCHAR(191) NOT NULL,
    processed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (consumer, message_id)
) ENGINE=InnoDB;

-- Idempotent RPC writes: the first result of a write is kept under its idempotency key.
CREATE TABLE mesh_idempotency (
    idem_key VARCHAR(191) NOT NULL PRIMARY KEY,
    method VARCHAR(191) NOT NULL,
    request_hash BINARY(32) NOT NULL,
    response LONGBLOB NULL,
    created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB;
