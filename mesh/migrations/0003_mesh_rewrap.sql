-- Online rewrap (mesh/rewrap.py): where each service's share of a keyvault rewrap run is,
-- committed in the same transaction as each batch of rows, so a run resumes after a crash
-- exactly where it stopped and no batch is counted twice.

-- One row per (run, table): the pass, the last primary key done (JSON list), counters,
-- and the key ids seen (JSON {key id: fields and tags}) in this pass and the last full one.
CREATE TABLE mesh_rewrap_cursors (
    run_id CHAR(36) NOT NULL,
    table_name VARCHAR(64) NOT NULL,
    pass_number INT UNSIGNED NOT NULL DEFAULT 1,
    last_pk VARCHAR(400) NULL,
    rows_total BIGINT UNSIGNED NOT NULL DEFAULT 0,
    rows_scanned BIGINT UNSIGNED NOT NULL DEFAULT 0,
    rows_rewrapped BIGINT UNSIGNED NOT NULL DEFAULT 0,
    fields_rewrapped BIGINT UNSIGNED NOT NULL DEFAULT 0,
    macs_rewrapped BIGINT UNSIGNED NOT NULL DEFAULT 0,
    tokens_rewritten BIGINT UNSIGNED NOT NULL DEFAULT 0,
    rows_changed BIGINT UNSIGNED NOT NULL DEFAULT 0,
    rows_failed BIGINT UNSIGNED NOT NULL DEFAULT 0,
    pass_work BIGINT UNSIGNED NOT NULL DEFAULT 0,
    pass_usage TEXT NOT NULL,
    pass_versions TEXT NOT NULL,
    final_usage TEXT NULL,
    final_versions TEXT NULL,
    seconds DOUBLE NOT NULL DEFAULT 0,
    done TINYINT(1) NOT NULL DEFAULT 0,
    updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
        ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (run_id, table_name)
) ENGINE=InnoDB;

-- Rows a run could not move (they do not decrypt, fail their MAC, are under a destroyed
-- key): reported to the keyvault, skipped by later passes, never dropped.
CREATE TABLE mesh_rewrap_failures (
    run_id CHAR(36) NOT NULL,
    table_name VARCHAR(64) NOT NULL,
    pk VARCHAR(400) NOT NULL,
    reason VARCHAR(300) NOT NULL,
    PRIMARY KEY (run_id, table_name, pk)
) ENGINE=InnoDB;

-- Which replica of the service does the work: renewed in every batch's transaction, taken
-- over by another replica once it lapses (a replica killed mid-run).
CREATE TABLE mesh_rewrap_lease (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    owner VARCHAR(128) NOT NULL,
    lease_until DATETIME(6) NOT NULL
) ENGINE=InnoDB;
