-- FHIR Bulk Data exports (contracts/fhirexport.py): a job waits for a second
-- administrator's approval, then runs. Files hold NDJSON sealed to the recipient's X25519
-- key only (never plaintext); the kick-off's proof is kept so that the keyvault can check
-- the requester's signature itself when the export is approved.
CREATE TABLE fhir_export_jobs (
    job_id CHAR(64) NOT NULL PRIMARY KEY,
    group_id VARCHAR(64) NULL,
    requested_by VARCHAR(64) NOT NULL,
    approved_by VARCHAR(64) NULL,
    state VARCHAR(24) NOT NULL,
    done INT NOT NULL DEFAULT 0,
    total INT NOT NULL DEFAULT 0,
    progress VARCHAR(200) NOT NULL,
    recipient_public_key VARCHAR(64) NOT NULL,
    kickoff_proof TEXT NOT NULL,
    kickoff_body BLOB NOT NULL,
    output TEXT NULL,
    error VARCHAR(500) NULL,
    requested_at DATETIME(6) NOT NULL
) ENGINE=InnoDB;

CREATE TABLE fhir_export_files (
    job_id CHAR(64) NOT NULL,
    resource_type VARCHAR(32) NOT NULL,
    line_count INT NOT NULL,
    sealed LONGBLOB NOT NULL,
    PRIMARY KEY (job_id, resource_type)
) ENGINE=InnoDB;
