"""Generated CA and leaf: checked with the cryptography library and with `openssl`."""

from __future__ import annotations

import ipaddress
import socket
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.tls import TLSManager, selfsigned
from appliance.tls.manager import _local_addresses

from .conftest import HOSTNAME, run


def _certs(m: TLSManager) -> tuple[x509.Certificate, x509.Certificate]:
    ca = x509.load_pem_x509_certificate(m.ca_pem_path.read_bytes())
    leaf = x509.load_pem_x509_certificates((m.ca_pem_path.parent / "server.pem").read_bytes())[0]
    return ca, leaf


def _wanted() -> tuple[set[str], set[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    dns = {HOSTNAME, socket.gethostname().lower(), "localhost"}
    ips = {ipaddress.ip_address(a) for a in [*_local_addresses(), "127.0.0.1", "::1"]}
    return dns, ips


def test_ca_is_p256_pathlen0_and_name_constrained(manager: TLSManager) -> None:
    ca, _ = _certs(manager)
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(ca.public_key().curve, ec.SECP256R1)
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    nc = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical and nc.value.excluded_subtrees is None
    dns, ips = _wanted()
    permitted = nc.value.permitted_subtrees
    assert {g.value for g in permitted if isinstance(g, x509.DNSName)} == dns
    nets = {g.value for g in permitted if isinstance(g, x509.IPAddress)}
    assert nets == {ipaddress.ip_network(f"{ip}/{ip.max_prefixlen}") for ip in ips}
    assert all(net.num_addresses == 1 for net in nets)  # each address as /32 or /128


def test_leaf_sans_usage_and_validity(manager: TLSManager, frozen_clock) -> None:
    ca, leaf = _certs(manager)
    assert isinstance(leaf.public_key().curve, ec.SECP256R1)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns, ips = _wanted()
    assert set(san.get_values_for_type(x509.DNSName)) == dns
    assert set(san.get_values_for_type(x509.IPAddress)) == ips
    assert ipaddress.ip_address("127.0.0.1") in ips and ipaddress.ip_address("::1") in ips
    assert leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH]
    )
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    now = frozen_clock.now()
    assert leaf.not_valid_before_utc.timestamp() == pytest.approx(now - selfsigned.CLOCK_SKEW.total_seconds(), abs=1)
    assert leaf.not_valid_after_utc.timestamp() == pytest.approx(now + 90 * 86400, abs=1)
    leaf.verify_directly_issued_by(ca)


def test_openssl_reads_and_verifies_the_certificates(manager: TLSManager, openssl: str) -> None:
    ca_pem, leaf_pem = manager.ca_pem_path, manager.ca_pem_path.parent / "server.pem"
    ca_text = run([openssl, "x509", "-noout", "-text", "-in", str(ca_pem)]).stdout
    assert "CA:TRUE, pathlen:0" in ca_text
    assert "Certificate Sign, CRL Sign" in ca_text
    assert "X509v3 Name Constraints: critical" in ca_text and "DNS:localhost" in ca_text
    assert "IP:127.0.0.1/255.255.255.255" in ca_text
    assert "ASN1 OID: prime256v1" in ca_text
    leaf_text = run([openssl, "x509", "-noout", "-text", "-in", str(leaf_pem)]).stdout
    for expected in (f"DNS:{HOSTNAME}", "DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1",
                     "TLS Web Server Authentication", "Digital Signature", "ASN1 OID: prime256v1"):
        assert expected in leaf_text
    # openssl verify enforces the name constraints against every SAN of the leaf.
    result = run([openssl, "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", str(ca_pem), str(leaf_pem)])
    assert result.returncode == 0 and f"{leaf_pem}: OK" in result.stdout, result.stderr


def test_fingerprints_match_openssl(manager: TLSManager, openssl: str) -> None:
    info = manager.info()
    for path, expected in ((manager.ca_pem_path, info.ca_fingerprint),
                           (manager.ca_pem_path.parent / "server.pem", info.leaf_fingerprint)):
        out = run([openssl, "x509", "-noout", "-fingerprint", "-sha256", "-in", str(path)]).stdout
        assert out.strip().split("=", 1)[1] == expected
    assert len(info.ca_fingerprint) == 32 * 3 - 1 and info.ca_fingerprint == info.ca_fingerprint.upper()


