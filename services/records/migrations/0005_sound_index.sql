-- Spelling-tolerant patient search without decrypting the table: blind indexes of the
-- family name's sound (both Double Metaphone codes, each with the date of birth; HMAC
-- under the keyvault's blind-index key), one row per distinct token of a patient.
-- Patients registered before this table get theirs when their demographics are next
-- updated; until then the exact name + birth date index still finds them.
CREATE TABLE patient_sounds (
    token CHAR(32) NOT NULL,
    patient_id CHAR(36) NOT NULL,
    PRIMARY KEY (token, patient_id),
    KEY by_patient (patient_id)
) ENGINE=InnoDB;
