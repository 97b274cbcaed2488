"""SQL for users, sessions and setup state. The only auth module with SQL text."""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.auth.models import SessionInfo, User, UserCredentials
from appliance.crypto import tokens
from appliance.principal import Principal

if TYPE_CHECKING:
    from appliance.store.connection import Connection

_USER = ("id, username, role, must_change_password, disabled, failed_logins, locked_until, created_at,"
         " totp_seed IS NOT NULL, password_changed_at")


def _user(r) -> User:
    return User(id=r[0], username=r[1], role=r[2], must_change_password=bool(r[3]), disabled=bool(r[4]),
                failed_logins=r[5], locked_until=r[6], created_at=r[7], totp_enabled=bool(r[8]),
                password_changed_at=r[9])


def count_users(conn: Connection) -> int:
    return conn.execute("SELECT count(*) FROM users").fetchone()[0]


def get_credentials(conn: Connection, username: str) -> UserCredentials | None:
    r = conn.execute(f"SELECT {_USER}, password_hash FROM users WHERE username = ?", (username,)).fetchone()
    return UserCredentials(user=_user(r), password_hash=r[10]) if r else None


def get_user(conn: Connection, user_id: int) -> User | None:
    r = conn.execute(f"SELECT {_USER} FROM users WHERE id = ?", (user_id,)).fetchone()
    return _user(r) if r else None


def insert_user(conn: Connection, *, username: str, role: str, password_hash: str, must_change_password: bool,
                now: float) -> int:
    cur = conn.execute(
        "INSERT INTO users (username, role, password_hash, must_change_password, created_at, password_changed_at)"
        " VALUES (?, ?, ?, ?, ?, ?)", (username, role, password_hash, int(must_change_password), now, now))
    assert cur.lastrowid is not None  # set by the INSERT just run
    return cur.lastrowid


def update_password_hash(conn: Connection, user_id: int, password_hash: str) -> None:
    conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))


def update_failed_logins(conn: Connection, user_id: int, failed: int, locked_until: float) -> None:
    conn.execute("UPDATE users SET failed_logins = ?, locked_until = ? WHERE id = ?", (failed, locked_until, user_id))


def insert_session(conn: Connection, *, id_hash: bytes, user_id: int, csrf_token: str, now: float, expires_at: float,
                   source: str, user_agent: str, handle: str = "", recent_auth: float | None = None) -> None:
    conn.execute(
        "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, last_seen, expires_at, source, user_agent,"
        " handle, recent_auth) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (id_hash, user_id, csrf_token, now, now, expires_at, source, user_agent, handle or tokens.new_token(16),
         now if recent_auth is None else recent_auth))


def get_principal(conn: Connection, id_hash: bytes) -> tuple[Principal, float, bool] | None:
    """The session's principal, its absolute expiry and whether its user is disabled."""
    r = conn.execute(
        "SELECT u.id, u.username, u.role, s.csrf_token, u.must_change_password, s.created_at, s.last_seen,"
        " s.expires_at, u.disabled, s.handle, s.recent_auth, u.totp_seed IS NOT NULL"
        " FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?",
        (id_hash,)).fetchone()
    if r is None:
        return None
    p = Principal(user_id=r[0], username=r[1], role=r[2], session_hash=id_hash, csrf_token=r[3],
                  must_change_password=bool(r[4]), created_at=r[5], last_seen=r[6], handle=r[9],
                  recent_auth=r[10], totp_enabled=bool(r[11]))
    return p, r[7], bool(r[8])


def update_last_seen(conn: Connection, id_hash: bytes, now: float) -> None:
    conn.execute("UPDATE sessions SET last_seen = ? WHERE id_hash = ?", (now, id_hash))


def delete_session(conn: Connection, id_hash: bytes) -> int:
    return conn.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,)).rowcount


def delete_expired_sessions(conn: Connection, *, now: float, idle_cutoff: float) -> int:
    return conn.execute("DELETE FROM sessions WHERE expires_at <= ? OR last_seen <= ?", (now, idle_cutoff)).rowcount


