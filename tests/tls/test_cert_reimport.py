"""Finding 23 (issue 11), on a running appliance:
- importing the identical certificate twice is a no-op that says so, and "Roll back" still
  restores the certificate in use BEFORE it (the real previous one is not lost);
- `outpost cert import` / `rollback` run against the data directory of a running server are
  served to new connections within seconds (they took ~4.5 minutes: the 5-minute maintenance)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.conftest import csrf_of, outpost

from .conftest import openssl_path, served_fingerprint
from .customer_pki import PKI

PICKUP_SECONDS = 10.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    p = PKI(openssl_path(), tmp_path_factory.mktemp("pki"))
    p.leaf("good", san="DNS:localhost,IP:127.0.0.1")
    p.pkcs12("good", "p12 password")
    return p


def _import_ui(client, pki: PKI):
    page = client.get("/settings/certificates")
    return client.post("/settings/certificates/import", data={"_csrf": csrf_of(page.text)},
                       files={"cert": ("c.pem", pki.chain("good").read_bytes()),
                              "key": ("k.pem", (pki.dir / "good.key").read_bytes())})


def _served_within(port: int, fingerprint: str, seconds: float = PICKUP_SECONDS) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if served_fingerprint(port) == fingerprint:
            return time.monotonic() - start
        time.sleep(0.25)
    raise AssertionError(f"not served within {seconds} s; still {served_fingerprint(port)}")


def test_identical_reimport_keeps_the_real_previous_ui(appliance, admin_client, pki: PKI) -> None:
    app, client = appliance, admin_client
    generated = served_fingerprint(app.port)
    r = _import_ui(client, pki)
    assert r.status_code == 200 and "installed" in r.text
    imported = served_fingerprint(app.port)
    assert imported != generated
    again = _import_ui(client, pki)
    assert again.status_code == 200 and "already in use; nothing changed" in again.text
    assert "the generated certificate" in again.text  # what rollback restores, still
    page = client.get("/settings/certificates")
    r = client.post("/settings/certificates/rollback", data={"_csrf": csrf_of(page.text)})
    assert r.status_code == 200 and "Rolled back" in r.text
    assert served_fingerprint(app.port) == generated, "rollback lost the real previous certificate"


def test_cli_import_reaches_a_running_server_within_seconds(appliance, admin_client, pki: PKI, tmp_path: Path) -> None:
    app = appliance
    generated = served_fingerprint(app.port)
    common = ["--data-dir", str(app.data_dir), "--config", str(app.config_path)]
    pw = tmp_path / "pw"
    pw.write_text("p12 password\n")
    pw.chmod(0o600)
    r = outpost("cert", "import", *common, "--p12", str(pki.dir / "good.p12"), "--password-file", str(pw))
    assert r.returncode == 0, r.stderr
    imported = re.search(r"fingerprint:\s+(\S+)", r.stdout).group(1)
    assert imported != generated
    _served_within(app.port, imported)

    # the same file again: a no-op that says so, and rollback still goes back to the generated one
    r = outpost("cert", "import", *common, "--p12", str(pki.dir / "good.p12"), "--password-file", str(pw))
    assert r.returncode == 0 and "already in use; nothing changed" in r.stderr, r.stderr
    assert "rollback to:  generated" in r.stdout
    r = outpost("cert", "rollback", *common)
    assert r.returncode == 0 and "source:       generated" in r.stdout, r.stderr
    _served_within(app.port, generated)
