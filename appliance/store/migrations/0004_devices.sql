-- 0004: device inventory, shared SSH credentials (sealed, STORE-3) and host-key pins (DEV-1..4).

-- SSH credentials. `secret` is sealed by crypto/vault.py with associated data
-- "credentials.secret:<id>", so a blob moved to another row does not open.
-- Only public facts about keys (type, bits, SHA256 fingerprint) are stored in clear.
CREATE TABLE credentials (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    username        TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('password', 'key')),
    secret          BLOB    NOT NULL,
    key_type        TEXT    NOT NULL DEFAULT '',
    key_bits        INTEGER NOT NULL DEFAULT 0,
    fingerprint     TEXT    NOT NULL DEFAULT '',
    has_passphrase  INTEGER NOT NULL DEFAULT 0,
    created_at      REAL    NOT NULL,
    updated_at      REAL    NOT NULL
);

CREATE TABLE devices (
    id                    INTEGER PRIMARY KEY,
    name                  TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    address               TEXT    NOT NULL,
    port                  INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    poll_interval         INTEGER NOT NULL CHECK (poll_interval BETWEEN 10 AND 86400),
    enabled               INTEGER NOT NULL DEFAULT 1,
    notes                 TEXT    NOT NULL DEFAULT '',
    legacy_algorithms     INTEGER NOT NULL DEFAULT 0,
    credential_id         INTEGER REFERENCES credentials (id) ON DELETE RESTRICT,
    -- pinned host key (OpenSSH public key line) and how it was pinned
    host_key              TEXT,
    host_key_fingerprint  TEXT,
    pinned_at             REAL,
    pin_mode              TEXT CHECK (pin_mode IN ('tofu', 'preset', 'review')),
    preset_fingerprint    TEXT,
    -- a different key a device presented, kept for operator review
    presented_key         TEXT,
    presented_fingerprint TEXT,
    mismatch_at           REAL,
    host_key_status       TEXT    NOT NULL DEFAULT 'unpinned' CHECK (host_key_status IN ('unpinned', 'pinned', 'mismatch')),
    created_at            REAL    NOT NULL,
    updated_at            REAL    NOT NULL
);
CREATE INDEX devices_credential ON devices (credential_id);

CREATE TABLE device_tags (
    device_id   INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    tag         TEXT    NOT NULL COLLATE NOCASE,
    PRIMARY KEY (device_id, tag)
);
CREATE INDEX device_tags_tag ON device_tags (tag);
