-- Patients, clinical history and e-prescriptions. Every `*_enc` column is keyvault
-- ciphertext (base64), bound by AAD to `<table>|<column without _enc>|<row id>`; a dump
-- of this database holds no plaintext patient data. `*_bidx` columns are blind indexes
-- (HMAC under the keyvault's blind-index key) for exact-match search.

-- identity_enc: JSON {given_name, family_name, date_of_birth, sex}; contact_enc: JSON
-- {phone, email, address, emergency_contact}. Grouping hides each name's length.
CREATE TABLE patients (
    patient_id CHAR(36) NOT NULL PRIMARY KEY,
    mrn_bidx CHAR(32) NOT NULL,
    identity_bidx CHAR(32) NOT NULL COMMENT 'family name + given name + date of birth',
    name_dob_bidx CHAR(32) NOT NULL COMMENT 'family name + date of birth',
    phone_bidx CHAR(32) NULL,
    mrn_enc TEXT NOT NULL,
    identity_enc TEXT NOT NULL,
    contact_enc TEXT NOT NULL,
    insurance_enc TEXT NULL,
    clinical_flags_enc TEXT NULL,
    version INT UNSIGNED NOT NULL DEFAULT 1,
    created_by VARCHAR(64) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    updated_by VARCHAR(64) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    flags_updated_by VARCHAR(64) NULL,
    flags_updated_at DATETIME(6) NULL,
    UNIQUE KEY by_mrn (mrn_bidx),
    KEY by_identity (identity_bidx),
    KEY by_name_dob (name_dob_bidx),
    KEY by_phone (phone_bidx),
    KEY by_updated (updated_at)
) ENGINE=InnoDB;

-- One row per encounter: where its latest version is, and when it occurred (for order).
CREATE TABLE encounters (
    encounter_id CHAR(36) NOT NULL PRIMARY KEY,
    patient_id CHAR(36) NOT NULL,
    physician_id VARCHAR(64) NOT NULL,
    current_version INT UNSIGNED NOT NULL,
    occurred_at DATETIME(6) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    KEY by_patient (patient_id, occurred_at),
    CONSTRAINT encounter_patient FOREIGN KEY (patient_id) REFERENCES patients (patient_id)
) ENGINE=InnoDB;

-- Append-only: an amendment inserts version n+1 (supersedes = n) and never changes n.
-- Ciphertexts are bound to the row id `<encounter_id>.v<version>`, so one version's
-- content cannot be passed off as another's. note_enc: JSON of the encounter content
-- (complaint, history, examination, assessment, plan, diagnoses, vital signs).
CREATE TABLE encounter_versions (
    encounter_id CHAR(36) NOT NULL,
    version INT UNSIGNED NOT NULL,
    patient_id CHAR(36) NOT NULL,
    occurred_at DATETIME(6) NOT NULL,
    recorded_by VARCHAR(64) NOT NULL,
    recorded_at DATETIME(6) NOT NULL,
    supersedes INT UNSIGNED NULL,
    note_enc MEDIUMTEXT NOT NULL,
    allergies_enc TEXT NOT NULL,
    amendment_reason_enc TEXT NULL,
    PRIMARY KEY (encounter_id, version),
    CONSTRAINT version_chain CHECK (
        (version = 1 AND supersedes IS NULL) OR (supersedes = version - 1)
    ),
    CONSTRAINT version_encounter FOREIGN KEY (encounter_id) REFERENCES encounters (encounter_id)
) ENGINE=InnoDB;

-- MAC-protected (keyvault integrity key) over every column but `mac`, in the order of
-- services/records/integrity.py; the prescriber's Ed25519 signature covers the
-- canonical prescription (contracts.records.canonical_prescription).
-- medication_enc: JSON of contracts.records.Medication.
CREATE TABLE prescriptions (
    prescription_id CHAR(36) NOT NULL PRIMARY KEY,
    patient_id CHAR(36) NOT NULL,
    prescriber_id VARCHAR(64) NOT NULL,
    encounter_id CHAR(36) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    medication_enc TEXT NOT NULL,
    signature VARCHAR(100) NOT NULL,
    signer_public_key VARCHAR(60) NOT NULL,
    status ENUM('active', 'cancelled', 'completed') NOT NULL,
    status_changed_at DATETIME(6) NULL,
    status_changed_by VARCHAR(64) NULL,
    cancellation_reason_enc TEXT NULL,
    mac VARCHAR(200) NOT NULL,
    KEY by_patient (patient_id, created_at)
) ENGINE=InnoDB;
