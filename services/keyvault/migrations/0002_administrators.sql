-- Administrators the keyvault itself MAC'd at registration: while there is none, the
-- operator may bootstrap the first administrator's token; afterwards never again.
CREATE TABLE registered_administrators (
    account_id VARCHAR(64) NOT NULL PRIMARY KEY,
    registered_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB;
