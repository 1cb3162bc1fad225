-- Galera (issue 21): a block of nonce counters can be leased once only. The high-water
-- mark in vault_keys already guarantees it (certification lets one of two concurrent
-- leases commit); a unique start per key makes a second lease of the same block
-- impossible to store as well.
ALTER TABLE nonce_leases DROP KEY by_key, ADD UNIQUE KEY by_key_start (key_id, start_counter);
