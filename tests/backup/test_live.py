"""UPD-5 end to end: back up a running appliance (UI with progress polling, and CLI), restore
into a fresh data directory, start a server on it and find everything (old admin signs in,
audit chain verifies). A bad restore changes nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import ADMIN_PASSWORD, Appliance, csrf_of, do_login, do_setup, free_port, outpost


def test_backup_restore_round_trip(tmp_path: Path) -> None:
    app = Appliance(tmp_path / "data", free_port())
    try:
        with app.client() as client:
            assert do_setup(client, app.setup_code()).status_code == 303
            assert do_login(client).status_code == 303
            page = client.get("/settings/backups")
            assert page.status_code == 200
            short = client.post("/settings/backups", data={"_csrf": csrf_of(page.text), "passphrase": "short",
                                                           "confirm": "short", "current_password": ADMIN_PASSWORD})
            assert short.status_code == 400 and "at least 12" in short.text
            r = client.post("/settings/backups", data={"_csrf": csrf_of(page.text), "passphrase": "ui backup passphrase",
                                                       "confirm": "ui backup passphrase",
                                                       "current_password": ADMIN_PASSWORD}, follow_redirects=False)
            assert r.status_code == 303
            job = r.headers["location"]
            deadline = time.monotonic() + 30
            while True:
                status = client.get(job + "/status")
                if "Backup written" in status.text or time.monotonic() > deadline:
                    break
                assert 'hx-trigger="every 1s"' in status.text  # progress polling while it runs
                time.sleep(0.2)
            assert "Backup written" in status.text, status.text
            href = status.text.split('href="', 1)[1].split('"', 1)[0]
            download = client.get(href)
            assert download.status_code == 200 and download.content[:8] == b"OUTPOSTB"
        ui_file = tmp_path / "ui.opbk"
        ui_file.write_bytes(download.content)

        # CLI backup while the server runs
        pp = tmp_path / "pp"
        pp.write_text("cli backup passphrase\n")
        pp.chmod(0o600)
        cli_file = tmp_path / "cli.opbk"
        r = outpost("backup", "--data-dir", str(app.data_dir), "--output", str(cli_file), "--passphrase-file", str(pp))
        assert r.returncode == 0, r.stderr
        # restore and rekey refuse to touch the data directory of a running server
        r = outpost("restore", str(cli_file), "--data-dir", str(app.data_dir), "--passphrase-file", str(pp))
        assert r.returncode == 1 and "stop the server first" in r.stderr
        r = outpost("rekey", "--data-dir", str(app.data_dir))
        assert r.returncode == 1 and "stop the server first" in r.stderr
    finally:
        app.stop()

    # a wrong passphrase is refused and the target stays absent
    fresh = tmp_path / "restored" / "data"
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    wrong.chmod(0o600)
    r = outpost("restore", str(cli_file), "--data-dir", str(fresh), "--passphrase-file", str(wrong))
    assert r.returncode == 1 and "passphrase is wrong" in r.stderr
    assert not fresh.exists() and list((tmp_path / "restored").iterdir()) == []

    ui_pp = tmp_path / "uipp"
    ui_pp.write_text("ui backup passphrase")
    ui_pp.chmod(0o600)
    r = outpost("restore", str(ui_file), "--data-dir", str(tmp_path / "from-ui"), "--passphrase-file", str(ui_pp))
    assert r.returncode == 0, r.stderr
    r = outpost("restore", str(cli_file), "--data-dir", str(fresh), "--passphrase-file", str(pp))
    assert r.returncode == 0, r.stderr

    restored = Appliance(fresh, free_port())
    try:
        assert not (fresh / "setup-code").exists()  # setup was done before the backup
        with restored.client() as client:
            assert do_login(client).status_code == 303  # the old admin, the old password
            audit = client.get("/audit", params={"action": "backup.create"})
            assert "backup.create" in audit.text
    finally:
        restored.stop()
    r = outpost("audit", "verify", "--data-dir", str(fresh))
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stderr
