-- Bulk export sessions (contracts/fhirexport.py): opened by the keyvault itself when it
-- has verified an export's two administrators' signatures (the approval's DECRYPT);
-- until expires_at it serves that job's pages (keyvault.export_decrypt), patients in
-- ascending id order from `floor` (the first patient of the page last served).
CREATE TABLE export_sessions (
    job_id CHAR(64) NOT NULL PRIMARY KEY,
    requested_by VARCHAR(64) NOT NULL,
    approved_by VARCHAR(64) NOT NULL,
    group_id VARCHAR(64) NULL,
    floor VARCHAR(64) NOT NULL DEFAULT '',
    opened_at DATETIME(6) NOT NULL,
    expires_at DATETIME(6) NOT NULL
) ENGINE=InnoDB;
