-- 0001: foundation schema: audit log, roles, users, sessions, first-run setup, settings.

-- Tamper-evident audit log (AUDIT-1..3). Rows are only ever appended; a purge
-- deletes the oldest rows and moves the checkpoint forward so the rest verifies.
CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY,
    ts          REAL    NOT NULL,
    code        TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    actor_type  TEXT    NOT NULL CHECK (actor_type IN ('user', 'api_key', 'system', 'anonymous')),
    actor       TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    target      TEXT    NOT NULL DEFAULT '',
    outcome     TEXT    NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    details     TEXT    NOT NULL DEFAULT '{}',
    prev_hash   BLOB    NOT NULL,
    hash        BLOB    NOT NULL
);
CREATE INDEX audit_log_ts ON audit_log (ts);
CREATE INDEX audit_log_actor ON audit_log (actor, ts);
CREATE INDEX audit_log_action ON audit_log (action, ts);

-- The hash the first remaining audit row chains from after a retention purge.
CREATE TABLE audit_checkpoint (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    seq         INTEGER NOT NULL,
    hash        BLOB    NOT NULL,
    ts          REAL    NOT NULL,
    purged      INTEGER NOT NULL
);

-- Roles are data (ACL-1); rank orders them for "no higher than" checks.
CREATE TABLE roles (
    name        TEXT    PRIMARY KEY,
    rank        INTEGER NOT NULL UNIQUE,
    description TEXT    NOT NULL
);
INSERT INTO roles (name, rank, description) VALUES
    ('viewer',   10, 'Reads dashboards and device status.'),
    ('auditor',  20, 'Reads and exports the audit log, nothing else.'),
    ('operator', 30, 'Manages devices, runs checks and opens remote-access sessions.'),
    ('admin',    40, 'Manages users, policies, certificates, updates and backups.');

CREATE TABLE users (
    id                   INTEGER PRIMARY KEY,
    username             TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    role                 TEXT    NOT NULL REFERENCES roles (name),
    password_hash        TEXT    NOT NULL,
    must_change_password INTEGER NOT NULL DEFAULT 0,
    disabled             INTEGER NOT NULL DEFAULT 0,
    failed_logins        INTEGER NOT NULL DEFAULT 0,
    locked_until         REAL    NOT NULL DEFAULT 0,
    created_at           REAL    NOT NULL,
    password_changed_at  REAL    NOT NULL
);

-- Server-side sessions (AUTH-7): only the SHA-256 of the 256-bit id is stored.
CREATE TABLE sessions (
    id_hash     BLOB    PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token  TEXT    NOT NULL,
    created_at  REAL    NOT NULL,
    last_seen   REAL    NOT NULL,
    expires_at  REAL    NOT NULL,
    source      TEXT    NOT NULL,
    user_agent  TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions (user_id);

-- First-run setup (AUTH-1): one row; the code is stored as its SHA-256 only.
CREATE TABLE setup_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    code_hash   BLOB    NOT NULL,
    created_at  REAL    NOT NULL,
    used_at     REAL
);

-- Settings changed at run time from the UI (policies); config.toml gives defaults.
CREATE TABLE settings (
    key         TEXT    PRIMARY KEY,
    value       TEXT    NOT NULL
);
