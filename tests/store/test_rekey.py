"""STORE-2: key sources and crash-safe `outpost rekey`.

The crash test runs the rotation in a subprocess and SIGKILLs it after random short
delays (bounded: ITERATIONS runs), then opens the directory: it must open with the old
or the new key, finish or discard the rotation, and hold every row.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.app import open_database, rekey_database
from appliance.clock import SystemClock
from appliance.config import TLSConfig
from appliance.crypto import keyfile
from appliance.crypto.kdf import WrongPassphraseError
from appliance.paths import DataDir
from appliance.store import Database, WrongKeyError
from appliance.store.keys import KeySourceError
from appliance.tls import TLSManager
from appliance.tls.rekey import key_password

ROOT = Path(__file__).resolve().parents[2]
ROWS = 20_000
ITERATIONS = 14


def _make(data: Path, rows: int = ROWS, *, source: str = "file", passphrase=None) -> None:
    data.mkdir(mode=0o700, parents=True)
    db, key = open_database(data, 1, key_source=source, passphrase=passphrase)
    try:
        db.write_sync(lambda c: c.executemany("INSERT INTO settings (key, value) VALUES (?, ?)",
                                              [(f"row{i}", "x" * 180) for i in range(rows)]))
    finally:
        db.close()
    tls = TLSManager(data / "tls", TLSConfig(), "outpost.test", SystemClock(), key_password(key),
                     audit=lambda *a, **k: None)
    tls.ensure()


def _check(data: Path, rows: int = ROWS, *, source: str = "file", passphrase=None) -> bytes:
    db, key = open_database(data, 1, key_source=source, passphrase=passphrase)
    try:
        n = db.read_sync(lambda c: c.execute("SELECT count(*) FROM settings WHERE key LIKE 'row%'").fetchone()[0])
    finally:
        db.close()
    assert n == rows
    assert not DataDir(data).db_key_new.exists()
    tls = TLSManager(data / "tls", TLSConfig(), "outpost.test", SystemClock(), key_password(key),
                     audit=lambda *a, **k: None)
    assert tls.ensure() == []  # the CA and leaf keys open with the (new) key's password: nothing regenerated
    return key


def test_rekey_rotates_key_tls_keys_and_drops_old_snapshots(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _make(data, 100)
    old = keyfile.load_key(DataDir(data).db_key)
    (data / "outpost.db.pre-0004").write_bytes(b"old snapshot under the old key")
    facts = rekey_database(data, passphrase=None, new_source="file", new_passphrase=None)
    assert facts == {"old_source": "file", "new_source": "file", "snapshots_removed": 1}
    new = _check(data, 100)
    assert new != old
    with pytest.raises(WrongKeyError):
        Database.open(data / "outpost.db", old, readers=1)
    assert not list(data.glob("outpost.db.pre-*"))


def test_passphrase_source_conversion_both_ways(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _make(data, 10)
    secret = b"a long store passphrase"
    rekey_database(data, passphrase=None, new_source="passphrase", new_passphrase=lambda: secret)
    assert keyfile.is_wrapped(DataDir(data).db_key)
    assert secret not in DataDir(data).db_key.read_bytes()
    _check(data, 10, source="passphrase", passphrase=lambda: secret)
    with pytest.raises(WrongPassphraseError):
        open_database(data, 1, key_source="passphrase", passphrase=lambda: b"wrong passphrase")
    with pytest.raises(KeySourceError, match="key_source"):
        open_database(data, 1, key_source="file", passphrase=None)
    rekey_database(data, passphrase=lambda: secret, new_source="file", new_passphrase=None)
    assert not keyfile.is_wrapped(DataDir(data).db_key)
    _check(data, 10)
    with pytest.raises(KeySourceError, match="rekey --key-source passphrase"):
        open_database(data, 1, key_source="passphrase", passphrase=lambda: secret)


def test_cli_passphrase_source_and_systemd_credential(tmp_path: Path) -> None:
    """`outpost rekey --key-source passphrase`, then the CLI unlocks via $CREDENTIALS_DIRECTORY."""
    data = tmp_path / "data"
    _make(data, 5)
    new = tmp_path / "new-pass"
    new.write_text("credential passphrase 123\n")
    new.chmod(0o600)
    root = ["--allow-root"] if os.geteuid() == 0 else []
    run = lambda *a, env=None: subprocess.run([sys.executable, "-m", "appliance", *a, *root], cwd=ROOT,  # noqa: E731
                                              capture_output=True, text=True, timeout=60, env=env,
                                              stdin=subprocess.DEVNULL)
    r = run("rekey", "--data-dir", str(data), "--key-source", "passphrase", "--new-passphrase-file", str(new))
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / "c.toml"
    cfg.write_text('[store]\nkey_source = "passphrase"\n')
    r = run("audit", "verify", "--data-dir", str(data), "--config", str(cfg), env={**os.environ, "CREDENTIALS_DIRECTORY": ""})
    assert r.returncode == 1 and "systemd credential outpost-passphrase" in r.stderr
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "outpost-passphrase").write_text("credential passphrase 123\n")
    r = run("audit", "verify", "--data-dir", str(data), "--config", str(cfg),
            env={**os.environ, "CREDENTIALS_DIRECTORY": str(creds)})
    assert r.returncode == 0 and "store.rekey" not in r.stderr, r.stderr
    (creds / "outpost-passphrase").write_text("wrong passphrase\n")
    r = run("audit", "verify", "--data-dir", str(data), "--config", str(cfg),
            env={**os.environ, "CREDENTIALS_DIRECTORY": str(creds)})
    assert r.returncode == 1 and "passphrase is wrong" in r.stderr


def test_kill_9_during_rekey_leaves_a_database_that_opens(tmp_path: Path) -> None:
    template = tmp_path / "template"
    _make(template)
    rng = random.Random(1234)
    outcomes = {"old": 0, "new": 0, "finished": 0}
    window = 0.25  # refined after the first uninterrupted run
    deadline = time.monotonic() + 45
    for i in range(ITERATIONS):
        if time.monotonic() > deadline:
            break
        data = tmp_path / f"run{i}"
        shutil.copytree(template, data)
        old = keyfile.load_key(DataDir(data).db_key)
        proc = subprocess.Popen([sys.executable, str(ROOT / "tests/store/rekey_worker.py"), str(data)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            if i == 0:
                line = proc.stdout.readline().strip()
                assert line.startswith("done"), line
                window = max(0.02, float(line.split()[1]) * 1.1)
            else:
                time.sleep(rng.uniform(0, window))
                proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
        finished = proc.returncode == 0
        pending = DataDir(data).db_key_new.exists()
        key = _check(data)
        if finished:
            outcomes["finished"] += 1
        else:
            outcomes["old" if key == old else "new"] += 1
        assert finished or proc.returncode == -signal.SIGKILL
        assert pending or key == keyfile.load_key(DataDir(data).db_key)
        shutil.rmtree(data)
    print(f"rekey kill -9 outcomes: {outcomes}, window {window:.3f}s")
    assert outcomes["old"] + outcomes["new"] >= ITERATIONS // 2


def test_serve_with_passphrase_source_from_systemd_credential(tmp_path: Path) -> None:
    from tests.conftest import FAST_HASH_CONFIG, Appliance, free_port

    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "outpost-passphrase").write_text("serve passphrase 12345\n")
    env = {**os.environ, "CREDENTIALS_DIRECTORY": str(creds)}
    app = Appliance(tmp_path / "data", free_port(), config=FAST_HASH_CONFIG + '\n[store]\nkey_source = "passphrase"\n',
                    env=env)
    try:
        assert keyfile.is_wrapped(DataDir(tmp_path / "data").db_key)
        assert b"serve passphrase" not in DataDir(tmp_path / "data").db_key.read_bytes()
    finally:
        app.stop()
    assert "serve passphrase" not in app.output()
