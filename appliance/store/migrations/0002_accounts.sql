-- 0002: accounts: TOTP (sealed seeds, replay guard), recovery codes, password history,
-- two-step sign-in state, session handles and step-up time (AUTH-3..8, STORE-3).

-- TOTP seeds are sealed with the vault key (crypto/vault.py), row id as associated data.
ALTER TABLE users ADD COLUMN totp_seed BLOB;               -- active seed (sealed); NULL = 2FA off
ALTER TABLE users ADD COLUMN totp_pending BLOB;            -- seed awaiting confirmation (sealed)
ALTER TABLE users ADD COLUMN totp_last_step INTEGER NOT NULL DEFAULT 0;  -- replay guard

CREATE TABLE recovery_codes (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash   BLOB    NOT NULL,
    used_at     REAL
);
CREATE INDEX recovery_codes_user ON recovery_codes (user_id);

-- Previous password hashes (argon2id), newest first by created_at; trimmed to the policy's N.
CREATE TABLE password_history (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    password_hash TEXT    NOT NULL,
    created_at    REAL    NOT NULL
);
CREATE INDEX password_history_user ON password_history (user_id, created_at);

-- A public random handle addresses a session in pages and URLs without exposing its id.
ALTER TABLE sessions ADD COLUMN handle TEXT NOT NULL DEFAULT '';
UPDATE sessions SET handle = lower(hex(randomblob(16)));
CREATE UNIQUE INDEX sessions_handle ON sessions (handle);
-- When the user last proved who they are in this session (login or re-authentication).
ALTER TABLE sessions ADD COLUMN recent_auth REAL NOT NULL DEFAULT 0;

-- Password accepted, second factor awaited: keyed by the SHA-256 of the pre-session
-- cookie, short-lived, a few attempts. No session exists until the second step passes.
CREATE TABLE pending_logins (
    pre_hash    BLOB    PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  REAL    NOT NULL,
    expires_at  REAL    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0
);
