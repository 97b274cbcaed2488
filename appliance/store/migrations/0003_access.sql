-- 0003: API keys (ACL-2). The IP allow list (ACL-3) lives in `settings` under
-- the key 'access.ip_allowlist' (a JSON list of CIDR strings), so it needs no table.

-- Only the HMAC-SHA-256 of the secret part is stored, under a pepper kept in
-- keys/apikey.key outside the database: a copy of the database alone cannot even
-- test guesses. `role` is what the key was granted; requests get the lower of it
-- and the owner's current role.
CREATE TABLE api_keys (
    id            TEXT    PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    role          TEXT    NOT NULL REFERENCES roles (name),
    secret_mac    BLOB    NOT NULL,
    created_at    REAL    NOT NULL,
    expires_at    REAL    NOT NULL,
    revoked_at    REAL,
    last_used_at  REAL,
    last_used_ip  TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX api_keys_user ON api_keys (user_id);
