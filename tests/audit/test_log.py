"""AUDIT-1..4: catalogue, hash chain, tamper detection, fail-closed writes, CSV export."""

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.app import open_database
from appliance.audit import export, log
from appliance.audit.events import Event
from appliance.audit.models import Actor, AuditFilter
from appliance.store import StoreError
from tests.conftest import csrf_of, do_login

ROOT = Path(__file__).resolve().parents[2]
ACTOR = Actor(type="user", name="alice", source="127.0.0.1")


def _fill(db, n, target="t"):
    def job(conn):
        for i in range(n):
            log.record(conn, ts=1_800_000_000.0 + i, event=Event.AUTH_LOGIN_SUCCESS, actor=ACTOR, target=f"{target}{i}")
    db.write_sync(job)


def test_chain_verifies_and_names_the_first_tampered_record(db):
    _fill(db, 50)
    assert log.verify_chain.__name__ and db.read_sync(log.verify_chain).ok
    db.write_sync(lambda c: c.execute("UPDATE audit_log SET target = 'forged' WHERE seq = 17"))
    report = db.read_sync(log.verify_chain)
    assert not report.ok and report.first_bad == 17 and "modified" in report.reason and report.checked == 16


def test_deleted_record_is_detected(db):
    _fill(db, 10)
    db.write_sync(lambda c: c.execute("DELETE FROM audit_log WHERE seq = 4"))
    report = db.read_sync(log.verify_chain)
    assert not report.ok and report.first_bad == 5 and "missing" in report.reason


def test_purge_keeps_a_checkpoint_so_the_rest_verifies(db):
    _fill(db, 30)
    deleted = db.write_sync(lambda c: log.purge_before(c, cutoff=1_800_000_010.0, ts=1_900_000_000.0))
    assert deleted == 10
    report = db.read_sync(log.verify_chain)
    assert report.ok and report.checked == 21  # 20 kept + the purge record itself


def test_secret_looking_details_are_refused(db):
    with pytest.raises(ValueError):
        db.write_sync(lambda c: log.record(c, Event.AUTH_LOGIN_FAILURE, ts=1.0, actor=ACTOR, details={"password": "x"}))
    assert db.read_sync(lambda c: c.execute("SELECT count(*) FROM audit_log").fetchone()[0]) == 0


def test_audit_failure_refuses_the_change(db):
    """AUDIT-2: the change and its record commit together or not at all."""
    db.write_sync(lambda c: c.execute(
        "CREATE TRIGGER audit_down BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END"))

    def change_with_audit(conn):
        conn.execute("INSERT INTO settings (key, value) VALUES ('x', 'y')")
        log.record(conn, ts=1.0, event=Event.AUTH_LOGIN_SUCCESS, actor=ACTOR)

    with pytest.raises(StoreError):
        db.write_sync(change_with_audit)
    assert db.read_sync(lambda c: c.execute("SELECT count(*) FROM settings").fetchone()[0]) == 0


def test_csv_neutralises_formulas(db):
    nasty = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]

    def job(conn):
        for i, value in enumerate(nasty):
            who = Actor(type="anonymous", name=value, source="::1")
            log.record(conn, Event.AUTH_LOGIN_FAILURE, ts=1.0 + i, actor=who, target=value, outcome="failure")
    db.write_sync(job)
    with db.reader() as conn:
        data = b"".join(export.csv_chunks(conn, AuditFilter())).decode()
    rows = list(csv.reader(io.StringIO(data)))
    assert rows[0] == export.HEADER
    for row, value in zip(rows[1:], nasty, strict=True):
        assert row[5] == "'" + value and row[7] == "'" + value
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row)


def test_jsonl_export_is_one_object_per_line(db):
    _fill(db, 3)
    with db.reader() as conn:
        lines = b"".join(export.jsonl_chunks(conn, AuditFilter(actor="alice"))).splitlines()
    assert len(lines) == 3 and all(line.startswith(b'{"seq":') for line in lines)


def _cli(*args):
    flags = ["--allow-root"] if os.geteuid() == 0 else []
    return subprocess.run([sys.executable, "-m", "appliance", *args, *flags], capture_output=True, text=True, cwd=ROOT)


