"""AUTH-5: `outpost reset-admin` recovers admin access locally, needs the key file, is audited."""

import asyncio
import os
import pwd
import re
import subprocess
import sys

import pytest

from appliance.access.apikeys import ApiKeyService, InvalidApiKeyError
from appliance.app import load_or_create_key, open_database
from appliance.audit.models import Actor
from appliance.auth import permissions
from appliance.clock import SystemClock
from appliance.config import AccessConfig
from appliance.paths import DataDir
from tests.conftest import FAST_HASH_CONFIG, ROOT

ME = f"cli:{pwd.getpwuid(os.getuid()).pw_name}"  # every CLI command's audit actor


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
    assert len(rows) == 2 and all(tuple(r[:3]) == ("system", ME, "local") for r in rows)
    assert password not in " ".join(r[3] for r in rows) and must_change == 1


def test_reset_admin_without_the_key_file_is_refused(tmp_path):
    db, _ = open_database(tmp_path / "data", readers=1)
    db.close()
    (tmp_path / "data" / "keys" / "db.key").unlink()
    result = _cli(tmp_path)
    assert result.returncode != 0 and "Temporary password" not in result.stdout
    assert "key" in (result.stderr + result.stdout).lower()


def test_reset_admin_revokes_the_admins_api_keys(tmp_path):
    """Issue 11 finding 12 on the CLI path: the keys were minted on the strength of the old
    password, so `outpost reset-admin` ends them with it (audited), as an admin reset does."""
    db, _ = open_database(tmp_path / "data", readers=1)
    db.close()
    assert _cli(tmp_path).returncode == 0  # creates the admin
    db, _ = open_database(tmp_path / "data", readers=1)
    keys = ApiKeyService(db, AccessConfig(), SystemClock(), load_or_create_key(DataDir(tmp_path / "data").apikey_key),
                         grantable=permissions.covers)
    try:
        issued = asyncio.run(keys.create(owner_id=1, name="backup script", role="admin", days=30, caller_role="admin",
                                         actor=Actor(type="system", name="test", source="local")))
        asyncio.run(keys.authenticate(issued.plaintext, "127.0.0.1"))  # works before the reset
    finally:
        db.close()
    result = _cli(tmp_path)
    assert result.returncode == 0, result.stderr
    db, _ = open_database(tmp_path / "data", readers=1)
    keys.db = db
    try:
        with pytest.raises(InvalidApiKeyError) as refused:
            asyncio.run(keys.authenticate(issued.plaintext, "127.0.0.1"))
        revocations = db.read_sync(lambda c: c.execute(
            "SELECT actor, details FROM audit_log WHERE action = 'apikey.revoke'").fetchall())
    finally:
        db.close()
    assert refused.value.reason == "revoked"
    assert len(revocations) == 1 and revocations[0][0] == ME and "reset-admin" in revocations[0][1]
