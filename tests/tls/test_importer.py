"""TLS-2: customer certificate validation (table of bad files) and TLSManager install/rollback/regenerate.

Chains are built with the `openssl` CLI (tests/tls/customer_pki.py); only the expired
leaf is made with the cryptography library (OpenSSL 3.0 cannot back-date).
"""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path

import pytest

from appliance.audit.events import Event
from appliance.tls import importer
from appliance.tls.importer import CertificateImportError

from .conftest import (
    HOSTNAME,
    KEY_PASSWORD,
    OPERATOR,
    client_context,
    make_manager,
    openssl_path,
    peer_certificate,
)
from .customer_pki import PKI


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    p = PKI(openssl_path(), tmp_path_factory.mktemp("pki"))
    p.leaf("good")
    p.leaf("rsa3072", key="rsa:3072")
    p.leaf("rsa2048", key="rsa:2048")
    p.leaf("rsa1024", key="rsa:1024")
    p.leaf("ec384", key="ec384")
    p.leaf("other")
    p.leaf("wrongsan", san="DNS:someone-else.example")
    p.leaf("wildcard", san="DNS:*.test")
    p.expired_leaf("expired")
    p.encrypt_key("good", "right password")
    p.pkcs12("good", "p12 password")
    return p


def _pem(pki: PKI, name: str, *, key: str | None = None, password: str | None = None,
         order=("leaf", "int", "root")) -> importer.CustomerBundle:
    key_path = pki.dir / (key or f"{name}.key")
    return importer.from_pem(pki.chain(name, order).read_bytes(), key_path.read_bytes(),
                             password.encode() if password is not None else None, hostname=HOSTNAME, now=time.time())


def test_good_chain_ordered_and_unordered(pki: PKI) -> None:
    for order in [("leaf", "int", "root"), ("root", "int", "leaf"), ("int", "leaf", "root")]:
        bundle = _pem(pki, "good", order=order)
        assert [c.subject.rfc4514_string() for c in bundle.chain] == ["CN=Customer Test Intermediate",
                                                                      "CN=Customer Test Root"]
        assert bundle.warnings == []


def test_good_variants(pki: PKI) -> None:
    assert _pem(pki, "good", key="good.enc.key", password="right password").warnings == []
    assert _pem(pki, "ec384").warnings == []
    assert _pem(pki, "rsa3072").warnings == []
    assert "2048 bits" in _pem(pki, "rsa2048").warnings[0]
    assert _pem(pki, "wildcard").fingerprint
    # the key in the same file as the chain
    combined = pki.chain("good").read_bytes() + (pki.dir / "good.key").read_bytes()
    assert importer.from_pem(combined, None, None, hostname=HOSTNAME, now=time.time()).fingerprint
    p12 = importer.from_pkcs12((pki.dir / "good.p12").read_bytes(), b"p12 password", hostname=HOSTNAME, now=time.time())
    assert p12.fingerprint == _pem(pki, "good").fingerprint and len(p12.chain) == 2


BAD = [
    # (case, build kwargs or callable, words the message must contain)
    ("mismatched key", dict(name="good", key="other.key"), "does not match"),
    ("expired", dict(name="expired"), "expired on"),
    ("wrong SAN", dict(name="wrongsan"), "does not cover"),
    ("RSA-1024", dict(name="rsa1024"), "1024 bits"),
    ("encrypted key, wrong password", dict(name="good", key="good.enc.key", password="wrong"), "password does not open"),
    ("encrypted key, no password", dict(name="good", key="good.enc.key"), "encrypted: enter its password"),
    ("incomplete chain (no intermediate)", dict(name="good", order=("leaf", "root")), "chain is incomplete"),
    ("incomplete chain (no root)", dict(name="good", order=("leaf", "int")), "chain is incomplete"),
    ("stray certificate", dict(name="good", order=("leaf", "int", "root", "leaf")), None),
]


