-- Staff accounts and registration tokens. Both tables carry a MAC (keyvault, integrity
-- key) over their canonical rows: an edited or inserted row fails verification.
CREATE TABLE staff_accounts (
    account_id CHAR(36) NOT NULL PRIMARY KEY,
    username VARCHAR(64) NOT NULL UNIQUE,
    display_name VARCHAR(200) NOT NULL,
    role ENUM('administrator', 'physician', 'receptionist') NOT NULL,
    status ENUM('active', 'disabled') NOT NULL DEFAULT 'active',
    public_key VARCHAR(60) NOT NULL,
    specialty VARCHAR(200) NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    mac VARCHAR(200) NOT NULL,
    KEY by_role (role)
) ENGINE=InnoDB;

-- Only the SHA-256 of a token is stored; the token itself is shown once.
CREATE TABLE registration_tokens (
    token_id CHAR(36) NOT NULL PRIMARY KEY,
    token_hash CHAR(64) NOT NULL UNIQUE,
    role ENUM('administrator', 'physician', 'receptionist') NOT NULL,
    expires_at DATETIME(6) NOT NULL,
    issued_by VARCHAR(64) NULL,
    created_at DATETIME(6) NOT NULL,
    revoked_at DATETIME(6) NULL,
    used_by VARCHAR(64) NULL,
    used_at DATETIME(6) NULL,
    mac VARCHAR(200) NOT NULL
) ENGINE=InnoDB;
