"""Hostile certificate imports (issue 11, "not yet covered"): subject, issuer and name fields
carrying HTML, script and terminal control sequences are shown escaped on every page that
names them (certificates page, refusal message, audit log), run nothing in a real browser,
and reach an admin's terminal (`outpost cert show`) without their control characters.
Huge key-derivation costs in uploads are covered by tests/crypto/test_kdf_live.py."""

from __future__ import annotations

import datetime as dt
import ssl
import subprocess
import sys
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import ROOT, csrf_of

CN = '<script>alert("cn")</script>'
ORG = '"><img src=x onerror=alert("org")>'
TERMINAL = "\x1b]0;pwned\x07\x1b[31mred\x1b[0m"
SAN = "<img src=x onerror=alert('san')>"
ROOT_CN = "<svg onload=alert('root')>"
RAW = ("<script>alert", "<img src=x", "<svg onload", "onerror=alert(\"org\")>")


def _name(**attrs) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attrs.values()])


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, bytes]:
    now = dt.datetime.now(dt.UTC)
    root_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root_name = _name(cn=(NameOID.COMMON_NAME, ROOT_CN))
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=60))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(root_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(_name(cn=(NameOID.COMMON_NAME, CN), o=(NameOID.ORGANIZATION_NAME, ORG),
                                l=(NameOID.LOCALITY_NAME, TERMINAL)))
            .issuer_name(root_name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=50))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.DNSName(SAN)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(root_key, hashes.SHA256()))
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    key = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return {"chain": pem(leaf) + pem(root), "leaf_only": pem(leaf), "key": key, "root": pem(root)}


def _import(client, cert: bytes, key: bytes):
    page = client.get("/settings/certificates")
    return client.post("/settings/certificates/import", data={"_csrf": csrf_of(page.text)},
                       files={"cert": ("c.pem", cert), "key": ("k.pem", key)})


def _escaped(html: str) -> None:
    for raw in RAW:
        assert raw not in html, f"unescaped {raw!r} in the page"
    assert "\x1b" not in html and "\x07" not in html


def test_hostile_names_are_escaped_everywhere(appliance, admin_client, hostile) -> None:
    app, client = appliance, admin_client
    refused = _import(client, hostile["leaf_only"], hostile["key"])  # the root is missing: the message names both
    assert refused.status_code == 400 and "chain is incomplete" in refused.text
    assert "&lt;svg onload=alert(" in refused.text  # the issuer, named, escaped
    _escaped(refused.text)

    r = _import(client, hostile["chain"], hostile["key"])
    assert r.status_code == 200 and "installed" in r.text, r.text[-1500:]
    assert "&lt;img src=x onerror=alert(&#39;san&#39;)&gt;" in r.text  # the SAN, shown escaped
    _escaped(r.text)
    for path in ("/settings/certificates", "/dashboard", "/audit?action=tls.cert.import",
                 "/audit?action=tls.cert.import.refused"):
        page = client.get(path)
        assert page.status_code == 200, path
        _escaped(page.text)


def test_cli_shows_hostile_names_without_control_characters(appliance, admin_client, hostile, tmp_path: Path) -> None:
    app, client = appliance, admin_client
    assert _import(client, hostile["chain"], hostile["key"]).status_code == 200
    argv = [sys.executable, "-m", "appliance", "cert", "show", "--data-dir", str(app.data_dir),
            "--config", str(app.config_path)] + (["--allow-root"] if os.geteuid() == 0 else [])
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert b"\x1b" not in r.stdout and b"\x07" not in r.stdout and b"\x1b" not in r.stderr
    assert b"\\x1b]0" in r.stdout  # shown, visibly escaped


def test_hostile_names_run_nothing_in_a_browser(appliance, admin_client, hostile) -> None:
    from playwright.sync_api import sync_playwright

    from tests.e2e.browser import SESSION_COOKIE, Watch, assert_clean, launch, require_chromium

    require_chromium()
    app, client = appliance, admin_client
    assert _import(client, hostile["chain"], hostile["key"]).status_code == 200
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = launch(p, _TrustingRoot(app, hostile["root"]))  # pins the imported leaf's key
        try:
            context = browser.new_context(base_url=app.url)
            watch = Watch.attach(context, app.url)
            context.add_cookies([{"name": SESSION_COOKIE, "value": client.cookies.get(SESSION_COOKIE), "url": app.url,
                                  "secure": True, "httpOnly": True, "sameSite": "Strict"}])
            page = context.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            for path in ("/settings/certificates", "/audit?action=tls.cert.import", "/dashboard"):
                page.goto(path)
                page.wait_for_load_state("networkidle")
            page.goto("/settings/certificates")
            assert SAN in page.locator("main").inner_text()  # shown as text, not run
            assert_clean(watch)
            context.close()
        finally:
            browser.close()
    assert dialogs == []


class _TrustingRoot:
    """What tests.e2e.browser.launch needs of an appliance, trusting the imported root instead
    of the appliance's own CA (the imported certificate is what it serves now)."""

    def __init__(self, app, root_pem: bytes) -> None:
        self.port, self.url, self._root = app.port, app.url, root_pem

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self._root.decode())
