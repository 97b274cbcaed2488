"""SQL for API keys, role ranks and the allow-list setting. The only access module with SQL text."""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.access.models import ApiKey, KeyVerifier

if TYPE_CHECKING:
    from appliance.store.connection import Connection

ALLOWLIST_SETTING = "access.ip_allowlist"
_KEY = ("k.id, k.user_id, u.username, k.name, k.role, k.created_at, k.expires_at, k.revoked_at, k.last_used_at,"
        " k.last_used_ip")


def _key(r) -> ApiKey:
    return ApiKey(id=r[0], user_id=r[1], username=r[2], name=r[3], role=r[4], created_at=r[5], expires_at=r[6],
                  revoked_at=r[7], last_used_at=r[8], last_used_ip=r[9])


def get_role_rank(conn: Connection, role: str) -> int | None:
    r = conn.execute("SELECT rank FROM roles WHERE name = ?", (role,)).fetchone()
    return r[0] if r else None


def list_roles(conn: Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM roles ORDER BY rank")]


def get_owner(conn: Connection, user_id: int) -> tuple[str, str, bool] | None:
    """(username, role, disabled) of a key owner."""
    r = conn.execute("SELECT username, role, disabled FROM users WHERE id = ?", (user_id,)).fetchone()
    return (r[0], r[1], bool(r[2])) if r else None


def count_live_keys(conn: Connection, user_id: int, now: float) -> int:
    return conn.execute("SELECT count(*) FROM api_keys WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ?",
                        (user_id, now)).fetchone()[0]


def insert_key(conn: Connection, *, key_id: str, user_id: int, name: str, role: str, secret_mac: bytes, now: float,
               expires_at: float) -> None:
    conn.execute("INSERT INTO api_keys (id, user_id, name, role, secret_mac, created_at, expires_at)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?)", (key_id, user_id, name, role, secret_mac, now, expires_at))


def get_key(conn: Connection, key_id: str) -> ApiKey | None:
    r = conn.execute(f"SELECT {_KEY} FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = ?",
                     (key_id,)).fetchone()
    return _key(r) if r else None


def list_keys(conn: Connection, user_id: int | None = None) -> list[ApiKey]:
    where, args = (" WHERE k.user_id = ?", (user_id,)) if user_id is not None else ("", ())
    rows = conn.execute(f"SELECT {_KEY} FROM api_keys k JOIN users u ON u.id = k.user_id{where}"
                        " ORDER BY k.created_at DESC, k.id", args).fetchall()
    return [_key(r) for r in rows]


def get_verifier(conn: Connection, key_id: str) -> KeyVerifier | None:
    r = conn.execute(
        "SELECT k.id, k.user_id, u.username, k.role, u.role, kr.rank, ur.rank, k.secret_mac, k.expires_at,"
        " k.revoked_at, u.disabled, k.last_used_at, k.last_used_ip"
        " FROM api_keys k JOIN users u ON u.id = k.user_id"
        " JOIN roles kr ON kr.name = k.role JOIN roles ur ON ur.name = u.role WHERE k.id = ?", (key_id,)).fetchone()
    if r is None:
        return None
    return KeyVerifier(id=r[0], user_id=r[1], username=r[2], key_role=r[3], owner_role=r[4], key_rank=r[5],
                       owner_rank=r[6], secret_mac=bytes(r[7]), expires_at=r[8], revoked_at=r[9],
                       owner_disabled=bool(r[10]), last_used_at=r[11], last_used_ip=r[12])


def update_revoked(conn: Connection, key_id: str, now: float) -> int:
    return conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                        (now, key_id)).rowcount


def update_revoked_for_user(conn: Connection, user_id: int, now: float) -> list[str]:
    """Revoke every live key of a user; returns the ids revoked."""
    rows = conn.execute("UPDATE api_keys SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ?"
                        " RETURNING id", (now, user_id, now)).fetchall()
    return sorted(r[0] for r in rows)


def update_last_used(conn: Connection, key_id: str, now: float, source: str) -> None:
    conn.execute("UPDATE api_keys SET last_used_at = ?, last_used_ip = ? WHERE id = ?", (now, source, key_id))


def get_setting(conn: Connection, key: str) -> str | None:
    r = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return r[0] if r else None


def upsert_setting(conn: Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO settings (key, value) VALUES (?, ?)"
                 " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 (key, value))


def delete_setting(conn: Connection, key: str) -> int:
    return conn.execute("DELETE FROM settings WHERE key = ?", (key,)).rowcount
