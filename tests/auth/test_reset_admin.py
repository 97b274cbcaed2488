"""AUTH-5: `outpost reset-admin` recovers admin access locally, needs the key file, is audited."""

import os
import re
import subprocess
import sys

from appliance.app import open_database
from tests.conftest import FAST_HASH_CONFIG, ROOT


def _cli(tmp_path, *args):
    config = tmp_path / "config.toml"
    config.write_text(FAST_HASH_CONFIG)
    cmd = [sys.executable, "-m", "appliance", "reset-admin", "--config", str(config), "--data-dir",
           str(tmp_path / "data"), *args]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_reset_admin_creates_then_resets_and_is_audited(tmp_path):
    db, _ = open_database(tmp_path / "data", readers=1)
    db.close()
    first = _cli(tmp_path)
    assert first.returncode == 0, first.stderr
    password = re.search(r"Temporary password .*: (\S+)", first.stdout).group(1)
    assert "Admin account: admin" in first.stdout and len(password) >= 15
    again = _cli(tmp_path, "--username", "admin")
    assert again.returncode == 0 and password not in again.stdout
    db, _ = open_database(tmp_path / "data", readers=1)
    try:
        rows = db.read_sync(lambda c: c.execute(
            "SELECT actor_type, actor, source, details FROM audit_log WHERE action = 'user.admin.recover'").fetchall())
        must_change = db.read_sync(lambda c: c.execute("SELECT must_change_password FROM users").fetchone()[0])
    finally:
        db.close()
    assert len(rows) == 2 and all(tuple(r[:3]) == ("system", "cli", "local") for r in rows)
    assert password not in " ".join(r[3] for r in rows) and must_change == 1


def test_reset_admin_without_the_key_file_is_refused(tmp_path):
    db, _ = open_database(tmp_path / "data", readers=1)
    db.close()
    (tmp_path / "data" / "keys" / "db.key").unlink()
    result = _cli(tmp_path)
    assert result.returncode != 0 and "Temporary password" not in result.stdout
    assert "key" in (result.stderr + result.stdout).lower()
