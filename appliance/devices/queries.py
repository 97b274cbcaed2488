"""SQL for devices, credentials, tags and host-key pins. The only devices module with SQL text.

Sealed credential blobs are returned only by `get_sealed_secret`/`list_sealed_secrets`,
which only DeviceService calls (to hand secrets to the probe)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.devices.models import Credential, Device

if TYPE_CHECKING:
    from appliance.store.connection import Connection

_DEVICE = ("d.id, d.name, d.address, d.port, d.poll_interval, d.enabled, d.notes, d.legacy_algorithms,"
           " d.credential_id, c.name, d.host_key, d.host_key_fingerprint, d.host_key_status, d.pinned_at, d.pin_mode,"
           " d.preset_fingerprint, d.presented_key, d.presented_fingerprint, d.mismatch_at, d.created_at, d.updated_at,"
           " (SELECT group_concat(tag, char(31)) FROM (SELECT tag FROM device_tags t WHERE t.device_id = d.id"
           " ORDER BY tag)), d.binding_status, d.binding_requested_by, d.binding_requested_at, d.binding_approved_by,"
           " d.binding_approved_at")
_FROM = " FROM devices d LEFT JOIN credentials c ON c.id = d.credential_id"
_CRED = ("c.id, c.name, c.username, c.kind, c.key_type, c.key_bits, c.fingerprint, c.has_passphrase,"
         " (SELECT count(*) FROM devices d WHERE d.credential_id = c.id), c.created_at, c.updated_at, c.entered_by")


def _device(r) -> Device:
    return Device(id=r[0], name=r[1], address=r[2], port=r[3], poll_interval=r[4], enabled=bool(r[5]), notes=r[6],
                  legacy_algorithms=bool(r[7]), credential_id=r[8], credential_name=r[9], host_key=r[10],
                  host_key_fingerprint=r[11], host_key_status=r[12], pinned_at=r[13], pin_mode=r[14],
                  preset_fingerprint=r[15], presented_key=r[16], presented_fingerprint=r[17], mismatch_at=r[18],
                  created_at=r[19], updated_at=r[20], tags=r[21].split("\x1f") if r[21] else [],
                  binding_status=r[22], binding_requested_by=r[23], binding_requested_at=r[24],
                  binding_approved_by=r[25], binding_approved_at=r[26])


def _credential(r) -> Credential:
    return Credential(id=r[0], name=r[1], username=r[2], kind=r[3], key_type=r[4], key_bits=r[5], fingerprint=r[6],
                      has_passphrase=bool(r[7]), device_count=r[8], created_at=r[9], updated_at=r[10],
                      entered_by=r[11])


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# ---- devices ---------------------------------------------------------------------

def list_devices(conn: Connection, *, search: str = "", tag: str = "", enabled_only: bool = False,
                 limit: int = 1000, offset: int = 0) -> list[Device]:
    where, args = [], []
    if search:
        pattern = _like(search)
        where.append("(d.name LIKE ? ESCAPE '\\' OR d.address LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM device_tags t"
                     " WHERE t.device_id = d.id AND t.tag LIKE ? ESCAPE '\\'))")
        args += [pattern, pattern, pattern]
    if tag:
        where.append("EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = d.id AND t.tag = ?)")
        args.append(tag)
    if enabled_only:
        where.append("d.enabled = 1")
    sql = f"SELECT {_DEVICE}{_FROM}" + (" WHERE " + " AND ".join(where) if where else "")
    rows = conn.execute(sql + " ORDER BY d.name COLLATE NOCASE LIMIT ? OFFSET ?", (*args, limit, offset)).fetchall()
    return [_device(r) for r in rows]


def get_device(conn: Connection, device_id: int) -> Device | None:
    r = conn.execute(f"SELECT {_DEVICE}{_FROM} WHERE d.id = ?", (device_id,)).fetchone()
    return _device(r) if r else None


def get_device_id_by_name(conn: Connection, name: str) -> int | None:
    r = conn.execute("SELECT id FROM devices WHERE name = ?", (name,)).fetchone()
    return r[0] if r else None


def list_tags(conn: Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT tag FROM device_tags ORDER BY tag COLLATE NOCASE")]


def insert_device(conn: Connection, *, name: str, address: str, port: int, poll_interval: int, enabled: bool,
                  notes: str, legacy_algorithms: bool, credential_id: int | None, preset_fingerprint: str | None,
                  now: float) -> int:
    cur = conn.execute(
        "INSERT INTO devices (name, address, port, poll_interval, enabled, notes, legacy_algorithms, credential_id,"
        " preset_fingerprint, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (name, address, port, poll_interval, int(enabled), notes, int(legacy_algorithms), credential_id,
         preset_fingerprint, now, now))
    assert cur.lastrowid is not None  # set by the INSERT just run
    return cur.lastrowid


def update_device(conn: Connection, device_id: int, *, name: str, address: str, port: int, poll_interval: int,
                  enabled: bool, notes: str, legacy_algorithms: bool, credential_id: int | None,
                  preset_fingerprint: str | None, now: float) -> None:
    conn.execute(
        "UPDATE devices SET name = ?, address = ?, port = ?, poll_interval = ?, enabled = ?, notes = ?,"
        " legacy_algorithms = ?, credential_id = ?, preset_fingerprint = ?, updated_at = ? WHERE id = ?",
        (name, address, port, poll_interval, int(enabled), notes, int(legacy_algorithms), credential_id,
         preset_fingerprint, now, device_id))


def replace_tags(conn: Connection, device_id: int, tags: list[str]) -> None:
    conn.execute("DELETE FROM device_tags WHERE device_id = ?", (device_id,))
    conn.executemany("INSERT OR IGNORE INTO device_tags (device_id, tag) VALUES (?, ?)", [(device_id, t) for t in tags])


def delete_device(conn: Connection, device_id: int) -> None:
    conn.execute("DELETE FROM devices WHERE id = ?", (device_id,))


def update_pin(conn: Connection, device_id: int, *, key_line: str, fingerprint: str, mode: str, now: float) -> None:
    """Pin a key and clear any mismatch under review."""
    conn.execute(
        "UPDATE devices SET host_key = ?, host_key_fingerprint = ?, pinned_at = ?, pin_mode = ?,"
        " host_key_status = 'pinned', presented_key = NULL, presented_fingerprint = NULL, mismatch_at = NULL,"
        " updated_at = ? WHERE id = ?", (key_line, fingerprint, now, mode, now, device_id))


def clear_pin(conn: Connection, device_id: int, now: float) -> None:
    conn.execute(
        "UPDATE devices SET host_key = NULL, host_key_fingerprint = NULL, pinned_at = NULL, pin_mode = NULL,"
        " host_key_status = 'unpinned', presented_key = NULL, presented_fingerprint = NULL, mismatch_at = NULL,"
        " updated_at = ? WHERE id = ?", (now, device_id))


def update_mismatch(conn: Connection, device_id: int, *, key_line: str, fingerprint: str, now: float) -> None:
    conn.execute(
        "UPDATE devices SET host_key_status = 'mismatch', presented_key = ?, presented_fingerprint = ?,"
        " mismatch_at = ? WHERE id = ?", (key_line, fingerprint, now, device_id))


# ---- credentials -----------------------------------------------------------------

def list_credentials(conn: Connection) -> list[Credential]:
    return [_credential(r) for r in conn.execute(f"SELECT {_CRED} FROM credentials c ORDER BY c.name COLLATE NOCASE")]


def get_credential(conn: Connection, credential_id: int) -> Credential | None:
    r = conn.execute(f"SELECT {_CRED} FROM credentials c WHERE c.id = ?", (credential_id,)).fetchone()
    return _credential(r) if r else None


def get_credential_id_by_name(conn: Connection, name: str) -> int | None:
    r = conn.execute("SELECT id FROM credentials WHERE name = ?", (name,)).fetchone()
    return r[0] if r else None


def insert_credential(conn: Connection, *, name: str, username: str, kind: str, key_type: str, key_bits: int,
                      fingerprint: str, has_passphrase: bool, entered_by: str, now: float) -> int:
    """Insert with an empty secret: the caller seals it with the new row id and calls update_secret."""
    cur = conn.execute(
        "INSERT INTO credentials (name, username, kind, secret, key_type, key_bits, fingerprint, has_passphrase,"
        " entered_by, created_at, updated_at) VALUES (?, ?, ?, x'', ?, ?, ?, ?, ?, ?, ?)",
        (name, username, kind, key_type, key_bits, fingerprint, int(has_passphrase), entered_by, now, now))
    assert cur.lastrowid is not None  # set by the INSERT just run
    return cur.lastrowid


def update_credential(conn: Connection, credential_id: int, *, name: str, username: str, kind: str, key_type: str,
                      key_bits: int, fingerprint: str, has_passphrase: bool, entered_by: str, now: float) -> None:
    """A replaced secret: whoever typed the new one is now the one who entered it."""
    conn.execute(
        "UPDATE credentials SET name = ?, username = ?, kind = ?, key_type = ?, key_bits = ?, fingerprint = ?,"
        " has_passphrase = ?, entered_by = ?, updated_at = ? WHERE id = ?",
        (name, username, kind, key_type, key_bits, fingerprint, int(has_passphrase), entered_by, now, credential_id))


def get_credential_entered_by(conn: Connection, credential_id: int) -> str | None:
    r = conn.execute("SELECT entered_by FROM credentials WHERE id = ?", (credential_id,)).fetchone()
    return r[0] if r else None


def set_binding(conn: Connection, device_id: int, status: str, *, by: str, now: float) -> None:
    """'pending' records who asked and when; 'approved' who approved (the last request stays for the record)."""
    if status == "pending":
        conn.execute("UPDATE devices SET binding_status = 'pending', binding_requested_by = ?,"
                     " binding_requested_at = ?, binding_approved_by = NULL, binding_approved_at = NULL"
                     " WHERE id = ?", (by, now, device_id))
    else:
        conn.execute("UPDATE devices SET binding_status = 'approved', binding_approved_by = ?,"
                     " binding_approved_at = ? WHERE id = ?", (by, now, device_id))


def update_credential_name(conn: Connection, credential_id: int, *, name: str, username: str, now: float) -> None:
    conn.execute("UPDATE credentials SET name = ?, username = ?, updated_at = ? WHERE id = ?",
                 (name, username, now, credential_id))


def update_secret(conn: Connection, credential_id: int, sealed: bytes) -> None:
    conn.execute("UPDATE credentials SET secret = ? WHERE id = ?", (sealed, credential_id))


def get_sealed_secret(conn: Connection, credential_id: int) -> tuple[str, bytes] | None:
    """(username, sealed blob) of one credential."""
    r = conn.execute("SELECT username, secret FROM credentials WHERE id = ?", (credential_id,)).fetchone()
    return (r[0], bytes(r[1])) if r else None


def list_device_ids_for_credential(conn: Connection, credential_id: int) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM devices WHERE credential_id = ?", (credential_id,))]


def delete_credential(conn: Connection, credential_id: int) -> None:
    conn.execute("DELETE FROM credentials WHERE id = ?", (credential_id,))
