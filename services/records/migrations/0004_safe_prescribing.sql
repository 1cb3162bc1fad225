-- Safe prescribing: each patient's own allergy list, and what a prescriber overrode.
--
-- allergy_lists: the whole list of one patient as one keyvault ciphertext (JSON list of
-- entries, bound to the patient), MAC'd like a prescription. A patient without a row has
-- had no list yet: the first signed read or write builds it from every encounter (the
-- keyvault decrypts only for a user's signed request, so no migration here can) and
-- stores it; from then on the list is kept, never recomputed.
CREATE TABLE allergy_lists (
    patient_id CHAR(36) NOT NULL PRIMARY KEY,
    allergies_enc MEDIUMTEXT NOT NULL,
    version INT UNSIGNED NOT NULL,
    updated_by VARCHAR(64) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    mac VARCHAR(200) NOT NULL
) ENGINE=InnoDB;

-- safety_enc: JSON {alerts, override_reason} of a prescription signed despite safety
-- alerts (NULL when there were none); covered by the row's MAC when present.
ALTER TABLE prescriptions ADD COLUMN safety_enc TEXT NULL AFTER cancellation_reason_enc;

