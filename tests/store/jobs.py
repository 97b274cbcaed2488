"""Write and read jobs shared by the store tests (plain functions of a connection)."""

from __future__ import annotations

import hashlib
import json
import time


def insert_setting(name: str, value: str = "v"):
    """A write job: one row in the real `settings` table."""
    return lambda conn: conn.execute("INSERT INTO settings (key, value) VALUES (?, ?)", (name, value)).rowcount


def setting_names(conn) -> set[str]:
    return {row["key"] for row in conn.execute("SELECT key FROM settings")}


def audited_change(name: str, value: str):
    """A write job shaped like a real audited change: the change plus a hash-chained audit row."""

    def job(conn) -> int:
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (name, value),
        )
        last = conn.execute("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        prev = last["hash"] if last else bytes(32)
        ts = time.time()
        details = json.dumps({"key": name}, separators=(",", ":"))
        content = json.dumps(["settings.update", "admin", "127.0.0.1", name, "success", details, ts]).encode()
        digest = hashlib.sha256(prev + content).digest()
        return conn.execute(
            "INSERT INTO audit_log (ts, code, action, actor_type, actor, source, target, outcome, details,"
            " prev_hash, hash) VALUES (?, 'S100', 'settings.update', 'user', 'admin', '127.0.0.1', ?, 'success', ?, ?, ?)",
            (ts, name, details, prev, digest),
        ).lastrowid

    return job
