"""The probe's SQL (and the only module of the capability with SQL text)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from appliance.probe.models import Alert, Check, DeviceStatus, PollResult, ProbeEvent

if TYPE_CHECKING:
    from appliance.store.connection import Connection

_STATE_COLUMNS = ("latency_ms", "cpu", "memory", "swap", "disk", "load1", "uptime")


def get_status(conn: Connection, device_id: int) -> tuple[str, float, str] | None:
    """(status, since, message) of a device's latest poll."""
    row = conn.execute("SELECT status, since, message FROM probe_state WHERE device_id = ?", (device_id,)).fetchone()
    return (row[0], row[1], row[2]) if row else None


def upsert_state(conn: Connection, result: PollResult, since: float) -> None:
    conn.execute(
        "INSERT INTO probe_state (device_id, status, since, polled_at, message, latency_ms, cpu, memory, swap, disk,"
        " load1, uptime, disks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (device_id) DO UPDATE SET status = excluded.status, since = excluded.since,"
        " polled_at = excluded.polled_at, message = excluded.message, latency_ms = excluded.latency_ms,"
        " cpu = excluded.cpu, memory = excluded.memory, swap = excluded.swap, disk = excluded.disk,"
        " load1 = excluded.load1, uptime = excluded.uptime, disks = excluded.disks",
        (result.device_id, result.status, since, result.ts, result.message[:500],
         *(getattr(result, c) for c in _STATE_COLUMNS), json.dumps(result.disks)))


def insert_event(conn: Connection, device_id: int, ts: float, old: str, new: str, message: str) -> None:
    conn.execute("INSERT INTO probe_events (device_id, ts, old_status, new_status, message) VALUES (?, ?, ?, ?, ?)",
                 (device_id, ts, old, new, message[:500]))


