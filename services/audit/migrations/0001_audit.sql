-- The append-only audit log, as a hash chain: each entry's hash covers the previous
-- entry's hash and every stored field, so an edited, inserted or deleted entry breaks it.
CREATE TABLE audit_log (
    seq BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    event_id VARCHAR(64) NOT NULL UNIQUE,
    type VARCHAR(100) NOT NULL,
    action CHAR(1) NOT NULL,
    outcome VARCHAR(16) NOT NULL,
    recorded DATETIME(6) NOT NULL,
    account_id VARCHAR(64) NULL,
    role VARCHAR(32) NULL,
    address VARCHAR(64) NULL,
    source VARCHAR(64) NOT NULL,
    patient_id VARCHAR(64) NULL,
    entity_type VARCHAR(64) NULL,
    entity_id VARCHAR(128) NULL,
    purpose_of_use VARCHAR(32) NULL,
    detail VARCHAR(1000) NULL,
    trace_id VARCHAR(64) NULL,
    prev_hash BINARY(32) NOT NULL,
    hash BINARY(32) NOT NULL,
    KEY by_recorded (recorded),
    KEY by_account (account_id, recorded),
    KEY by_patient (patient_id, recorded),
    KEY by_action (action, outcome, recorded),
    KEY by_type (type, recorded)
) ENGINE=InnoDB;

-- One row: the last entry. Appends lock it, so the chain stays strictly sequential
-- across replicas and concurrent deliveries.
CREATE TABLE audit_head (
    id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
    seq BIGINT UNSIGNED NOT NULL,
    hash BINARY(32) NOT NULL
) ENGINE=InnoDB;
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, UNHEX(REPEAT('00', 32)));

-- The chain head MAC'd by the keyvault at intervals: a consistent rewrite of the chain
-- (which needs no key) still contradicts a checkpoint (which does).
CREATE TABLE audit_checkpoints (
    seq BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    hash BINARY(32) NOT NULL,
    mac VARCHAR(200) NOT NULL,
    created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB;
