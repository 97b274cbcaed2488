"""Customer certificates (TLS-2): read and validate a PEM chain + key or a PKCS#12 file.

Pure functions: bytes in, a validated `CustomerBundle` or an `ImportError_` with a
plain-words message out. `manager.TLSManager.install_customer` does the files and
the hot swap.

What is checked, each with its own message:
- the files are PEM certificates / a PEM private key (optionally encrypted, PKCS#8 or
  traditional) or PKCS#12, and the password opens them; the key-derivation cost they ask
  for is within the caps of crypto/kdfcost.py, checked before anything is derived;
- the private key belongs to one of the certificates (that one is the leaf);
- the chain: the certificates are put in order from the leaf up (an unordered file is
  REORDERED, not refused: order is a common export accident, not a security problem);
  every certificate must be part of that one path, every issuer must be a CA that
  really signed the one below it, and the path must end at a self-signed root
  ("complete up to the given CA"); a missing link is named;
- every certificate in the chain is valid now (not expired, not yet valid);
- the leaf's SANs cover the appliance's hostname (`[web] hostname`, or the machine's);
- key strength: RSA >= 2048 bits (a warning below 3072), EC only P-256 or P-384.

Invariants: a password or key bytes never appear in a message; nothing here touches disk.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from appliance.crypto import kdfcost, pkcs12scan
from appliance.errors import ValidationError
from appliance.tls import selfsigned

MAX_FILE_BYTES = 1 << 20
MAX_CHAIN = 10
RSA_MIN, RSA_WARN = 2048, 3072
EC_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}


_P12_UNOPENED = {False: "The PKCS#12 file could not be opened: it needs a password, or it is not a PKCS#12 file.",
                 True: "The PKCS#12 file could not be opened: the password is wrong, or the file is not a PKCS#12 "
                       "file."}


class CertificateImportError(ValidationError):
    """The certificate or key cannot be used; `message` says why in plain words."""

    code = "certificate_invalid"


class CustomerBundle(msgspec.Struct, frozen=True, kw_only=True):
    """A validated leaf, its chain up to the root (in order), and its private key."""

    leaf: x509.Certificate
    chain: list[x509.Certificate]  # issuers after the leaf, root last
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    warnings: list[str] = []

    @property
    def fingerprint(self) -> str:
        return selfsigned.fingerprint(self.leaf)


def from_pem(cert_data: bytes, key_data: bytes | None, password: bytes | None, *, hostname: str,
             now: float) -> CustomerBundle:
    """Validate a PEM chain (file of certificates) and its key (in `key_data` or in the same file)."""
    _size(cert_data, "certificate file")
    certs = _pem_certs(cert_data)
    key_source = key_data if key_data is not None else cert_data
    if key_data is not None:
        _size(key_data, "key file")
    key = _pem_key(key_source, password, separate=key_data is not None)
    return _validate(certs, key, hostname=hostname, now=now)


def from_pkcs12(data: bytes, password: bytes | None, *, hostname: str, now: float) -> CustomerBundle:
    """Validate a PKCS#12 (.p12/.pfx) file holding the key, the leaf and its chain."""
    _size(data, "PKCS#12 file")
    try:
        pkcs12scan.check_pkcs12(data, password)  # every derivation's cost, before any is made
        key, cert, extra = pkcs12.load_key_and_certificates(data, password or None)
    except kdfcost.KdfCostError as exc:
        raise CertificateImportError(f"The PKCS#12 file was refused: {exc}.") from None
    except kdfcost.KeyFileError as exc:
        if not isinstance(exc, pkcs12scan.Pkcs12PasswordError):
            raise CertificateImportError(str(exc)) from None
        raise CertificateImportError(_P12_UNOPENED[bool(password)]) from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CertificateImportError(_P12_UNOPENED[bool(password)]) from None
    if key is None or cert is None:
        raise CertificateImportError("The PKCS#12 file must hold both the certificate and its private key.")
    return _validate([cert, *extra], key, hostname=hostname, now=now)


