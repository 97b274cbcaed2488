"""Finding 22 (issue 11): one minimum backup passphrase length (crypto/kdf.py MIN_PASSPHRASE, 12
characters) for `outpost backup`, Settings -> Backups and scheduled backups (passphrase_file).
A backup holds the database key, so a short passphrase would make an offline guess practical."""

from __future__ import annotations

import time
from pathlib import Path

from appliance.crypto import kdf
from tests.api.helpers import sql
from tests.conftest import FAST_HASH_CONFIG, Appliance, csrf_of, free_port, outpost

SHORT = "elevenchars"  # 11
EXACT = "twelve chars"  # 12


def _secret_file(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def test_the_minimum_is_twelve_characters() -> None:
    assert kdf.MIN_PASSPHRASE == 12 and len(SHORT) == 11 and len(EXACT) == 12


def test_cli_backup_refuses_a_short_passphrase(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert outpost("init", "--data-dir", str(data)).returncode == 0
    for text in ("abc", SHORT, "ünïcödé"):  # counted in characters, not bytes (ünïcödé is 11 bytes)
        out = tmp_path / "short.opbk"
        r = outpost("backup", "--data-dir", str(data), "-o", str(out),
                     "--passphrase-file", str(_secret_file(tmp_path / "pp", text)))
        assert r.returncode == 1 and "at least 12 characters" in r.stderr, r.stderr
        assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".short")]
    r = outpost("backup", "--data-dir", str(data), "-o", str(tmp_path / "ok.opbk"),
                 "--passphrase-file", str(_secret_file(tmp_path / "pp", EXACT)))
    assert r.returncode == 0, r.stderr


def test_ui_refuses_a_short_passphrase(appliance, admin_client) -> None:
    page = admin_client.get("/settings/backups")
    assert page.status_code == 200 and "At least 12 characters" in page.text
    r = admin_client.post("/settings/backups", data={"_csrf": csrf_of(page.text), "passphrase": SHORT, "confirm": SHORT,
                                                     "current_password": "correct horse battery staple 42"})
    assert r.status_code == 400 and "at least 12 characters" in r.text
    assert sql(appliance, "SELECT count(*) FROM audit_log WHERE action = 'backup.create'") == [(0,)]


def test_scheduled_backup_refuses_a_short_passphrase_file(tmp_path: Path) -> None:
    directory = tmp_path / "scheduled"
    pp = _secret_file(tmp_path / "pp", SHORT)
    config = FAST_HASH_CONFIG + f'\n[backup]\ndirectory = "{directory}"\npassphrase_file = "{pp}"\n'
    app = Appliance(tmp_path / "data", free_port(), config=config)
    try:
        deadline = time.monotonic() + 30
        rows = []
        while time.monotonic() < deadline and not rows:
            rows = sql(app, "SELECT details FROM audit_log WHERE action = 'backup.failure'")
            time.sleep(0.3)
        assert rows and "passphrase_too_short" in rows[0][0], rows
        assert not list(directory.glob("*.opbk"))
        assert "at least 12 characters" in app.output()  # the log says why, so the admin can fix the file
    finally:
        app.stop()
