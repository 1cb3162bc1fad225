-- FHIR Bulk Data exports in pages (contracts/fhirexport.py): the run walks the patients
-- by id (`cursor_patient`, the last patient of the last sealed page) under a lease that
-- a live run renews every page; a lapsed lease lets any records replica resume the job
-- at the next page. Each page's files are sealed (never plaintext) and stored with the
-- cursor in one transaction, so a crash leaves whole sealed pages and nothing else.
ALTER TABLE fhir_export_jobs
    ADD COLUMN types VARCHAR(200) NULL,
    ADD COLUMN since DATETIME(6) NULL,
    ADD COLUMN cursor_patient VARCHAR(64) NOT NULL DEFAULT '',
    ADD COLUMN page INT NOT NULL DEFAULT 0,
    ADD COLUMN exported INT NOT NULL DEFAULT 0,
    ADD COLUMN lease_owner VARCHAR(64) NULL,
    ADD COLUMN lease_until DATETIME(6) NULL,
    ADD COLUMN run_principal VARCHAR(400) NULL,
    ADD KEY by_state (state, lease_until);

ALTER TABLE fhir_export_files
    ADD COLUMN part INT NOT NULL DEFAULT 1,
    DROP PRIMARY KEY,
    ADD PRIMARY KEY (job_id, resource_type, part);