def configured_hostname(web_hostname: str, machine_hostname: str) -> str:
    """The name the certificate must cover: `[web] hostname`, else the machine's hostname."""
    return (web_hostname or machine_hostname).strip().rstrip(".").lower()


# -- parsing ------------------------------------------------------------------------

def _size(data: bytes, what: str) -> None:
    if not data:
        raise CertificateImportError(f"The {what} is empty.")
    if len(data) > MAX_FILE_BYTES:
        raise CertificateImportError(f"The {what} is larger than 1 MiB; that is not a certificate file.")


def _pem_certs(data: bytes) -> list[x509.Certificate]:
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise CertificateImportError("The certificate file holds no PEM certificate (a block starting "
                                     "\"-----BEGIN CERTIFICATE-----\"). For a .p12/.pfx file use the PKCS#12 option.")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertificateImportError("The certificate file is damaged: a certificate in it cannot be read.") from None
    if len(certs) > MAX_CHAIN:
        raise CertificateImportError(f"The certificate file holds {len(certs)} certificates; at most {MAX_CHAIN} "
                                     "are accepted.")
    return certs


def _pem_key(data: bytes, password: bytes | None, *, separate: bool):
    where = "key file" if separate else "certificate file (no separate key file was given)"
    if b"PRIVATE KEY-----" not in data:
        raise CertificateImportError(f"No PEM private key was found in the {where}.")
    pem = _first_key_block(data)
    try:
        kdfcost.check_private_key_pem(pem)  # before anything is derived (issue 11, finding 8)
    except kdfcost.KdfCostError as exc:
        raise CertificateImportError(f"The private key was refused: {exc}.") from None
    except kdfcost.KeyFileError as exc:
        raise CertificateImportError(str(exc)) from None
    try:
        return serialization.load_pem_private_key(pem, password=password or None)
    except TypeError as exc:
        if "not encrypted" in str(exc):
            return serialization.load_pem_private_key(pem, password=None)  # a password was given needlessly
        raise CertificateImportError("The private key is encrypted: enter its password.") from None
    except ValueError:
        if password:
            raise CertificateImportError("The password does not open the private key (wrong password, or the key "
                                         "is damaged).") from None
        raise CertificateImportError(f"The private key in the {where} is damaged or not a private key.") from None
    except UnsupportedAlgorithm:
        raise CertificateImportError("The private key is of a kind the appliance cannot use (use RSA or EC "
                                     "P-256/P-384).") from None


def _first_key_block(data: bytes) -> bytes:
    begin = data.find(b"-----BEGIN ", 0)
    while begin != -1:
        line_end = data.find(b"-----", begin + 11)
        label = data[begin + 11:line_end]
        if label.endswith(b"PRIVATE KEY"):
            end_marker = b"-----END " + label + b"-----"
            end = data.find(end_marker, line_end)
            if end == -1:
                break
            return data[begin:end + len(end_marker)] + b"\n"
        begin = data.find(b"-----BEGIN ", line_end)
    raise CertificateImportError("The private key block is incomplete (no END line).")


# -- validation ---------------------------------------------------------------------

def _validate(certs: list[x509.Certificate], key, *, hostname: str, now: float) -> CustomerBundle:
    warnings = _check_key_strength(key)
    leaf = _leaf_for(certs, key)
    chain = _order_chain(leaf, [c for c in certs if c is not leaf])
    for cert in [leaf, *chain]:
        _check_dates(cert, now)
    _check_names(leaf, hostname)
    return CustomerBundle(leaf=leaf, chain=chain, key=key, warnings=warnings)


