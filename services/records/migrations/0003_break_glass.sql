-- Emergency (break-glass) access: a physician without a care relationship opens a chart
-- for a limited time, with a reason (keyvault ciphertext), reviewed by administrators.
CREATE TABLE break_glass (
    grant_id CHAR(36) NOT NULL PRIMARY KEY,
    physician_id VARCHAR(64) NOT NULL,
    patient_id CHAR(36) NOT NULL,
    reason_enc TEXT NOT NULL,
    opened_at DATETIME(6) NOT NULL,
    expires_at DATETIME(6) NOT NULL,
    acknowledged_by VARCHAR(64) NULL,
    acknowledged_at DATETIME(6) NULL,
    note TEXT NULL,
    KEY by_physician_patient (physician_id, patient_id, expires_at),
    KEY by_acknowledged (acknowledged_at, opened_at)
) ENGINE=InnoDB;