@pytest.mark.parametrize("case,kw,words", BAD, ids=[b[0] for b in BAD])
def test_bad_pem_cases_refused_in_plain_words(pki: PKI, case, kw, words) -> None:
    if case == "stray certificate":
        data = pki.chain("good").read_bytes() + (pki.dir / "other.pem").read_bytes()
        with pytest.raises(CertificateImportError, match="not part of the chain"):
            importer.from_pem(data, (pki.dir / "good.key").read_bytes(), None, hostname=HOSTNAME, now=time.time())
        return
    with pytest.raises(CertificateImportError) as err:
        _pem(pki, **kw)
    assert words in err.value.message, err.value.message


def test_garbage_and_other_bad_files(pki: PKI) -> None:
    now, key = time.time(), (pki.dir / "good.key").read_bytes()
    cases = [
        (b"\x00\x01garbage" * 50, key, "holds no PEM certificate"),
        (b"", key, "is empty"),
        (b"-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n", key, "damaged"),
        (pki.chain("good").read_bytes(), b"not a key at all", "No PEM private key"),
        (pki.chain("good").read_bytes(), b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "damaged"),
        ((pki.dir / "good.p12").read_bytes(), key, "holds no PEM certificate"),
    ]
    for cert, k, words in cases:
        with pytest.raises(CertificateImportError) as err:
            importer.from_pem(cert, k, None, hostname=HOSTNAME, now=now)
        assert words in err.value.message, (words, err.value.message)
    with pytest.raises(CertificateImportError, match="password is wrong"):
        importer.from_pkcs12((pki.dir / "good.p12").read_bytes(), b"not it", hostname=HOSTNAME, now=now)
    with pytest.raises(CertificateImportError, match="could not be opened"):
        importer.from_pkcs12(b"garbage" * 100, b"x", hostname=HOSTNAME, now=now)
    with pytest.raises(CertificateImportError, match="does not cover"):
        _ = importer.from_pem(pki.chain("good").read_bytes(), key, None, hostname="elsewhere.example", now=now)


def test_messages_never_contain_the_password(pki: PKI) -> None:
    secret = "right password"
    for pw in (secret + "x", secret[:-1]):
        with pytest.raises(CertificateImportError) as err:
            _pem(pki, "good", key="good.enc.key", password=pw)
        assert pw not in err.value.message


def _fp(der: bytes) -> str:
    return hashlib.sha256(der).digest().hex(":").upper()


def test_install_rollback_regenerate_hot_swap(tmp_path: Path, frozen_clock, pki: PKI, start_server) -> None:
    m = make_manager(tmp_path / "tls", frozen_clock)
    m.ensure()
    generated = m.info().leaf_fingerprint
    server = start_server(m.ssl_context())
    assert _fp(peer_certificate("127.0.0.1", server.port)) == generated
    # a connection opened before the swap keeps working on its certificate
    ctx = client_context(m.ca_pem_path)
    ctx.check_hostname = False
    held = ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=5), server_hostname="localhost")

    events = m.install_customer(_pem(pki, "good"), actor=OPERATOR, via="cli")
    assert events == [Event.TLS_CERT_IMPORT]
    info = m.info()
    assert info.source == "customer" and info.previous == "generated"
    assert _fp(peer_certificate("127.0.0.1", server.port)) == info.leaf_fingerprint != generated
    assert _fp(held.getpeercert(binary_form=True)) == generated
    held.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert held.recv(100).startswith(b"HTTP/1.1 200")
    held.close()
    # the imported key is stored encrypted; nothing plain on disk
    for path in (tmp_path / "tls").iterdir():
        assert b"BEGIN PRIVATE KEY" not in path.read_bytes() and b"BEGIN EC PRIVATE KEY" not in path.read_bytes()

    # a second import keeps the first customer certificate as "previous"
    first = info.leaf_fingerprint
    m.install_customer(_pem(pki, "rsa3072"), actor=OPERATOR, via="cli")
    assert m.info().previous == first
    assert m.rollback(actor=OPERATOR, via="cli") == [Event.TLS_CERT_ROLLBACK]
    assert m.info().leaf_fingerprint == first
    assert _fp(peer_certificate("127.0.0.1", server.port)) == first

    # renewal of the generated leaf never replaces the customer certificate
    frozen_clock.advance(80 * 86400)
    renewed = m.renew_if_due()
    assert Event.TLS_CERT_RENEW in renewed and m.info().leaf_fingerprint == first

    # a restart (new manager) serves the customer certificate
    again = make_manager(tmp_path / "tls", frozen_clock)
    again.ensure()
    assert again.info().leaf_fingerprint == first and again.info().source == "customer"

    # regenerate: back to a fresh local leaf; the customer certificate becomes "previous"
    m.regenerate(actor=OPERATOR, via="cli")
    info = m.info()
    assert info.source == "generated" and info.previous == first
    assert _fp(peer_certificate("127.0.0.1", server.port)) == info.leaf_fingerprint
    from appliance.tls import TLSError
    with pytest.raises(TLSError, match="expired"):  # the clock moved 80 days: the customer leaf is past its end
        m.rollback(actor=OPERATOR, via="cli")
    frozen_clock.advance(-80 * 86400)
    m.rollback(actor=OPERATOR, via="cli")
    assert m.info().leaf_fingerprint == first