def _check_key_strength(key) -> list[str]:
    if isinstance(key, rsa.RSAPrivateKey):
        bits = key.key_size
        if bits < RSA_MIN:
            raise CertificateImportError(f"The RSA key has {bits} bits; at least {RSA_MIN} are required.")
        if bits < RSA_WARN:
            return [f"The RSA key has {bits} bits: accepted, but {RSA_WARN} or more (or EC P-256) is recommended."]
        return []
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in EC_CURVES:
            raise CertificateImportError(f"The EC key uses the curve {key.curve.name}; only P-256 and P-384 "
                                         "are accepted.")
        return []
    raise CertificateImportError("The private key is of a kind browsers do not accept for TLS here; use RSA "
                                 "(2048 bits or more) or EC P-256/P-384.")


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _leaf_for(certs: list[x509.Certificate], key) -> x509.Certificate:
    wanted = _spki(key.public_key())
    for cert in certs:
        try:
            if _spki(cert.public_key()) == wanted:
                return cert
        except (ValueError, UnsupportedAlgorithm):
            continue
    raise CertificateImportError("The private key does not match the certificate: it belongs to none of the "
                                 "certificates in the file. Check that you picked the key made for this certificate.")


def _name(cert: x509.Certificate) -> str:
    return selfsigned.name_text(cert.subject) or "(no subject)"


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _order_chain(leaf: x509.Certificate, others: list[x509.Certificate]) -> list[x509.Certificate]:
    """Walk from the leaf to a self-signed root through `others`; refuse gaps and strays."""
    path: list[x509.Certificate] = []
    current, pool = leaf, list(others)
    while not _signed_by(current, current):  # stop at a self-signed certificate
        issuer = next((c for c in pool if _signed_by(current, c)), None)
        if issuer is None:
            raise CertificateImportError(
                f"The chain is incomplete: the issuer of \"{_name(current)}\" "
                f"(\"{selfsigned.name_text(current.issuer)}\") is not in the file. Add the intermediate and root CA "
                "certificates after the server certificate.")
        if not _is_ca(issuer):
            raise CertificateImportError(f"\"{_name(issuer)}\" signed \"{_name(current)}\" but is not a CA "
                                         "certificate.")
        path.append(issuer)
        pool.remove(issuer)
        current = issuer
        if current is leaf:
            break
    if _signed_by(leaf, leaf) and not path:
        raise CertificateImportError("The certificate is self-signed; import a certificate issued by your CA, "
                                     "or keep the appliance's own certificate.")
    if pool:
        raise CertificateImportError(f"\"{_name(pool[0])}\" is in the file but is not part of the chain of the "
                                     "server certificate; remove it.")
    return path


def _check_dates(cert: x509.Certificate, now: float) -> None:
    before, after = cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
    if now > after:
        raise CertificateImportError(f"The certificate \"{_name(cert)}\" expired on {_day(after)}.")
    if now < before:
        raise CertificateImportError(f"The certificate \"{_name(cert)}\" is not valid before {_day(before)}; "
                                     "check the appliance's clock or wait until then.")


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _check_names(leaf: x509.Certificate, hostname: str) -> None:
    names = selfsigned.sans(leaf)
    if not hostname:
        raise CertificateImportError("The appliance has no hostname to check the certificate against; "
                                     "set [web] hostname.")
    if not any(_matches(pattern, hostname) for pattern in names):
        shown = ", ".join(selfsigned.printable(n) for n in names) or "no names at all (no subjectAltName)"
        raise CertificateImportError(f"The certificate is for {shown}; it does not cover this appliance's name "
                                     f"\"{hostname}\". Get a certificate for that name, or set [web] hostname.")


def _matches(pattern: str, hostname: str) -> bool:
    pattern, hostname = pattern.lower().rstrip("."), hostname.lower().rstrip(".")
    try:
        return ipaddress.ip_address(pattern) == ipaddress.ip_address(hostname)
    except ValueError:
        pass
    if pattern.startswith("*."):
        head, _, rest = hostname.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == hostname


def bundle_pem(bundle: CustomerBundle, password: bytes) -> bytes:
    """The file `TLSManager` serves from: leaf, chain (root excluded), key encrypted under `password`."""
    served = [c for c in bundle.chain if not _signed_by(c, c)]  # a root in the handshake is dead weight
    certs = b"".join(selfsigned.cert_pem(c) for c in [bundle.leaf, *served])
    key = bundle.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.BestAvailableEncryption(password))
    return certs + key

