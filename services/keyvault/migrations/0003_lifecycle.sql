-- Key lifecycle (issue 18): destroy, minimum decryption versions, online rewrap runs,
-- rekeying the shares and rotating the root key.

-- A destroyed key keeps its row (ids are never reused) without its wrapped copy.
ALTER TABLE vault_keys
    MODIFY state ENUM('active', 'retired', 'destroyed') NOT NULL DEFAULT 'active',
    MODIFY wrapped VARBINARY(128) NULL,
    ADD COLUMN destroyed_at TIMESTAMP(6) NULL;

-- wrapped_root: NULL while the shares rebuild the root key itself (as initialised);
-- after a rekey or a root rotation the shares rebuild an unseal key, `check_value` is
-- its check value and `wrapped_root` the root key wrapped under it (Vault's shape), so
-- new shares make the old ones useless without touching any data key.
-- generation: counts root-key rotations (replicas that hold an older root reload).
-- min_*_key: keys of that purpose with a smaller id no longer decrypt or verify.
-- min_field_version: field envelopes of an older version no longer decrypt.
ALTER TABLE vault_meta
    ADD COLUMN wrapped_root VARBINARY(128) NULL,
    ADD COLUMN generation INT UNSIGNED NOT NULL DEFAULT 0,
    ADD COLUMN min_data_key INT UNSIGNED NOT NULL DEFAULT 0,
    ADD COLUMN min_integrity_key INT UNSIGNED NOT NULL DEFAULT 0,
    ADD COLUMN min_blind_index_key INT UNSIGNED NOT NULL DEFAULT 0,
    ADD COLUMN min_field_version TINYINT UNSIGNED NOT NULL DEFAULT 1;

-- One rewrap run at a time (`running` is 1 while it runs, NULL after: unique).
CREATE TABLE rewrap_runs (
    run_id CHAR(36) NOT NULL PRIMARY KEY,
    state ENUM('running', 'complete', 'cancelled') NOT NULL,
    running TINYINT UNSIGNED NULL UNIQUE,
    reindex TINYINT(1) NOT NULL,
    batch_rows INT UNSIGNED NOT NULL,
    rows_per_second INT UNSIGNED NOT NULL,
    lease_seconds DOUBLE NOT NULL,
    blind_index_key INT UNSIGNED NULL COMMENT 'the active blind-index key at the start',
    started_by VARCHAR(64) NOT NULL,
    started_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    finished_at TIMESTAMP(6) NULL,
    KEY by_state (state, started_at)
) ENGINE=InnoDB;

-- Progress of each table of each service, as the service reports it (its own scan).
-- usage: JSON {key id: fields and tags under it} over the table's last full pass.
CREATE TABLE rewrap_tables (
    run_id CHAR(36) NOT NULL,
    service VARCHAR(32) NOT NULL,
    table_name VARCHAR(64) NOT NULL,
    report TEXT NOT NULL,
    done TINYINT(1) NOT NULL,
    updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
        ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (run_id, service, table_name)
) ENGINE=InnoDB;

-- Services that have finished a run (every table done, a final pass with no work).
CREATE TABLE rewrap_services (
    run_id CHAR(36) NOT NULL,
    service VARCHAR(32) NOT NULL,
    failures TEXT NOT NULL,
    done_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (run_id, service)
) ENGINE=InnoDB;

-- Rekeying the shares or rotating the root key: started by an administrator, carried
-- out by one replica (the coordinator) once K current shares are in, prepared, then
-- committed by an administrator holding the new shares' digest. One pending at a time.
CREATE TABLE vault_ceremonies (
    ceremony_id CHAR(36) NOT NULL PRIMARY KEY,
    kind ENUM('rekey', 'rotate_root') NOT NULL,
    state ENUM('collecting', 'prepared', 'committed', 'cancelled') NOT NULL,
    pending TINYINT UNSIGNED NULL UNIQUE,
    threshold TINYINT UNSIGNED NOT NULL,
    shares TINYINT UNSIGNED NOT NULL,
    recipient_public_key VARCHAR(64) NOT NULL,
    coordinator VARCHAR(128) NOT NULL,
    coordinator_key VARCHAR(64) NOT NULL COMMENT 'its X25519 transport public key',
    started_by VARCHAR(64) NOT NULL,
    progress TINYINT UNSIGNED NOT NULL DEFAULT 0,
    sealed_shares MEDIUMTEXT NULL,
    shares_digest BINARY(32) NULL,
    started_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    finished_at TIMESTAMP(6) NULL
) ENGINE=InnoDB;