def test_cli_verify_names_the_edited_row_and_export_is_audited(tmp_path):
    data = tmp_path / "data"
    assert _cli("init", "--data-dir", str(data)).returncode == 0
    database, _ = open_database(data, readers=1)
    _fill(database, 20)
    database.close()
    ok = _cli("audit", "verify", "--data-dir", str(data))
    assert ok.returncode == 0 and "ok" in ok.stdout
    out = tmp_path / "audit.csv"
    exported = _cli("audit", "export", "--data-dir", str(data), "--output", str(out), "--action", "auth")
    assert exported.returncode == 0 and out.read_text().count("\n") == 21
    database, _ = open_database(data, readers=1)
    target = database.read_sync(lambda c: c.execute("SELECT seq FROM audit_log WHERE target = 't7'").fetchone()[0])
    exports = "SELECT count(*) FROM audit_log WHERE action = 'audit.export'"
    assert database.read_sync(lambda c: c.execute(exports).fetchone()[0]) == 1
    database.write_sync(lambda c: c.execute("UPDATE audit_log SET outcome = 'failure' WHERE seq = ?", (target,)))
    database.close()
    bad = _cli("audit", "verify", "--data-dir", str(data))
    assert bad.returncode == 1 and f"record {target}" in bad.stderr
    bad_filter = _cli("audit", "export", "--data-dir", str(data), "--since", "yesterday")
    assert bad_filter.returncode == 1 and "--since" in bad_filter.stderr


def test_ui_export_neutralises_and_is_audited(shared_appliance, shared_admin_client):
    with shared_appliance.client() as anon:
        do_login(anon, username="=cmd|' /C calc'!A0", password="whatever-wrong-password")
    r = shared_admin_client.get("/audit/export.csv", params={"action": "auth.login.failure"})
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.text)))
    assert any(row[5] == "'=cmd|' /C calc'!A0" for row in rows[1:])
    page = shared_admin_client.get("/audit", params={"action": "audit.export"})
    assert "audit.export" in page.text and "AUD001" in page.text


def test_ui_filter_errors_are_inline(shared_admin_client):
    r = shared_admin_client.get("/audit", params={"since": "not a date", "outcome": "maybe"})
    assert r.status_code == 400
    assert 'id="e-since"' in r.text and "Choose success" in r.text
    assert shared_admin_client.get("/audit/export.csv", params={"until": "garbage"}).status_code == 400


def test_login_refused_when_audit_cannot_be_written(shared_appliance, shared_admin_client):
    """AUDIT-2 end to end: with the audit table refusing inserts, a login creates no session."""
    database, _ = open_database(shared_appliance.data_dir, readers=1)
    try:
        database.write_sync(lambda c: c.execute(
            "CREATE TRIGGER audit_down BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END"))
        before = database.read_sync(lambda c: c.execute("SELECT count(*) FROM sessions").fetchone()[0])
        with shared_appliance.client() as other:
            r = do_login(other)
            assert r.status_code >= 400 and "__Host-outpost=" not in r.headers.get("set-cookie", "")
            assert other.get("/dashboard").status_code == 303
        after = database.read_sync(lambda c: c.execute("SELECT count(*) FROM sessions").fetchone()[0])
        assert after == before
    finally:
        database.write_sync(lambda c: c.execute("DROP TRIGGER IF EXISTS audit_down"))
        database.close()
    dash = shared_admin_client.get("/dashboard")
    assert dash.status_code == 200 and csrf_of(dash.text)


def test_retention_purge_through_services(tmp_path):
    import asyncio

    from appliance import app as app_mod
    from appliance import config
    from appliance.clock import FrozenClock

    clock = FrozenClock()
    services = app_mod.build(config.with_data_dir(config.Config(), str(tmp_path / "d")), clock)
    try:
        before = services.db.read_sync(lambda c: c.execute("SELECT count(*) FROM audit_log").fetchone()[0])
        assert before >= 2  # certificate generation at first start
        clock.advance(401 * 86400)
        assert asyncio.run(services.purge_audit()) == before
        report = services.db.read_sync(log.verify_chain)
        assert report.ok and report.checked == 1  # only the purge record remains
    finally:
        services.close()