def test_rollback_with_nothing_before_is_refused(tmp_path: Path, frozen_clock) -> None:
    m = make_manager(tmp_path / "tls", frozen_clock)
    m.ensure()
    from appliance.tls import TLSError
    with pytest.raises(TLSError, match="no previous certificate"):
        m.rollback(actor=OPERATOR, via="cli")


def test_reencrypt_keys_is_idempotent(tmp_path: Path, frozen_clock, pki: PKI) -> None:
    from appliance.tls.rekey import reencrypt_keys
    m = make_manager(tmp_path / "tls", frozen_clock)
    m.ensure()
    m.install_customer(_pem(pki, "good"), actor=OPERATOR, via="cli")
    assert reencrypt_keys(tmp_path / "tls", KEY_PASSWORD, b"new password") == 3
    assert reencrypt_keys(tmp_path / "tls", KEY_PASSWORD, b"new password") == 0
    again = make_manager(tmp_path / "tls", frozen_clock, password=b"new password")
    assert again.ensure() == [] and again.info().source == "customer"


def test_the_manager_audits_each_change_once_as_who_asked(tmp_path: Path, frozen_clock, pki: PKI) -> None:
    """No caller records TLS events: the manager does, through its audit callable, into the real log."""
    import json
    import os

    from appliance.audit.log import verify_chain
    from appliance.audit.service import AuditService
    from appliance.store import Database

    db = Database.open(tmp_path / "outpost.db", os.urandom(32), readers=1)
    try:
        m = make_manager(tmp_path / "tls", frozen_clock, audit=AuditService(db, frozen_clock).record_alone_sync)
        m.ensure()
        ca, generated = m.info().ca_fingerprint, m.info().leaf_fingerprint
        assert m.install_customer(_pem(pki, "good"), actor=OPERATOR, via="ui") == [Event.TLS_CERT_IMPORT]
        customer = m.info()
        assert m.install_customer(_pem(pki, "good"), actor=OPERATOR, via="ui") == []  # nothing changed: no record
        m.regenerate(actor=OPERATOR, via="cli")
        regenerated = m.info()
        m.rollback(actor=OPERATOR, via="cli")
        rows = db.read_sync(lambda c: c.execute("SELECT action, actor_type, actor, target, details FROM audit_log "
                                                "ORDER BY seq").fetchall())
        assert [(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows] == [
            ("tls.ca.generate", "system", "system", "", {"fingerprint": ca}),
            ("tls.cert.generate", "system", "system", "", {"fingerprint": generated}),
            ("tls.cert.import", "user", "operator", customer.leaf_subject,
             {"fingerprint": customer.leaf_fingerprint, "via": "ui"}),
            ("tls.cert.regenerate", "user", "operator", regenerated.leaf_subject,
             {"fingerprint": regenerated.leaf_fingerprint, "via": "cli"}),
            ("tls.cert.rollback", "user", "operator", customer.leaf_subject,
             {"fingerprint": customer.leaf_fingerprint, "via": "cli"}),
        ]
        assert db.read_sync(verify_chain).ok
    finally:
        db.close()

