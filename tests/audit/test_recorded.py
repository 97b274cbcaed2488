"""The two events that were catalogued but never recorded: store.migrate (a schema upgrade
is recorded in the migration's own transaction) and audit.verify (`outpost audit verify`
records its outcome in the log it checked)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.app import open_database
from appliance.audit import log
from appliance.crypto import keyfile
from appliance.paths import DataDir
from appliance.store import Database, MigrationError, load_migrations

ROOT = Path(__file__).resolve().parents[2]


def _rows(db, action):
    return db.read_sync(lambda c: c.execute("SELECT actor_type, actor, outcome, details FROM audit_log"
                                            " WHERE action = ? ORDER BY seq", (action,)).fetchall())


def _older_database(data: Path, *, audit_down: bool = False) -> int:
    """A data directory whose database lacks the newest migration (as after a software update)."""
    data.mkdir(mode=0o700)
    paths = DataDir(data)
    key = keyfile.create_key(paths.db_key)
    older = load_migrations()[:-1]
    db = Database.open(paths.db, key, readers=1, migrations=older)
    if audit_down:
        db.write_sync(lambda c: c.execute(
            "CREATE TRIGGER audit_down BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit down'); END"))
    db.close()
    return older[-1].version


def _schema_version(db) -> int:
    return db.read_sync(lambda c: c.execute("SELECT max(version) FROM schema_migrations").fetchone()[0])


def test_a_schema_upgrade_is_recorded_once(tmp_path):
    data = tmp_path / "data"
    old = _older_database(data)
    newest = load_migrations()[-1]
    db, _ = open_database(data, readers=1)
    try:
        rows = _rows(db, "store.migrate")
        assert len(rows) == 1, rows
        actor_type, actor, outcome, details = rows[0]
        assert (actor_type, actor, outcome) == ("system", "system", "success")
        assert json.loads(details) == {"from_version": old, "to_version": newest.version,
                                       "applied": [f"{newest.version:04d}_{newest.name}"]}
        assert db.read_sync(log.verify_chain).ok
    finally:
        db.close()
    db, _ = open_database(data, readers=1)  # nothing pending: nothing recorded
    try:
        assert len(_rows(db, "store.migrate")) == 1
    finally:
        db.close()


def test_a_new_database_is_created_not_migrated(db):
    assert _rows(db, "store.migrate") == []


def test_no_record_no_upgrade(tmp_path):
    """Fail closed: the record is written in the migration's transaction, so when it cannot be
    written the schema stays as it was."""
    data = tmp_path / "data"
    old = _older_database(data, audit_down=True)
    with pytest.raises(MigrationError):
        open_database(data, readers=1)
    paths = DataDir(data)
    db = Database.open(paths.db, keyfile.load_key(paths.db_key), readers=1, migrations=load_migrations()[:-1])
    try:
        assert _schema_version(db) == old
    finally:
        db.close()


def _cli(*args):
    flags = ["--allow-root"] if os.geteuid() == 0 else []
    return subprocess.run([sys.executable, "-m", "appliance", *args, *flags], capture_output=True, text=True, cwd=ROOT)


def test_audit_verify_records_its_outcome(tmp_path):
    data = tmp_path / "data"
    assert _cli("init", "--data-dir", str(data)).returncode == 0
    assert _cli("audit", "verify", "--data-dir", str(data)).returncode == 0
    db, _ = open_database(data, readers=1)
    try:
        rows = _rows(db, "audit.verify")
        assert len(rows) == 1 and rows[0][:3] == ("system", f"cli:{_user()}", "success"), rows
        db.write_sync(lambda c: c.execute("UPDATE audit_log SET target = 'forged' WHERE seq = 1"))
    finally:
        db.close()
    broken = _cli("audit", "verify", "--data-dir", str(data))
    assert broken.returncode == 1 and "record 1" in broken.stderr
    db, _ = open_database(data, readers=1)
    try:
        rows = _rows(db, "audit.verify")
        assert len(rows) == 2 and rows[1][2] == "failure"
        assert json.loads(rows[1][3]) == {"checked": 0, "first_bad": 1,
                                          "reason": "record 1 was modified after it was written"}
    finally:
        db.close()


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
