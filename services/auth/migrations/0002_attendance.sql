-- Attendance: who is on duty (one row per staff member: their latest check-in and
-- check-out, whichever source said so), and the webhook's event ids already received.
CREATE TABLE attendance_shifts (
    account_id VARCHAR(64) NOT NULL PRIMARY KEY,
    checked_in_at DATETIME(6) NULL,
    checked_out_at DATETIME(6) NULL,
    last_event_at DATETIME(6) NOT NULL,
    place VARCHAR(200) NOT NULL DEFAULT '',
    source ENUM('timeclock', 'webhook', 'manual') NOT NULL,
    updated_at DATETIME(6) NOT NULL
) ENGINE=InnoDB;

CREATE TABLE attendance_webhook_events (
    event_id VARCHAR(100) NOT NULL PRIMARY KEY,
    received_at DATETIME(6) NOT NULL,
    KEY by_time (received_at)
) ENGINE=InnoDB;
