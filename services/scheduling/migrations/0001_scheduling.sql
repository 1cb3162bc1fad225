-- Physician calendars: working hours, days off and appointments. Times are UTC DATETIMEs
-- (set by the service, never by the session time zone);
-- working hours are wall-clock minutes in the clinic's time zone (MEDIHAVEN_CLINIC_TIMEZONE).

-- One row per physician with a calendar. Booking, rescheduling and changing availability
-- lock this row (SELECT ... FOR UPDATE) in the transaction that checks for overlaps and
-- writes, so two replicas can never both book overlapping times for one physician.
-- `version` counts those changes (it also detects a stale snapshot, see store.py).
CREATE TABLE physicians (
    physician_id VARCHAR(64) NOT NULL PRIMARY KEY,
    version BIGINT UNSIGNED NOT NULL DEFAULT 0,
    created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB;

-- Weekly working hours: weekday 0 = Monday; minutes after local midnight, end <= 1440.
CREATE TABLE working_hours (
    physician_id VARCHAR(64) NOT NULL,
    weekday TINYINT UNSIGNED NOT NULL,
    start_minute SMALLINT UNSIGNED NOT NULL,
    end_minute SMALLINT UNSIGNED NOT NULL,
    PRIMARY KEY (physician_id, weekday, start_minute),
    CONSTRAINT wh_weekday CHECK (weekday <= 6),
    CONSTRAINT wh_order CHECK (start_minute < end_minute AND end_minute <= 1440)
) ENGINE=InnoDB;

CREATE TABLE days_off (
    physician_id VARCHAR(64) NOT NULL,
    day DATE NOT NULL,
    PRIMARY KEY (physician_id, day)
) ENGINE=InnoDB;

-- reason_enc / cancel_reason_enc: keyvault ciphertext (base64), bound to
-- appointments|<column>|<appointment_id>; never plaintext.
CREATE TABLE appointments (
    appointment_id CHAR(36) NOT NULL PRIMARY KEY,
    physician_id VARCHAR(64) NOT NULL,
    patient_id VARCHAR(64) NOT NULL,
    start_at DATETIME NOT NULL,
    end_at DATETIME NOT NULL,
    status ENUM('booked', 'cancelled', 'completed', 'no_show') NOT NULL DEFAULT 'booked',
    reason_enc TEXT NOT NULL,
    cancel_reason_enc TEXT NULL,
    booked_by VARCHAR(64) NOT NULL,
    updated_by VARCHAR(64) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    KEY by_physician (physician_id, start_at),
    KEY by_patient (patient_id, start_at),
    CONSTRAINT appt_order CHECK (start_at < end_at)
) ENGINE=InnoDB;
