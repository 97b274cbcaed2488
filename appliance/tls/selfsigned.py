"""The appliance's own certificate authority and server certificate (TLS-1).

Pure functions over the `cryptography` library: no file, clock or network access;
"now" is passed in. `manager.py` does the I/O.

Invariants:
- The CA is ECDSA P-256, `basicConstraints CA:true pathlen:0` (it signs leaves only),
  `keyUsage keyCertSign+cRLSign`, and a critical NameConstraints extension that
  permits exactly the appliance's DNS names and its addresses (each as /32 or /128),
  so trusting it cannot let it vouch for anybody else's site.
- The leaf is ECDSA P-256, `CA:false`, `keyUsage digitalSignature`, EKU serverAuth,
  SANs = every wanted name and address, never valid beyond its CA.
- notBefore is set back `CLOCK_SKEW` so clients whose clocks lag a little accept it.
- Serial numbers and the CA name carry random bits: two installs never share a CA name,
  which browsers (Firefox) otherwise confuse.
"""

from __future__ import annotations

import ipaddress
import secrets
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CLOCK_SKEW = timedelta(minutes=5)


class Names(msgspec.Struct, frozen=True, kw_only=True):
    """What a certificate must be valid for: DNS names (lower case, A-labels) and IPs."""

    dns: tuple[str, ...]
    ips: tuple[IPAddress, ...]

    def as_strings(self) -> list[str]:
        return [*self.dns, *(str(ip) for ip in self.ips)]


class Issued(NamedTuple):
    """A private key and the certificate for it."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def names_for(configured: str, machine_hostname: str, addresses: list[str]) -> Names:
    """Build the wanted name set: configured hostname (a name or an IP), the machine's
    hostname, `localhost`, every address given, plus 127.0.0.1 and ::1 always.

    Raises ValueError for a name that cannot go into a certificate.
    """
    dns: list[str] = []
    ips: list[IPAddress] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    for raw in (configured, machine_hostname, "localhost", *addresses):
        raw = raw.strip()
        if not raw:
            continue
        try:
            ips.append(ipaddress.ip_address(raw))
            continue
        except ValueError:
            pass
        dns.append(_dns_name(raw))
    return Names(dns=tuple(dict.fromkeys(dns)), ips=tuple(dict.fromkeys(ips)))


def _dns_name(name: str) -> str:
    name = name.rstrip(".").lower()
    try:
        # Certificates carry A-labels; the idna codec turns "bücher" into "xn--bcher-kva".
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"{name!r} is not a valid DNS name for a certificate") from None
    if not ascii_name or any(c.isspace() or c in "/\\@*" for c in ascii_name):
        raise ValueError(f"{name!r} is not a valid DNS name for a certificate")
    return ascii_name


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _serial() -> int:
    # 159 random bits: positive, at most 20 octets (RFC 5280 4.1.2.2), unguessable.
    return secrets.randbits(159) | 1


def _ip_network(ip: IPAddress) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(f"{ip}/{ip.max_prefixlen}")


def generate_ca(names: Names, *, now: float, days: int) -> Issued:
    """A fresh local CA, name-constrained to `names`, valid `days` from `now`."""
    key = ec.generate_private_key(ec.SECP256R1())
    first = names.dns[0] if names.dns else "appliance"
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Outpost"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"Outpost local CA {first} {secrets.token_hex(4)}"),
    ])
    permitted = [x509.DNSName(d) for d in names.dns] + [x509.IPAddress(_ip_network(ip)) for ip in names.ips]
    start = _at(now)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(_serial())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        # RFC 5280 4.2.1.10: conforming CAs mark name constraints critical.
        .add_extension(x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(key, cert)


def generate_leaf(ca: Issued, names: Names, *, now: float, days: int) -> Issued:
    """A server certificate for `names`, signed by `ca`, valid `days` (capped at the CA's end)."""
    if not names.dns:
        raise ValueError("a server certificate needs at least one DNS name")
    key = ec.generate_private_key(ec.SECP256R1())
    start = _at(now)
    end = min(start + timedelta(days=days), ca.cert.not_valid_after_utc)
    sans = [x509.DNSName(d) for d in names.dns] + [x509.IPAddress(ip) for ip in names.ips]
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        # CN is informational; clients match the SANs. It is a permitted name so that
        # a client that still checks CN against name constraints accepts it too.
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names.dns[0])]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(key, cert)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate as colon-separated upper-case hex (as `openssl x509 -fingerprint`)."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def printable(text: str) -> str:
    """`text` for display: control and format characters (terminal escapes, bidi overrides)
    written as visible escapes. Certificate names come from whoever made the certificate;
    HTML escaping is the templates' job, this keeps terminals and logs safe too."""
    return "".join(ch if unicodedata.category(ch) not in ("Cc", "Cf") else ascii(ch)[1:-1] for ch in text)


def name_text(name: x509.Name) -> str:
    """An X.509 name as RFC 4514 text, printable (see `printable`)."""
    return printable(name.rfc4514_string())


def sans(cert: x509.Certificate) -> list[str]:
    """The certificate's DNS and IP SANs as strings (DNS first), empty when it has none."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*ext.get_values_for_type(x509.DNSName), *(str(ip) for ip in ext.get_values_for_type(x509.IPAddress))]


def leaf_covers(cert: x509.Certificate, names: Names) -> bool:
    """True when every wanted name and address is among the leaf's SANs."""
    have = set(sans(cert))
    return all(n in have for n in names.as_strings())


def ca_covers(cert: x509.Certificate, names: Names) -> bool:
    """True when the CA's name constraints permit every wanted name and address.

    DNS matching follows RFC 5280 4.2.1.10 as OpenSSL applies it: a constraint
    permits the name itself and any name below it.
    """
    try:
        nc = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return False
    permitted = nc.permitted_subtrees or []
    bases = [g.value.lower() for g in permitted if isinstance(g, x509.DNSName)]
    # IPAddress values in name constraints are networks (RFC 5280 4.2.1.10)
    nets = [g.value for g in permitted if isinstance(g, x509.IPAddress)
            and isinstance(g.value, ipaddress.IPv4Network | ipaddress.IPv6Network)]
    for d in names.dns:
        if not any(d == b or d.endswith("." + b.lstrip(".")) for b in bases):
            return False
    return all(any(ip in net for net in nets if net.version == ip.version) for ip in names.ips)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def encrypted_key_pem(key: ec.EllipticCurvePrivateKey, password: bytes) -> bytes:
    """PKCS#8 PEM ("ENCRYPTED PRIVATE KEY"), encrypted with the library's best available scheme."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