def test_info_describes_the_leaf(manager: TLSManager) -> None:
    info = manager.info()
    _, leaf = _certs(manager)
    assert info.leaf_not_after == leaf.not_valid_after_utc.timestamp()
    assert info.leaf_sans[:3] == [HOSTNAME, socket.gethostname().lower(), "localhost"]
    assert "127.0.0.1" in info.leaf_sans and "::1" in info.leaf_sans
    assert info.profile == "intermediate"


@pytest.mark.parametrize(
    ("dns", "ip"),
    [("bank.example", "127.0.0.1"), ("box", "192.0.2.77"), ("box", "::2")],
    ids=["foreign-name", "foreign-ipv4", "foreign-ipv6"],
)
def test_openssl_rejects_a_leaf_outside_the_name_constraints(tmp_path: Path, openssl: str, frozen_clock, dns: str, ip: str) -> None:
    """The constraint is real: a leaf the CA signs for another name or address does not verify."""
    names = selfsigned.names_for("", "box", [])
    ca = selfsigned.generate_ca(names, now=frozen_clock.now(), days=365)
    outside = selfsigned.Names(dns=(dns,), ips=(ipaddress.ip_address(ip),))
    leaf = selfsigned.generate_leaf(ca, outside, now=frozen_clock.now(), days=30)
    (tmp_path / "ca.pem").write_bytes(selfsigned.cert_pem(ca.cert))
    (tmp_path / "leaf.pem").write_bytes(selfsigned.cert_pem(leaf.cert))
    result = run([openssl, "verify", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "leaf.pem")])
    assert result.returncode != 0
    assert "permitted subtree violation" in result.stderr


@pytest.mark.parametrize(
    ("configured", "dns", "ips"),
    [
        ("", ("box", "localhost"), ("127.0.0.1", "::1")),
        ("Outpost.Example.LAN.", ("outpost.example.lan", "box", "localhost"), ("127.0.0.1", "::1")),
        ("192.0.2.9", ("box", "localhost"), ("127.0.0.1", "::1", "192.0.2.9")),
        ("bücher.example", ("xn--bcher-kva.example", "box", "localhost"), ("127.0.0.1", "::1")),
    ],
)
def test_names_for(configured: str, dns: tuple[str, ...], ips: tuple[str, ...]) -> None:
    names = selfsigned.names_for(configured, "box", ["127.0.0.1"])
    assert names.dns == dns
    assert tuple(str(ip) for ip in names.ips) == ips


@pytest.mark.parametrize("bad", ["a b", "x" * 64 + ".example", "*.example", "user@host"])
def test_names_for_rejects_what_cannot_be_a_san(bad: str) -> None:
    with pytest.raises(ValueError):
        selfsigned.names_for(bad, "box", [])


def test_ca_covers_subdomains_but_not_siblings(frozen_clock) -> None:
    ca = selfsigned.generate_ca(selfsigned.names_for("outpost.lan", "box", []), now=frozen_clock.now(), days=365)
    assert selfsigned.ca_covers(ca.cert, selfsigned.names_for("a.outpost.lan", "box", []))
    assert not selfsigned.ca_covers(ca.cert, selfsigned.names_for("evil-outpost.lan", "box", []))
    assert not selfsigned.ca_covers(ca.cert, selfsigned.names_for("", "box", ["10.0.0.1"]))


def test_leaf_never_outlives_its_ca(frozen_clock) -> None:
    names = selfsigned.names_for("", "box", [])
    ca = selfsigned.generate_ca(names, now=frozen_clock.now(), days=365)
    leaf = selfsigned.generate_leaf(ca, names, now=frozen_clock.now() + 300 * 86400, days=397)
    assert leaf.cert.not_valid_after_utc == ca.cert.not_valid_after_utc
    assert leaf.cert.not_valid_after_utc - leaf.cert.not_valid_before_utc < timedelta(days=397)
