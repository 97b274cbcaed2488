"""PLAT-3/PLAT-5: the command line, its help, and its refusals with clear errors."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FAST_HASH_CONFIG, free_port

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = [["serve"], ["init"], ["check-config"], ["audit"], ["audit", "verify"], ["audit", "export"], ["version"],
            ["update"], ["run-slot"], ["allowlist"], ["reset-admin"], ["cert"], ["backup"], ["restore"], ["rekey"]]


def outpost(*args, env=None, timeout=60, user=None):
    cmd = [sys.executable, "-m", "appliance", *args]
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def root_flag():
    return ["--allow-root"] if os.geteuid() == 0 else []


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help(command):
    r = outpost(*command, "--help")
    assert r.returncode == 0 and "usage: outpost" in r.stdout


def test_version():
    r = outpost("version")
    assert r.returncode == 0 and r.stdout.startswith("outpost ")


def test_refuses_root_without_allow_root(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to show the refusal")
    r = outpost("init", "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 1 and "refusing to run as root" in r.stderr
    assert not (tmp_path / "d").exists()


def _init(data_dir: Path):
    r = outpost("init", "--data-dir", str(data_dir), *root_flag())
    assert r.returncode == 0, r.stderr
    return r


def test_init_creates_private_data_dir(tmp_path):
    data = tmp_path / "d"
    r = _init(data)
    assert "SHA-256" in r.stderr and "setup-code" in r.stderr
    assert oct(data.stat().st_mode & 0o777) == "0o700"
    for secret in ("keys/db.key", "setup-code", "outpost.db"):
        assert oct((data / secret).stat().st_mode & 0o777) == "0o600", secret
    assert (data / "outpost.db").read_bytes()[:16] != b"SQLite format 3\x00"


def test_wrong_key_is_a_clear_error(tmp_path):
    data = tmp_path / "d"
    _init(data)
    key = data / "keys" / "db.key"
    original = key.read_bytes()
    key.write_bytes(("ab" * 32 + "\n").encode() if len(original) != 32 else os.urandom(32))
    r = outpost("audit", "verify", "--data-dir", str(data), *root_flag())
    assert r.returncode == 1 and "key" in r.stderr.lower() and "Traceback" not in r.stderr


def test_missing_key_file_is_a_clear_error(tmp_path):
    data = tmp_path / "d"
    _init(data)
    (data / "keys" / "db.key").unlink()
    r = outpost("init", "--data-dir", str(data), *root_flag())
    assert r.returncode == 1 and "missing" in r.stderr and "Traceback" not in r.stderr
    assert not (data / "keys" / "db.key").exists(), "a new key must never be made for an existing database"


def test_corrupt_database_is_a_clear_error(tmp_path):
    data = tmp_path / "d"
    _init(data)
    db = data / "outpost.db"
    blob = bytearray(db.read_bytes())
    for i in range(4096 + 100, min(len(blob), 4096 + 1100)):
        blob[i] ^= 0xFF
    db.write_bytes(bytes(blob))
    r = outpost("init", "--data-dir", str(data), *root_flag())
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "damaged" in r.stderr or "corrupt" in r.stderr or "key" in r.stderr


def test_unwritable_data_dir(tmp_path):
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root and runuser to act as an unprivileged user")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)
    r = outpost("init", "--data-dir", str(locked / "data"), user="nobody",
                env={"PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 1 and "not writable" in r.stderr, r.stderr


def test_data_dir_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    r = outpost("init", "--data-dir", str(tmp_path / "file" / "data"), *root_flag())
    assert r.returncode == 1 and "cannot be used" in r.stderr


def test_port_in_use(tmp_path):
    port = free_port()
    (tmp_path / "c.toml").write_text(FAST_HASH_CONFIG)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        r = outpost("serve", "--config", str(tmp_path / "c.toml"), "--data-dir", str(tmp_path / "d"),
                    "--listen", f"127.0.0.1:{port}", *root_flag())
    assert r.returncode == 1 and "already in use" in r.stderr, r.stderr


def test_bad_listen_option(tmp_path):
    r = outpost("serve", "--data-dir", str(tmp_path / "d"), "--listen", "nonsense", *root_flag())
    assert r.returncode == 1 and "HOST:PORT" in r.stderr


def test_unknown_config_key_refuses_serve(tmp_path):
    (tmp_path / "c.toml").write_text("[web]\nlisten_prot = 1\n")
    r = outpost("serve", "--config", str(tmp_path / "c.toml"), "--data-dir", str(tmp_path / "d"), *root_flag())
    assert r.returncode == 1 and "listen_prot" in r.stderr and "web" in r.stderr
    assert not (tmp_path / "d").exists()


def test_write_probe_does_not_follow_a_planted_symlink(tmp_path):
    """Finding 15: a symlink named .write-test in the data directory must not make init or serve
    create, truncate or write its target (the probe uses a fresh name with O_EXCL|O_NOFOLLOW)."""
    from tests.conftest import Appliance

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    missing = tmp_path / "would-be-created"
    for data, target in ((tmp_path / "d1", victim), (tmp_path / "d2", missing)):
        data.mkdir(mode=0o700)
        (data / ".write-test").symlink_to(target)
        _init(data)
        assert victim.read_text() == "precious\n" and not missing.exists()
        assert (data / ".write-test").is_symlink(), "someone else's link is left alone"
        assert not [p for p in data.iterdir() if p.name.startswith(".write-test") and not p.is_symlink()]
    data = tmp_path / "d3"
    data.mkdir(mode=0o700)
    (data / ".write-test").symlink_to(victim)
    app = Appliance(data, free_port())
    try:
        assert victim.read_text() == "precious\n"
    finally:
        app.stop()


def _mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


def test_cli_files_are_private_and_the_actor_is_the_real_user(tmp_path):
    """Finding 16: every file the CLI writes is 0600 even under a permissive umask (also when it
    replaces an existing 0644 file), and the audit actor is the real uid's name from the
    password database, never $USER (which anyone can set, here to a spreadsheet formula)."""
    import json
    import pwd

    data = tmp_path / "d"
    _init(data)
    spoof = {"USER": '=HYPERLINK("http://evil.example","x")', "LOGNAME": "mallory"}

    def run(*args):
        cmd = [sys.executable, "-m", "appliance", *args, "--data-dir", str(data), *root_flag()]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120, umask=0o022,
                           env={**os.environ, "PYTHONPATH": str(ROOT), **spoof})
        assert r.returncode == 0, r.stderr
        return r

    export = tmp_path / "audit.csv"
    run("audit", "export", "-o", str(export))
    assert _mode(export) == "0o600"
    stale = tmp_path / "old-export.jsonl"
    stale.write_text("old\n")
    stale.chmod(0o644)
    run("audit", "export", "--format", "jsonl", "-o", str(stale))
    assert _mode(stale) == "0o600" and stale.read_text() != "old\n"
    pp = tmp_path / "pp"
    pp.write_text("a long enough backup passphrase\n")
    pp.chmod(0o600)
    backup_file = tmp_path / "b.opbk"
    run("backup", "-o", str(backup_file), "--passphrase-file", str(pp))
    assert _mode(backup_file) == "0o600"
    run("allowlist", "reset")

    me = f"cli:{pwd.getpwuid(os.getuid()).pw_name}"
    run("audit", "export", "--format", "jsonl", "-o", str(stale))
    records = [json.loads(line) for line in stale.read_text().splitlines()]
    by_cli = {r["action"]: r["actor"] for r in records if r["actor_type"] == "system" and r["actor"] != "system"}
    assert by_cli == {"audit.export": me, "backup.create": me, "access.allowlist.reset": me}, by_cli
    assert "HYPERLINK" not in stale.read_text() and "mallory" not in stale.read_text()