def list_sessions(conn: Connection, user_id: int | None = None, current: bytes = b"") -> list[SessionInfo]:
    sql = ("SELECT s.user_id, u.username, s.created_at, s.last_seen, s.expires_at, s.source, s.user_agent,"
           " s.handle, s.id_hash FROM sessions s JOIN users u ON u.id = s.user_id")
    rows = conn.execute(sql + (" WHERE s.user_id = ?" if user_id is not None else "") + " ORDER BY s.last_seen DESC",
                        (user_id,) if user_id is not None else ()).fetchall()
    return [SessionInfo(user_id=r[0], username=r[1], created_at=r[2], last_seen=r[3], expires_at=r[4],
                        source=r[5], user_agent=r[6], handle=r[7], current=bytes(r[8]) == current) for r in rows]


def get_setup_state(conn: Connection) -> tuple[bytes, float, float | None] | None:
    r = conn.execute("SELECT code_hash, created_at, used_at FROM setup_state WHERE id = 1").fetchone()
    return (bytes(r[0]), r[1], r[2]) if r else None


def upsert_setup_state(conn: Connection, code_hash: bytes, now: float) -> None:
    conn.execute("INSERT INTO setup_state (id, code_hash, created_at, used_at) VALUES (1, ?, ?, NULL)"
                 " ON CONFLICT (id) DO UPDATE SET code_hash = excluded.code_hash, created_at = excluded.created_at,"
                 " used_at = NULL", (code_hash, now))


def update_setup_used(conn: Connection, now: float) -> None:
    conn.execute("UPDATE setup_state SET used_at = ? WHERE id = 1", (now,))


# ---- accounts (AUTH-3, -5, ACL-1) ---------------------------------------------------

def get_user_by_name(conn: Connection, username: str) -> User | None:
    r = conn.execute(f"SELECT {_USER} FROM users WHERE username = ?", (username,)).fetchone()
    return _user(r) if r else None


def get_credentials_by_id(conn: Connection, user_id: int) -> UserCredentials | None:
    r = conn.execute(f"SELECT {_USER}, password_hash FROM users WHERE id = ?", (user_id,)).fetchone()
    return UserCredentials(user=_user(r), password_hash=r[10]) if r else None


def list_users(conn: Connection) -> list[User]:
    return [_user(r) for r in conn.execute(f"SELECT {_USER} FROM users ORDER BY username").fetchall()]


def count_active_admins(conn: Connection) -> int:
    return conn.execute("SELECT count(*) FROM users WHERE role = 'admin' AND disabled = 0").fetchone()[0]


def list_roles(conn: Connection) -> list[tuple[str, int, str]]:
    return conn.execute("SELECT name, rank, description FROM roles ORDER BY rank").fetchall()


def update_role(conn: Connection, user_id: int, role: str) -> None:
    conn.execute("UPDATE users SET role = ? WHERE id = ?", (role, user_id))


def update_disabled(conn: Connection, user_id: int, disabled: bool) -> None:
    conn.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), user_id))


def update_password(conn: Connection, user_id: int, password_hash: str, *, must_change: bool, now: float) -> None:
    conn.execute("UPDATE users SET password_hash = ?, must_change_password = ?, password_changed_at = ?,"
                 " failed_logins = 0, locked_until = 0 WHERE id = ?", (password_hash, int(must_change), now, user_id))


def list_password_history(conn: Connection, user_id: int, limit: int) -> list[str]:
    rows = conn.execute("SELECT password_hash FROM password_history WHERE user_id = ? ORDER BY created_at DESC, id DESC"
                        " LIMIT ?", (user_id, limit)).fetchall()
    return [r[0] for r in rows]


def insert_password_history(conn: Connection, user_id: int, password_hash: str, now: float, keep: int) -> None:
    conn.execute("INSERT INTO password_history (user_id, password_hash, created_at) VALUES (?, ?, ?)",
                 (user_id, password_hash, now))
    conn.execute("DELETE FROM password_history WHERE user_id = ? AND id NOT IN (SELECT id FROM password_history"
                 " WHERE user_id = ? ORDER BY created_at DESC, id DESC LIMIT ?)", (user_id, user_id, max(keep, 0)))


# ---- sessions by user and handle (AUTH-7, -8) -------------------------------------------

def get_session_owner(conn: Connection, handle: str) -> int | None:
    r = conn.execute("SELECT user_id FROM sessions WHERE handle = ?", (handle,)).fetchone()
    return r[0] if r else None


def delete_session_by_handle(conn: Connection, handle: str) -> int:
    return conn.execute("DELETE FROM sessions WHERE handle = ?", (handle,)).rowcount


