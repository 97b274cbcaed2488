"""SQL for users, sessions and setup state. The only auth module with SQL text."""

from __future__ import annotations

from appliance.auth.models import Principal, SessionInfo, User, UserCredentials

_USER = "id, username, role, must_change_password, disabled, failed_logins, locked_until, created_at"


def _user(r) -> User:
    return User(id=r[0], username=r[1], role=r[2], must_change_password=bool(r[3]), disabled=bool(r[4]),
                failed_logins=r[5], locked_until=r[6], created_at=r[7])


def count_users(conn) -> int:
    return conn.execute("SELECT count(*) FROM users").fetchone()[0]


def get_credentials(conn, username: str) -> UserCredentials | None:
    r = conn.execute(f"SELECT {_USER}, password_hash FROM users WHERE username = ?", (username,)).fetchone()
    return UserCredentials(user=_user(r), password_hash=r[8]) if r else None


def get_user(conn, user_id: int) -> User | None:
    r = conn.execute(f"SELECT {_USER} FROM users WHERE id = ?", (user_id,)).fetchone()
    return _user(r) if r else None


def insert_user(conn, *, username: str, role: str, password_hash: str, must_change_password: bool, now: float) -> int:
    cur = conn.execute(
        "INSERT INTO users (username, role, password_hash, must_change_password, created_at, password_changed_at)"
        " VALUES (?, ?, ?, ?, ?, ?)", (username, role, password_hash, int(must_change_password), now, now))
    return cur.lastrowid


def update_password_hash(conn, user_id: int, password_hash: str) -> None:
    conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))


def update_failed_logins(conn, user_id: int, failed: int, locked_until: float) -> None:
    conn.execute("UPDATE users SET failed_logins = ?, locked_until = ? WHERE id = ?", (failed, locked_until, user_id))


def insert_session(conn, *, id_hash: bytes, user_id: int, csrf_token: str, now: float, expires_at: float,
                   source: str, user_agent: str) -> None:
    conn.execute(
        "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, last_seen, expires_at, source, user_agent)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (id_hash, user_id, csrf_token, now, now, expires_at, source, user_agent))


def get_principal(conn, id_hash: bytes) -> tuple[Principal, float, bool] | None:
    """The session's principal, its absolute expiry and whether its user is disabled."""
    r = conn.execute(
        "SELECT u.id, u.username, u.role, s.csrf_token, u.must_change_password, s.created_at, s.last_seen,"
        " s.expires_at, u.disabled FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?",
        (id_hash,)).fetchone()
    if r is None:
        return None
    p = Principal(user_id=r[0], username=r[1], role=r[2], session_hash=id_hash, csrf_token=r[3],
                  must_change_password=bool(r[4]), created_at=r[5], last_seen=r[6])
    return p, r[7], bool(r[8])


def update_last_seen(conn, id_hash: bytes, now: float) -> None:
    conn.execute("UPDATE sessions SET last_seen = ? WHERE id_hash = ?", (now, id_hash))


def delete_session(conn, id_hash: bytes) -> int:
    return conn.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,)).rowcount


def delete_expired_sessions(conn, *, now: float, idle_cutoff: float) -> int:
    return conn.execute("DELETE FROM sessions WHERE expires_at <= ? OR last_seen <= ?", (now, idle_cutoff)).rowcount


def list_sessions(conn, user_id: int | None = None) -> list[SessionInfo]:
    sql = ("SELECT s.user_id, u.username, s.created_at, s.last_seen, s.expires_at, s.source, s.user_agent"
           " FROM sessions s JOIN users u ON u.id = s.user_id")
    rows = conn.execute(sql + (" WHERE s.user_id = ?" if user_id is not None else "") + " ORDER BY s.last_seen DESC",
                        (user_id,) if user_id is not None else ()).fetchall()
    return [SessionInfo(user_id=r[0], username=r[1], created_at=r[2], last_seen=r[3], expires_at=r[4],
                        source=r[5], user_agent=r[6]) for r in rows]


def get_setup_state(conn) -> tuple[bytes, float, float | None] | None:
    r = conn.execute("SELECT code_hash, created_at, used_at FROM setup_state WHERE id = 1").fetchone()
    return (bytes(r[0]), r[1], r[2]) if r else None


def upsert_setup_state(conn, code_hash: bytes, now: float) -> None:
    conn.execute("INSERT INTO setup_state (id, code_hash, created_at, used_at) VALUES (1, ?, ?, NULL)"
                 " ON CONFLICT (id) DO UPDATE SET code_hash = excluded.code_hash, created_at = excluded.created_at,"
                 " used_at = NULL", (code_hash, now))


def update_setup_used(conn, now: float) -> None:
    conn.execute("UPDATE setup_state SET used_at = ? WHERE id = 1", (now,))