def insert_sample(conn: Connection, result: PollResult) -> None:
    conn.execute("INSERT INTO probe_samples (device_id, ts, latency_ms, cpu, memory, disk, load1)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (result.device_id, result.ts, result.latency_ms, result.cpu, result.memory, result.disk, result.load1))


def list_fleet(conn: Connection) -> list[DeviceStatus]:
    rows = conn.execute(
        "SELECT d.id, d.name, d.address, d.port, d.enabled, COALESCE(s.status, 'unknown'), s.since, s.polled_at,"
        " COALESCE(s.message, ''), s.latency_ms, s.cpu, s.memory, s.swap, s.disk, s.load1, s.uptime,"
        " COALESCE(s.disks, '[]') FROM devices d LEFT JOIN probe_state s ON s.device_id = d.id"
        " ORDER BY d.name LIMIT 5000").fetchall()
    return [_status(r) for r in rows]


def get_device_status(conn: Connection, device_id: int) -> DeviceStatus | None:
    row = conn.execute(
        "SELECT d.id, d.name, d.address, d.port, d.enabled, COALESCE(s.status, 'unknown'), s.since, s.polled_at,"
        " COALESCE(s.message, ''), s.latency_ms, s.cpu, s.memory, s.swap, s.disk, s.load1, s.uptime,"
        " COALESCE(s.disks, '[]') FROM devices d LEFT JOIN probe_state s ON s.device_id = d.id WHERE d.id = ?",
        (device_id,)).fetchone()
    return _status(row) if row else None


def _status(r) -> DeviceStatus:
    return DeviceStatus(device_id=r[0], name=r[1], address=r[2], port=r[3], enabled=bool(r[4]), status=r[5],
                        since=r[6], polled_at=r[7], message=r[8], latency_ms=r[9], cpu=r[10], memory=r[11],
                        swap=r[12], disk=r[13], load1=r[14], uptime=r[15], disks=r[16])


def list_events(conn: Connection, device_id: int, limit: int = 50) -> list[ProbeEvent]:
    rows = conn.execute("SELECT id, device_id, ts, old_status, new_status, message FROM probe_events"
                        " WHERE device_id = ? ORDER BY id DESC LIMIT ?", (device_id, limit)).fetchall()
    return [ProbeEvent(id=r[0], device_id=r[1], ts=r[2], old_status=r[3], new_status=r[4], message=r[5]) for r in rows]


# --- alerts ---------------------------------------------------------------------------

def get_open_alert(conn: Connection, device_id: int, kind: str) -> int | None:
    row = conn.execute("SELECT id FROM alerts WHERE device_id = ? AND kind = ? AND resolved_at IS NULL",
                       (device_id, kind)).fetchone()
    return row[0] if row else None


def insert_alert(conn: Connection, device_id: int, kind: str, message: str, value: float | None, ts: float) -> int:
    cur = conn.execute("INSERT INTO alerts (device_id, kind, message, value, opened_at) VALUES (?, ?, ?, ?, ?)",
                       (device_id, kind, message[:500], value, ts))
    assert cur.lastrowid is not None  # set by the INSERT just run
    return cur.lastrowid


def update_alert_value(conn: Connection, alert_id: int, value: float | None) -> None:
    conn.execute("UPDATE alerts SET value = ? WHERE id = ?", (value, alert_id))


def resolve_alert(conn: Connection, alert_id: int, ts: float) -> None:
    conn.execute("UPDATE alerts SET resolved_at = ? WHERE id = ? AND resolved_at IS NULL", (ts, alert_id))


def acknowledge_alert(conn: Connection, alert_id: int, ts: float, username: str) -> bool:
    cur = conn.execute("UPDATE alerts SET acked_at = ?, acked_by = ? WHERE id = ? AND acked_at IS NULL",
                       (ts, username, alert_id))
    return cur.rowcount == 1


_ALERT_SELECT = ("SELECT a.id, a.device_id, d.name, a.kind, a.message, a.value, a.opened_at, a.resolved_at,"
                 " a.acked_at, a.acked_by FROM alerts a JOIN devices d ON d.id = a.device_id")


def get_alert(conn: Connection, alert_id: int) -> Alert | None:
    row = conn.execute(_ALERT_SELECT + " WHERE a.id = ?", (alert_id,)).fetchone()
    return _alert(row) if row else None


def list_alerts(conn: Connection, *, open_only: bool, device_id: int | None = None, limit: int = 200) -> list[Alert]:
    rows = conn.execute(
        _ALERT_SELECT + " WHERE (? = 0 OR a.resolved_at IS NULL OR a.acked_at IS NULL)"
        " AND (? IS NULL OR a.device_id = ?) ORDER BY a.id DESC LIMIT ?",
        (1 if open_only else 0, device_id, device_id, limit)).fetchall()
    return [_alert(r) for r in rows]


def count_unacked_alerts(conn: Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM alerts WHERE acked_at IS NULL").fetchone()[0]


def _alert(r) -> Alert:
    return Alert(id=r[0], device_id=r[1], device_name=r[2], kind=r[3], message=r[4], value=r[5], opened_at=r[6],
                 resolved_at=r[7], acked_at=r[8], acked_by=r[9])


# --- time series ------------------------------------------------------------------------

def list_raw(conn: Connection, device_id: int, since: float) -> list[tuple]:
    return conn.execute("SELECT ts, latency_ms, cpu, memory, disk FROM probe_samples WHERE device_id = ? AND ts >= ?"
                        " ORDER BY ts LIMIT 20000", (device_id, since)).fetchall()


def list_rollups(conn: Connection, device_id: int, width: int, since: float) -> list[tuple]:
    return conn.execute("SELECT bucket, latency_ms, cpu, memory, disk FROM probe_rollups WHERE device_id = ?"
                        " AND width = ? AND bucket >= ? ORDER BY bucket LIMIT 20000",
                        (device_id, width, since)).fetchall()


def upsert_rollups(conn: Connection, width: int, since: float, until: float) -> int:
    """(Re)compute complete buckets in [since, until) from raw samples; idempotent."""
    cur = conn.execute(
        "INSERT OR REPLACE INTO probe_rollups (device_id, width, bucket, samples, latency_ms, cpu, memory, disk, load1)"
        " SELECT device_id, ?, CAST(ts / ? AS INTEGER) * ?, COUNT(*), AVG(latency_ms), AVG(cpu), AVG(memory),"
        " AVG(disk), AVG(load1) FROM probe_samples WHERE ts >= ? AND ts < ?"
        " GROUP BY device_id, CAST(ts / ? AS INTEGER)",
        (width, width, width, since, until, width))
    return cur.rowcount


def delete_samples_before(conn: Connection, cutoff: float) -> int:
    return conn.execute("DELETE FROM probe_samples WHERE ts < ?", (cutoff,)).rowcount


def delete_rollups_before(conn: Connection, width: int, cutoff: float) -> int:
    return conn.execute("DELETE FROM probe_rollups WHERE width = ? AND bucket < ?", (width, cutoff)).rowcount


def delete_events_before(conn: Connection, cutoff: float) -> int:
    return conn.execute("DELETE FROM probe_events WHERE ts < ?", (cutoff,)).rowcount


# --- custom checks ------------------------------------------------------------------------

def list_checks(conn: Connection, device_id: int) -> list[Check]:
    rows = conn.execute("SELECT id, device_id, name, command, expect_exit, expect_regex, timeout, output_cap, last_ok,"
                        " last_message, last_run FROM probe_checks WHERE device_id = ? ORDER BY name LIMIT 50",
                        (device_id,)).fetchall()
    return [Check(id=r[0], device_id=r[1], name=r[2], command=r[3], expect_exit=r[4], expect_regex=r[5],
                  timeout=r[6], output_cap=r[7], last_ok=None if r[8] is None else bool(r[8]), last_message=r[9],
                  last_run=r[10]) for r in rows]


def count_checks(conn: Connection, device_id: int) -> int:
    return conn.execute("SELECT count(*) FROM probe_checks WHERE device_id = ?", (device_id,)).fetchone()[0]


def check_name_taken(conn: Connection, device_id: int, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM probe_checks WHERE device_id = ? AND name = ?", (device_id, name)).fetchone()
    return row is not None


def insert_check(conn: Connection, device_id: int, name: str, command: str, expect_exit: int | None,
                 expect_regex: str | None, timeout: float, output_cap: int) -> int:
    cur = conn.execute("INSERT INTO probe_checks (device_id, name, command, expect_exit, expect_regex, timeout,"
                       " output_cap) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (device_id, name, command, expect_exit, expect_regex, timeout, output_cap))
    assert cur.lastrowid is not None  # set by the INSERT just run
    return cur.lastrowid


def delete_check(conn: Connection, device_id: int, check_id: int) -> str | None:
    row = conn.execute("SELECT name FROM probe_checks WHERE id = ? AND device_id = ?", (check_id, device_id)).fetchone()
    if row:
        conn.execute("DELETE FROM probe_checks WHERE id = ?", (check_id,))
    return row[0] if row else None


def update_check_result(conn: Connection, check_id: int, ok: bool, message: str, ts: float) -> None:
    conn.execute("UPDATE probe_checks SET last_ok = ?, last_message = ?, last_run = ? WHERE id = ?",
                 (1 if ok else 0, message[:500], ts, check_id))
