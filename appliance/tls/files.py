"""The TLS directory's layout, and reading its files with every check (TLS-1, TLS-2, TLS-3).

Files in `tls_dir` (0700), each 0600 and written atomically (temp file, fsync, rename):
- `ca.key`     the CA's encrypted private key followed by its certificate: the CA's
               source of truth. One file, so a crash can never pair a key with the
               wrong certificate.
- `ca.pem`     the CA certificate alone, for users to download and trust. Derived from
               `ca.key`: rewritten when it is missing or holds another valid certificate
               (a crash between the two renames of a CA regeneration).
- `server.pem` the leaf certificate followed by its encrypted private key; handed as-is
               to `SSLContext.load_cert_chain`, so the key is never on disk in clear.
- `customer.pem` (TLS-2) an imported certificate: leaf, intermediates, encrypted key.
               When present it is what the listener serves; the generated leaf is still
               kept up to date in `server.pem` but never replaces it.
- `previous.pem` the customer certificate served before the current one (one-click
               rollback), or `previous-generated` (empty marker): before the current
               customer certificate the generated leaf was served.

Invariants (what must never happen):
- A private key is used that is not PKCS#8 "ENCRYPTED PRIVATE KEY" under the key password.
- A key is paired with a certificate it does not match: every load compares the public keys.
- A damaged file is silently replaced: loading raises TLSFileError or TLSKeyPasswordError.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.paths import TLS_CA_PEM_NAME
from appliance.store.atomic import write_atomic
from appliance.tls.errors import TLSFileError, TLSKeyPasswordError
from appliance.tls.selfsigned import Issued

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.DOTALL)


class TLSFiles:
    """The files of one TLS directory, read and written under one key password."""

    def __init__(self, tls_dir: Path, password: bytes) -> None:
        self.dir = Path(tls_dir)
        self._password = password
        self.ca_key = self.dir / "ca.key"
        self.ca_pem = self.dir / TLS_CA_PEM_NAME  # the update launcher's health check trusts this file too
        self.leaf = self.dir / "server.pem"
        self.customer = self.dir / "customer.pem"
        self.customer_staged = self.dir / "customer.new.pem"
        self.customer_swap = self.dir / "customer.swap.pem"
        self.previous = self.dir / "previous.pem"
        self.previous_generated = self.dir / "previous-generated"

    def signature(self) -> tuple:
        """(name, inode, mtime, size) of every file that decides what is served: cheap enough
        (a few stat calls) to poll every few seconds from the event loop."""
        facts: list[tuple[str, int | None, int | None, int | None]] = []
        for path in (self.ca_key, self.leaf, self.customer, self.previous, self.previous_generated):
            try:
                st = path.stat()
                facts.append((path.name, st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                facts.append((path.name, None, None, None))
        return tuple(facts)

    def prepare_dir(self) -> None:
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.dir, 0o700)
        except OSError as exc:
            raise TLSFileError(f"cannot use the TLS directory {self.dir}: {exc.strerror}") from None

    def write(self, path: Path, data: bytes) -> None:
        try:
            write_atomic(path, data, 0o600)
        except OSError as exc:
            raise TLSFileError(f"cannot write {path}: {exc.strerror}") from None

    def load_ca(self) -> Issued | None:
        if not self.ca_key.exists():
            if self.ca_pem.exists():
                raise TLSFileError(
                    f"{self.ca_pem} exists but the CA key {self.ca_key} is missing; restore it from a "
                    "backup, or delete ca.pem to generate a new CA (every browser must then trust the new one)"
                )
            return None
        ca = self.load_pair(self.ca_key)
        basic = _basic_constraints(ca.cert)
        if basic is None or not basic.ca:
            raise TLSFileError(f"{self.ca_key} does not hold a CA certificate")
        if self.ca_pem.exists():
            # A damaged public copy is reported, not silently rewritten: it may be a failing disk.
            parse_cert(self.ca_pem, read(self.ca_pem))
        return ca

    def load_leaf(self) -> Issued | None:
        if not self.leaf.exists():
            return None
        return self.load_pair(self.leaf)

    def load_pair(self, path: Path) -> Issued:
        """Parse a file holding one certificate and its encrypted key; check they match."""
        blocks = pem_blocks(read(path))
        certs = [b for label, b in blocks if label == "CERTIFICATE"]
        keys = [(label, b) for label, b in blocks if label.endswith("PRIVATE KEY")]
        if len(certs) != 1 or len(keys) != 1:
            raise TLSFileError(f"{path} is damaged: expected one certificate and one private key")
        label, key_pem = keys[0]
        if label != "ENCRYPTED PRIVATE KEY":
            raise TLSFileError(f"the private key in {path} is not encrypted; refusing to use it")
        cert = parse_cert(path, certs[0])
        try:
            key = serialization.load_pem_private_key(key_pem, password=self._password)
        except ValueError as exc:
            if "password" in str(exc).lower() or "decrypt" in str(exc).lower():
                raise TLSKeyPasswordError(
                    f"cannot decrypt the private key in {path}: the key password is wrong or the file is damaged"
                ) from None
            raise TLSFileError(f"the private key in {path} is damaged") from None
        except (TypeError, UnsupportedAlgorithm):
            raise TLSFileError(f"the private key in {path} is damaged or of an unsupported kind") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TLSFileError(f"the private key in {path} is not an EC key")
        if spki(key.public_key()) != spki(cert.public_key()):
            raise TLSFileError(f"{path} is inconsistent: the private key does not match the certificate")
        return Issued(key, cert)

    def load_customer(self, path: Path) -> x509.Certificate | None:
        """The leaf of an imported certificate file, after checking its key decrypts and matches."""
        if not path.exists():
            return None
        blocks = pem_blocks(read(path))
        certs = [b for label, b in blocks if label == "CERTIFICATE"]
        keys = [b for label, b in blocks if label == "ENCRYPTED PRIVATE KEY"]
        if not certs or len(keys) != 1:
            raise TLSFileError(f"{path} is damaged: expected certificates and one encrypted private key")
        cert = parse_cert(path, certs[0])
        try:
            key = serialization.load_pem_private_key(keys[0], password=self._password)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise TLSKeyPasswordError(f"cannot decrypt the private key in {path}: wrong key password or "
                                      "damaged file") from None
        if spki(key.public_key()) != spki(cert.public_key()):
            raise TLSFileError(f"{path} is inconsistent: the private key does not match the certificate")
        return cert

    def previous_certificate(self) -> x509.Certificate | None:
        """The certificate in previous.pem (never decrypts its key: the dashboard asks often)."""
        certs = [b for label, b in pem_blocks(read(self.previous)) if label == "CERTIFICATE"]
        return parse_cert(self.previous, certs[0]) if certs else None


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """(label, whole PEM block) for every PEM block in `data`, in order."""
    return [(m.group(1).decode("ascii"), m.group(0)) for m in _PEM.finditer(data)]


def read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TLSFileError(f"cannot read {path}: {exc.strerror}") from None


def parse_cert(path: Path, pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise TLSFileError(f"{path} is damaged: it does not hold a readable certificate") from None


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None
