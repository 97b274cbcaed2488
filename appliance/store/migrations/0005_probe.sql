-- 0005: SSH probe: current status per device, status transitions, time series with
-- roll-ups (PROBE-4), threshold alerts with acknowledgement (PROBE-3), custom checks.

-- Latest known state of each device (one row per polled device).
CREATE TABLE probe_state (
    device_id   INTEGER PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    status      TEXT    NOT NULL CHECK (status IN ('unknown', 'up', 'degraded', 'down', 'auth failed', 'host key changed', 'unreachable')),
    since       REAL    NOT NULL,
    polled_at   REAL    NOT NULL,
    message     TEXT    NOT NULL DEFAULT '',
    latency_ms  REAL,
    cpu         REAL,
    memory      REAL,
    swap        REAL,
    disk        REAL,
    load1       REAL,
    uptime      REAL,
    disks       TEXT    NOT NULL DEFAULT '[]'
);

-- Status transitions, the device's own event history (visible on its page).
CREATE TABLE probe_events (
    id          INTEGER PRIMARY KEY,
    device_id   INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    ts          REAL    NOT NULL,
    old_status  TEXT    NOT NULL,
    new_status  TEXT    NOT NULL,
    message     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX probe_events_device ON probe_events (device_id, ts);

-- Raw samples, kept 48 h.
CREATE TABLE probe_samples (
    device_id   INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    ts          REAL    NOT NULL,
    latency_ms  REAL,
    cpu         REAL,
    memory      REAL,
    disk        REAL,
    load1       REAL
);
CREATE INDEX probe_samples_device_ts ON probe_samples (device_id, ts);
CREATE INDEX probe_samples_ts ON probe_samples (ts);

-- Roll-ups: averages per bucket (bucket = start time; 300 s kept 30 days, 3600 s kept 400 days).
CREATE TABLE probe_rollups (
    device_id   INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    width       INTEGER NOT NULL CHECK (width IN (300, 3600)),
    bucket      REAL    NOT NULL,
    samples     INTEGER NOT NULL,
    latency_ms  REAL,
    cpu         REAL,
    memory      REAL,
    disk        REAL,
    load1       REAL,
    PRIMARY KEY (device_id, width, bucket)
);
CREATE INDEX probe_rollups_width_bucket ON probe_rollups (width, bucket);

-- Alerts: at most one open alert per device and kind; operators acknowledge them.
CREATE TABLE alerts (
    id          INTEGER PRIMARY KEY,
    device_id   INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL CHECK (kind IN ('cpu', 'memory', 'disk', 'host_key', 'status', 'check')),
    message     TEXT    NOT NULL,
    value       REAL,
    opened_at   REAL    NOT NULL,
    resolved_at REAL,
    acked_at    REAL,
    acked_by    TEXT
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (device_id, kind) WHERE resolved_at IS NULL;
CREATE INDEX alerts_opened ON alerts (opened_at);

-- Custom command checks defined by operators (PROBE-2).
CREATE TABLE probe_checks (
    id            INTEGER PRIMARY KEY,
    device_id     INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    command       TEXT    NOT NULL,
    expect_exit   INTEGER,
    expect_regex  TEXT,
    timeout       REAL    NOT NULL DEFAULT 10,
    output_cap    INTEGER NOT NULL DEFAULT 65536,
    last_ok       INTEGER,
    last_message  TEXT    NOT NULL DEFAULT '',
    last_run      REAL,
    UNIQUE (device_id, name)
);
