-- A user's signed write is carried out once: the proof's key id and nonce are kept with
-- the write's idempotency record, so the same signature under another idempotency key
-- (a replay on the bus) is refused.
ALTER TABLE mesh_idempotency ADD COLUMN proof VARCHAR(191) NULL;
ALTER TABLE mesh_idempotency ADD UNIQUE KEY by_proof (proof);