def delete_user_sessions(conn: Connection, user_id: int, *, keep: bytes = b"") -> int:
    return conn.execute("DELETE FROM sessions WHERE user_id = ? AND id_hash != ?", (user_id, keep)).rowcount


def update_recent_auth(conn: Connection, id_hash: bytes, now: float) -> None:
    conn.execute("UPDATE sessions SET recent_auth = ? WHERE id_hash = ?", (now, id_hash))


# ---- TOTP and recovery codes (AUTH-6) ------------------------------------------------

def get_totp(conn: Connection, user_id: int) -> tuple[bytes | None, bytes | None, int] | None:
    """(sealed active seed, sealed pending seed, last accepted step)."""
    r = conn.execute("SELECT totp_seed, totp_pending, totp_last_step FROM users WHERE id = ?", (user_id,)).fetchone()
    return (bytes(r[0]) if r[0] is not None else None, bytes(r[1]) if r[1] is not None else None, r[2]) if r else None


def update_totp_pending(conn: Connection, user_id: int, sealed: bytes | None) -> None:
    conn.execute("UPDATE users SET totp_pending = ? WHERE id = ?", (sealed, user_id))


def update_totp_seed(conn: Connection, user_id: int, sealed: bytes | None, last_step: int) -> None:
    conn.execute("UPDATE users SET totp_seed = ?, totp_pending = NULL, totp_last_step = ? WHERE id = ?",
                 (sealed, last_step, user_id))


def update_totp_step(conn: Connection, user_id: int, step: int) -> int:
    """Advance the replay guard; 0 rows if another request already used this step or a later one."""
    return conn.execute("UPDATE users SET totp_last_step = ? WHERE id = ? AND totp_last_step < ?",
                        (step, user_id, step)).rowcount


def replace_recovery_codes(conn: Connection, user_id: int, digests: list[bytes]) -> None:
    conn.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,))
    conn.executemany("INSERT INTO recovery_codes (user_id, code_hash) VALUES (?, ?)", [(user_id, d) for d in digests])


def list_unused_recovery_codes(conn: Connection, user_id: int) -> list[tuple[int, bytes]]:
    rows = conn.execute("SELECT id, code_hash FROM recovery_codes WHERE user_id = ? AND used_at IS NULL",
                        (user_id,)).fetchall()
    return [(r[0], bytes(r[1])) for r in rows]


def update_recovery_used(conn: Connection, code_id: int, now: float) -> int:
    return conn.execute("UPDATE recovery_codes SET used_at = ? WHERE id = ? AND used_at IS NULL",
                        (now, code_id)).rowcount


# ---- two-step sign-in (AUTH-6) -------------------------------------------------------

def upsert_pending_login(conn: Connection, pre_hash: bytes, user_id: int, now: float, expires_at: float) -> None:
    conn.execute("INSERT INTO pending_logins (pre_hash, user_id, created_at, expires_at, attempts)"
                 " VALUES (?, ?, ?, ?, 0)"
                 " ON CONFLICT (pre_hash) DO UPDATE SET user_id = excluded.user_id, created_at = excluded.created_at,"
                 " expires_at = excluded.expires_at, attempts = 0", (pre_hash, user_id, now, expires_at))


def get_pending_login(conn: Connection, pre_hash: bytes) -> tuple[int, float, int] | None:
    """(user id, expiry, attempts so far)."""
    r = conn.execute("SELECT user_id, expires_at, attempts FROM pending_logins WHERE pre_hash = ?",
                     (pre_hash,)).fetchone()
    return (r[0], r[1], r[2]) if r else None


def update_pending_attempts(conn: Connection, pre_hash: bytes) -> None:
    conn.execute("UPDATE pending_logins SET attempts = attempts + 1 WHERE pre_hash = ?", (pre_hash,))


def delete_pending_login(conn: Connection, pre_hash: bytes) -> None:
    conn.execute("DELETE FROM pending_logins WHERE pre_hash = ?", (pre_hash,))


def delete_expired_pending(conn: Connection, now: float) -> int:
    return conn.execute("DELETE FROM pending_logins WHERE expires_at <= ?", (now,)).rowcount


# ---- settings (security policy) ------------------------------------------------------

def get_setting(conn: Connection, key: str) -> str | None:
    r = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return r[0] if r else None


def upsert_setting(conn: Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO settings (key, value) VALUES (?, ?)"
                 " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 (key, value))
