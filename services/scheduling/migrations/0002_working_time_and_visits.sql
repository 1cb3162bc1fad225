-- Working time beyond weekly hours and days off: weekly breaks (e.g. lunch) and absences
-- (holidays, leave), which the slot finder and the booking rule take out of the hours.
-- And an appointment's day: arrived (checked in), in progress, completed, no-show.

-- Weekly breaks: weekday 0 = Monday; wall-clock minutes in the clinic's time zone.
CREATE TABLE breaks (
    physician_id VARCHAR(64) NOT NULL,
    weekday TINYINT UNSIGNED NOT NULL,
    start_minute SMALLINT UNSIGNED NOT NULL,
    end_minute SMALLINT UNSIGNED NOT NULL,
    PRIMARY KEY (physician_id, weekday, start_minute),
    CONSTRAINT br_weekday CHECK (weekday <= 6),
    CONSTRAINT br_order CHECK (start_minute < end_minute AND end_minute <= 1440)
) ENGINE=InnoDB;

-- An absence is either whole days of the clinic's calendar (first_day..last_day, turned
-- into instants when read, so DST and the clinic's zone apply) or an interval of UTC
-- instants (start_at..end_at). No free text: the kind says enough about a colleague.
CREATE TABLE absences (
    absence_id CHAR(36) NOT NULL PRIMARY KEY,
    physician_id VARCHAR(64) NOT NULL,
    kind ENUM('holiday', 'leave', 'training', 'other') NOT NULL,
    first_day DATE NULL,
    last_day DATE NULL,
    start_at DATETIME NULL,
    end_at DATETIME NULL,
    created_by VARCHAR(64) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    KEY by_physician_days (physician_id, last_day),
    KEY by_physician_times (physician_id, end_at),
    CONSTRAINT ab_form CHECK (
        (first_day IS NOT NULL AND last_day IS NOT NULL AND first_day <= last_day
         AND start_at IS NULL AND end_at IS NULL)
        OR (first_day IS NULL AND last_day IS NULL AND start_at IS NOT NULL
            AND end_at IS NOT NULL AND start_at < end_at)
    )
) ENGINE=InnoDB;

ALTER TABLE appointments
    MODIFY status ENUM('booked', 'cancelled', 'completed', 'no_show', 'arrived', 'in_progress')
        NOT NULL DEFAULT 'booked',
    ADD COLUMN arrived_at DATETIME(6) NULL,
    ADD COLUMN started_at DATETIME(6) NULL,
    ADD COLUMN finished_at DATETIME(6) NULL,
    -- today's list of every physician
    ADD KEY by_start (start_at);
