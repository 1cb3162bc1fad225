-- Audit at hospital scale.
-- The patients of an entry that names several (one read of a list or a calendar: one
-- entry, every patient it touched); access histories find an entry through here too.
CREATE TABLE audit_patients (
    patient_id VARCHAR(64) NOT NULL,
    seq BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (patient_id, seq)
) ENGINE=InnoDB;

-- How far the chain was verified: each mark (seq, hash) MAC'd by the keyvault, so a
-- verification can start from the last one instead of the first entry.
CREATE TABLE audit_verified (
    seq BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    hash BINARY(32) NOT NULL,
    mac VARCHAR(200) NOT NULL,
    verified_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB;

-- Walks of the whole chain from its first entry, in the background, resumable.
CREATE TABLE audit_full_walks (
    walk_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    state VARCHAR(16) NOT NULL,
    total BIGINT UNSIGNED NOT NULL,
    checked BIGINT UNSIGNED NOT NULL DEFAULT 0,
    cursor_seq BIGINT UNSIGNED NOT NULL DEFAULT 0,
    cursor_hash BINARY(32) NOT NULL,
    started_by VARCHAR(64) NULL,
    started_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    finished_at TIMESTAMP(6) NULL,
    first_bad_seq BIGINT UNSIGNED NULL,
    problem VARCHAR(300) NULL,
    -- the replica walking it, until when (another takes over a lapsed lease)
    walker VARCHAR(64) NULL,
    lease_until DATETIME(6) NULL,
    KEY by_state (state)
) ENGINE=InnoDB;
