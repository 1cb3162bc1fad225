-- What the retention task deletes by age is found by index, not by scanning the table.
ALTER TABLE mesh_idempotency ADD KEY by_created (created_at);
ALTER TABLE mesh_processed_events ADD KEY by_processed (processed_at);
