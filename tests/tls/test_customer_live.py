"""TLS-2 on a running appliance: import through the UI, hot swap, rollback; and the CLI.

A NEW TLS connection sees the imported certificate at once while a keep-alive
connection opened before keeps working; rollback restores the previous fingerprint.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import csrf_of, outpost

from .conftest import LIVE_CONFIG, openssl_path, served_fingerprint
from .customer_pki import PKI

@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    p = PKI(openssl_path(), tmp_path_factory.mktemp("pki"))
    p.leaf("good", san="DNS:localhost,IP:127.0.0.1")
    p.leaf("wrongsan", san="DNS:elsewhere.example")
    p.encrypt_key("good", "key password")
    p.pkcs12("good", "p12 password")
    return p


def _post_files(client, path: str, files: dict, data: dict | None = None):
    page = client.get("/settings/certificates")
    return client.post(path, data={"_csrf": csrf_of(page.text), **(data or {})}, files=files)


def test_ui_import_hot_swap_and_rollback(shared_appliance, shared_admin_client, pki: PKI) -> None:
    app, client = shared_appliance, shared_admin_client
    generated = served_fingerprint(app.port)
    page = client.get("/settings/certificates")
    assert page.status_code == 200 and generated in page.text

    # bad files: refused in plain words, nothing changes
    r = _post_files(client, "/settings/certificates/import",
                    {"cert": ("c.pem", pki.chain("wrongsan").read_bytes()), "key": ("k.pem", (pki.dir / "wrongsan.key").read_bytes())})
    assert r.status_code == 400 and "does not cover" in r.text
    r = _post_files(client, "/settings/certificates/import", {"p12": ("c.p12", (pki.dir / "good.p12").read_bytes())},
                    {"password": "wrong"})
    assert r.status_code == 400 and "password is wrong" in r.text
    r = _post_files(client, "/settings/certificates/import", {"cert": ("c.pem", b"garbage" * 10)})
    assert r.status_code == 400 and "no PEM certificate" in r.text
    assert served_fingerprint(app.port) == generated

    # good: encrypted PEM key with its password
    r = _post_files(client, "/settings/certificates/import",
                    {"cert": ("c.pem", pki.chain("good", ("root", "leaf", "int")).read_bytes()),
                     "key": ("k.pem", (pki.dir / "good.enc.key").read_bytes())}, {"password": "key password"})
    assert r.status_code == 200, r.text
    assert "installed" in r.text
    imported = served_fingerprint(app.port)
    assert imported != generated and imported in r.text
    # the keep-alive connection this client opened before the swap still works
    assert client.get("/settings/certificates").status_code == 200
    # TLS-4: the imported leaf is valid for 20 days, so the dashboard and the page warn (30 days ahead)
    assert "Expires in less than 30 days" in client.get("/dashboard").text
    assert "expires in" in client.get("/settings/certificates").text

    r = _post_files(client, "/settings/certificates/rollback", {})
    assert r.status_code == 200 and "Rolled back" in r.text
    assert served_fingerprint(app.port) == generated

    r = _post_files(client, "/settings/certificates/rollback", {})  # back again: rollback toggles
    assert served_fingerprint(app.port) == imported
    r = _post_files(client, "/settings/certificates/regenerate", {})
    assert r.status_code == 200
    fresh = served_fingerprint(app.port)
    assert fresh not in (generated, imported)

    audit = client.get("/audit", params={"action": "tls.cert.import"})
    assert "tls.cert.import" in audit.text
    for action in ("tls.cert.import.refused", "tls.cert.rollback", "tls.cert.regenerate"):
        assert action in client.get("/audit", params={"action": action}).text


def test_non_admin_cannot_reach_certificates_or_backups(shared_appliance) -> None:
    app = shared_appliance
    with app.client() as anonymous:
        for path in ("/settings/certificates", "/settings/backups"):
            r = anonymous.get(path, follow_redirects=False)
            assert r.status_code in (303, 401)


def test_cli_cert_import_show_rollback(tmp_path: Path, pki: PKI) -> None:
    data = tmp_path / "data"
    cfg = tmp_path / "c.toml"
    cfg.write_text(LIVE_CONFIG)
    common = ["--data-dir", str(data), "--config", str(cfg)]
    assert outpost("init", *common).returncode == 0
    pw = tmp_path / "pw"
    pw.write_text("p12 password\n")
    bad = outpost("cert", "import", *common, "--cert", str(pki.chain("wrongsan")), "--key", str(pki.dir / "wrongsan.key"))
    assert bad.returncode == 1 and "does not cover" in bad.stderr
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(os.urandom(300))
    bad = outpost("cert", "import", *common, "--cert", str(garbage))
    assert bad.returncode == 1 and "no PEM certificate" in bad.stderr
    ok = outpost("cert", "import", *common, "--p12", str(pki.dir / "good.p12"), "--password-file", str(pw))
    assert ok.returncode == 0, ok.stderr
    assert "source:       customer" in ok.stdout
    show = outpost("cert", "show", *common)
    assert "customer" in show.stdout and "rollback to:  generated" in show.stdout
    back = outpost("cert", "rollback", *common)
    assert back.returncode == 0 and "source:       generated" in back.stdout
    verify = outpost("audit", "verify", *common)
    assert verify.returncode == 0, verify.stderr
