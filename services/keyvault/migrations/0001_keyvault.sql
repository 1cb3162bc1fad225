-- The keyvault stores only wrapped keys, never the root key or an unwrapped key.

-- One row once initialised: the Shamir parameters and the root key's check value.
CREATE TABLE vault_meta (
    id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
    threshold TINYINT UNSIGNED NOT NULL,
    shares TINYINT UNSIGNED NOT NULL,
    set_id BINARY(4) NOT NULL,
    check_value VARBINARY(128) NOT NULL,
    initialized_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    CONSTRAINT one_row CHECK (id = 1)
) ENGINE=InnoDB;

-- Data, integrity and blind-index keys, each wrapped by the root key (AAD: id, purpose).
-- next_counter is the first nonce counter not yet leased by any replica.
CREATE TABLE vault_keys (
    key_id INT UNSIGNED NOT NULL PRIMARY KEY,
    purpose ENUM('data', 'integrity', 'blind_index') NOT NULL,
    state ENUM('active', 'retired') NOT NULL DEFAULT 'active',
    wrapped VARBINARY(128) NOT NULL,
    nonce_prefix BINARY(4) NOT NULL,
    next_counter BIGINT UNSIGNED NOT NULL DEFAULT 0,
    use_count BIGINT UNSIGNED NOT NULL DEFAULT 0,
    created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    retired_at TIMESTAMP(6) NULL,
    KEY by_purpose (purpose, state)
) ENGINE=InnoDB;

-- Every block of nonce counters ever leased, by which replica: blocks never overlap.
CREATE TABLE nonce_leases (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    key_id INT UNSIGNED NOT NULL,
    start_counter BIGINT UNSIGNED NOT NULL,
    end_counter BIGINT UNSIGNED NOT NULL,
    instance VARCHAR(128) NOT NULL,
    leased_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY by_key (key_id, start_counter)
) ENGINE=InnoDB;
