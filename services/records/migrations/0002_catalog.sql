-- The medicine catalog (formulary). Not patient data: kept in clear, searchable by prefix.
CREATE TABLE medicines (
    medicine_id CHAR(36) NOT NULL PRIMARY KEY,
    name VARCHAR(200) NOT NULL,
    active_ingredient VARCHAR(200) NOT NULL,
    strength VARCHAR(200) NOT NULL,
    dosage_form VARCHAR(32) NOT NULL,
    route VARCHAR(32) NOT NULL,
    type VARCHAR(32) NOT NULL,
    default_instructions TEXT NOT NULL,
    active TINYINT(1) NOT NULL DEFAULT 1,
    -- case-folded copies for prefix search (the database collation is binary)
    name_key VARCHAR(200) NOT NULL,
    ingredient_key VARCHAR(200) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    UNIQUE KEY one_entry (name, strength, dosage_form),
    KEY by_name (name_key),
    KEY by_ingredient (ingredient_key),
    KEY by_type (type, name_key)
) ENGINE=InnoDB;
