"""Keeps the appliance's CA and server certificate on disk and serves them (TLS-1, TLS-3).

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

Invariants:
- Private keys are PKCS#8 "ENCRYPTED PRIVATE KEY" under `key_password`, never plaintext.
- An existing CA is never replaced because a file is unreadable, damaged or the password
  is wrong: `ensure()` raises and writes nothing. The CA is replaced only when it no longer
  covers the wanted names or is about to expire, and that returns "tls.ca.generate".
- The leaf is renewed when within `renew_before_days` of expiry, when it no longer
  covers the wanted names, or when it was not issued by the current CA.
- `ssl_context()` returns one listening context for the life of the manager; listeners
  never restart. Hot swap: a renewal loads the new chain into a fresh context that no
  connection uses yet, then publishes it with one reference assignment; the listening
  context's servername callback (run for every ClientHello, with or without SNI) moves
  each new handshake onto the published context. Connections in flight keep theirs.
  Why not `load_cert_chain` again on the live context: Python releases the GIL inside it
  and OpenSSL does not lock an SSL_CTX against a concurrent SSL_new, so a renewal from a
  worker thread (`asyncio.to_thread`) could race a handshake (a key-less certificate for
  a moment, or worse). This way `renew_if_due()` is safe from any thread.
- `ensure()`/`renew_if_due()`/`install_customer()`/`rollback()`/`regenerate()` must not run
  concurrently with each other (one caller at a time).
- An imported certificate is written only after `importer` validated it and it loaded
  into a fresh context; automatic renewal never replaces a customer certificate.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import ssl
import threading
from pathlib import Path

import msgspec
import psutil
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.clock import Clock
from appliance.config import TLSConfig
from appliance.errors import OutpostError
from appliance.store.atomic import fsync_dir, write_atomic
from appliance.tls import importer, selfsigned
from appliance.tls.selfsigned import Issued, Names

EVENT_CA_GENERATE = "tls.ca.generate"
EVENT_CERT_GENERATE = "tls.cert.generate"
EVENT_CERT_RENEW = "tls.cert.renew"
EVENT_CERT_IMPORT = "tls.cert.import"
EVENT_CERT_ROLLBACK = "tls.cert.rollback"

DAY = 86400.0

# Mozilla "intermediate" (v5.7) TLS 1.2 suites: ECDHE key exchange and AEAD only.
# TLS 1.3 suites are not set here: OpenSSL's defaults are all AEAD.
INTERMEDIATE_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
])


class TLSError(OutpostError):
    """The TLS material cannot be used; the message names the file and what to do."""

    code = "tls_error"
    status = 500


class TLSFileError(TLSError):
    """A TLS file is unreadable, damaged or inconsistent (key does not match certificate)."""

    code = "tls_file_invalid"


class TLSKeyPasswordError(TLSError):
    """A private key does not decrypt: wrong key password, or the file is damaged."""

    code = "tls_key_password"


class CertificateInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What the console and the UI show about the certificates in use."""

    ca_fingerprint: str
    leaf_fingerprint: str
    leaf_not_after: float
    leaf_sans: list[str]
    profile: str
    source: str = "generated"
    """"generated" (the local CA's leaf) or "customer" (an imported certificate)."""
    leaf_subject: str = ""
    leaf_issuer: str = ""
    previous: str = ""
    """What rollback() goes back to: a fingerprint, "generated", or "" (nothing)."""


class TLSManager:
    """Owns `tls_dir`: generates, checks, renews and serves the local CA and leaf."""

    def __init__(self, tls_dir: Path, config: TLSConfig, hostname: str, clock: Clock, key_password: bytes) -> None:
        if not key_password:
            raise ValueError("key_password must not be empty")
        self._dir = Path(tls_dir)
        self._config = config
        self._hostname = hostname
        self._clock = clock
        self._password = key_password
        self._ca: Issued | None = None
        self._leaf: Issued | None = None
        self._context: ssl.SSLContext | None = None  # the listening context, never replaced
        self._live: ssl.SSLContext | None = None  # holds the current chain; new handshakes move here
        self._customer: x509.Certificate | None = None  # the imported leaf being served, if any
        self._served: bytes = b""  # DER of the leaf the live context serves
        self._force_leaf = False
        self._signature: tuple | None = None  # files_signature() when ensure() last read the files
        self._lock = threading.RLock()  # file changes come from the UI, the CLI path and maintenance

    @property
    def ca_pem_path(self) -> Path:
        """The CA certificate users download and trust (PEM)."""
        return self._dir / "ca.pem"

    @property
    def _ca_key_path(self) -> Path:
        return self._dir / "ca.key"

    @property
    def _leaf_path(self) -> Path:
        return self._dir / "server.pem"

    @property
    def _customer_path(self) -> Path:
        return self._dir / "customer.pem"

    @property
    def _previous_path(self) -> Path:
        return self._dir / "previous.pem"

    @property
    def _previous_generated(self) -> Path:
        return self._dir / "previous-generated"

    @property
    def key_password(self) -> bytes:
        """The password private keys are stored under (derived from the database key)."""
        return self._password

    def wanted_names(self) -> Names:
        """Configured hostname, machine hostname, localhost and every local address."""
        try:
            return selfsigned.names_for(self._hostname, socket.gethostname(), _local_addresses())
        except ValueError as exc:
            raise TLSError(f"cannot make a certificate for this host: {exc}") from None

    def ensure(self) -> list[str]:
        """Load, check, and create or renew the CA and leaf as needed.

        Returns the audit events that happened, in order: "tls.ca.generate",
        "tls.cert.generate", "tls.cert.renew". Raises TLSError (writing nothing)
        when existing files are unreadable, damaged or do not decrypt. If the live
        context exists and the leaf changed, new handshakes get the new leaf (hot swap).
        """
        with self._lock:
            return self._ensure()

    def _ensure(self) -> list[str]:
        names = self.wanted_names()
        self._prepare_dir()
        # Read and check everything before writing anything.
        ca = self._load_ca()
        leaf = self._load_leaf()
        customer = self._load_customer(self._customer_path)
        now = self._clock.now()
        events: list[str] = []

        if ca is None or not selfsigned.ca_covers(ca.cert, names) or self._due(ca.cert, now):
            ca = selfsigned.generate_ca(names, now=now, days=self._config.ca_days)
            self._write(self._ca_key_path, selfsigned.encrypted_key_pem(ca.key, self._password) + selfsigned.cert_pem(ca.cert))
            events.append(EVENT_CA_GENERATE)
        if not self.ca_pem_path.exists() or self.ca_pem_path.read_bytes() != selfsigned.cert_pem(ca.cert):
            self._write(self.ca_pem_path, selfsigned.cert_pem(ca.cert))

        stale = self._force_leaf or leaf is None or (
            not _issued_by(leaf.cert, ca.cert) or not selfsigned.leaf_covers(leaf.cert, names) or self._due(leaf.cert, now)
        )
        if stale:
            events.append(EVENT_CERT_GENERATE if leaf is None else EVENT_CERT_RENEW)
            leaf = selfsigned.generate_leaf(ca, names, now=now, days=self._config.leaf_days)
            self._write(self._leaf_path, selfsigned.cert_pem(leaf.cert) + selfsigned.encrypted_key_pem(leaf.key, self._password))
            self._force_leaf = False

        self._ca, self._leaf, self._customer = ca, leaf, customer
        self._signature = self.files_signature()
        served = self._served_cert()
        if self._context is not None and self._served != served.public_bytes(serialization.Encoding.DER):
            fresh = server_context(self._config.profile)
            self._load_chain(fresh)
            self._live = fresh  # one reference assignment: handshakes see old or new, whole
        return events

    def files_signature(self) -> tuple:
        """(name, inode, mtime, size) of every file that decides what is served: cheap enough
        (a few stat calls) to poll every few seconds from the event loop."""
        facts = []
        for path in (self._ca_key_path, self._leaf_path, self._customer_path, self._previous_path,
                     self._previous_generated):
            try:
                st = path.stat()
                facts.append((path.name, st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                facts.append((path.name, None, None, None))
        return tuple(facts)

    def changed_on_disk(self) -> bool:
        """True when another process (`outpost cert import|rollback|regenerate`) changed the files
        since `ensure()` last read them."""
        return self._signature is not None and self.files_signature() != self._signature

    def reload_if_changed(self) -> list[str]:
        """`ensure()` if the files changed on disk (hot swap to what the CLI installed), else []."""
        with self._lock:
            return self._ensure() if self.changed_on_disk() else []

    def renew_if_due(self) -> list[str]:
        """Periodic entry point (e.g. daily): `ensure()`, which hot-swaps a renewed leaf.

        Connections already established keep their certificate; new handshakes get the
        new one. On TLSError the live context keeps serving the previous certificate.
        """
        return self.ensure()

    def ssl_context(self) -> ssl.SSLContext:
        """The listening context for the configured profile (built once; renewals swap behind it).

        intermediate: TLS 1.2 and 1.3; TLS 1.2 limited to ECDHE with AES-GCM or ChaCha20.
        modern: TLS 1.3 only.
        """
        if self._context is None:
            if self._leaf is None:
                raise RuntimeError("TLSManager.ensure() must succeed before ssl_context()")
            context = server_context(self._config.profile)
            self._load_chain(context)
            context.sni_callback = self._select_context
            self._context = self._live = context
        return self._context

    def _select_context(self, ssl_object: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        live = self._live
        if live is not None and live is not context:
            # Same profile, newer chain. Until the first renewal this is a no-op.
            ssl_object.context = live

    def info(self) -> CertificateInfo:
        """Fingerprints, expiry and names of the certificates `ensure()` last settled on."""
        if self._ca is None or self._leaf is None:
            raise RuntimeError("TLSManager.ensure() must succeed before info()")
        cert = self._served_cert()
        return CertificateInfo(
            ca_fingerprint=selfsigned.fingerprint(self._ca.cert),
            leaf_fingerprint=selfsigned.fingerprint(cert),
            leaf_not_after=cert.not_valid_after_utc.timestamp(),
            leaf_sans=[selfsigned.printable(n) for n in selfsigned.sans(cert)],
            profile=self._config.profile,
            source="customer" if self._customer is not None else "generated",
            leaf_subject=selfsigned.name_text(cert.subject),
            leaf_issuer=selfsigned.name_text(cert.issuer),
            previous=self._previous_description(),
        )

    # -- customer certificates (TLS-2) -----------------------------------------------------

    def install_customer(self, bundle: importer.CustomerBundle) -> list[str]:
        """Serve a validated customer certificate from the next handshake on; keep the current one for rollback.

        Connections in flight keep their certificate. Raises TLSFileError (nothing
        changed) if the bundle does not load into a TLS context. Returns [] (nothing
        changed, no event) when the bundle is the certificate already served.
        """
        with self._lock:
            return self._install_customer(bundle)

    def _install_customer(self, bundle: importer.CustomerBundle) -> list[str]:
        if self._leaf is not None and bundle.fingerprint == selfsigned.fingerprint(self._served_cert()):
            # Re-importing what is served changes nothing: in particular the previous
            # certificate stays what rollback restores (it must not become this one).
            return []
        self._prepare_dir()
        staged = self._dir / "customer.new.pem"
        self._write(staged, importer.bundle_pem(bundle, self._password))
        try:
            self._load_chain(server_context(self._config.profile), staged)  # proves it loads, before any switch
            self._load_customer(staged)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        self._keep_current_as_previous()
        os.replace(staged, self._customer_path)
        fsync_dir(self._dir)
        return [EVENT_CERT_IMPORT, *self.ensure()]

    def rollback(self) -> list[str]:
        """Go back to the previously served certificate (and keep the current one as "previous")."""
        with self._lock:
            return self._rollback()

    def _rollback(self) -> list[str]:
        self._prepare_dir()
        if self._previous_path.exists():
            previous = self._load_customer(self._previous_path)
            if previous is not None and previous.not_valid_after_utc.timestamp() < self._clock.now():
                raise TLSError("the previous certificate has expired; import a current certificate instead")
            if self._customer_path.exists():
                swap = self._dir / "customer.swap.pem"
                os.replace(self._customer_path, swap)
                os.replace(self._previous_path, self._customer_path)
                os.replace(swap, self._previous_path)
            else:
                os.replace(self._previous_path, self._customer_path)
                self._write(self._previous_generated, b"")
        elif self._previous_generated.exists() and self._customer_path.exists():
            os.replace(self._customer_path, self._previous_path)
            self._previous_generated.unlink()
        else:
            raise TLSError("there is no previous certificate to go back to")
        fsync_dir(self._dir)
        return [EVENT_CERT_ROLLBACK, *self.ensure()]

    def regenerate(self) -> list[str]:
        """Serve a freshly generated local leaf; a customer certificate in use becomes "previous"."""
        with self._lock:
            self._prepare_dir()
            if self._customer_path.exists():
                self._previous_generated.unlink(missing_ok=True)
                os.replace(self._customer_path, self._previous_path)
                fsync_dir(self._dir)
            self._force_leaf = True
            return self._ensure()

    def _keep_current_as_previous(self) -> None:
        if self._customer_path.exists():
            self._previous_generated.unlink(missing_ok=True)
            os.replace(self._customer_path, self._previous_path)
        else:
            self._previous_path.unlink(missing_ok=True)
            self._write(self._previous_generated, b"")

    def _previous_description(self) -> str:
        # Called by info() (dashboard refreshes): reads the certificate only, never decrypts the key.
        if self._previous_path.exists():
            try:
                certs = [b for label, b in _pem_blocks(_read(self._previous_path)) if label == "CERTIFICATE"]
                return selfsigned.fingerprint(_parse_cert(self._previous_path, certs[0])) if certs else "unreadable"
            except TLSError:
                return "unreadable"
        return "generated" if self._previous_generated.exists() and self._customer is not None else ""

    def _served_cert(self) -> x509.Certificate:
        if self._customer is not None:
            return self._customer
        if self._leaf is None:
            raise RuntimeError("TLSManager.ensure() must succeed before use")
        return self._leaf.cert

    def _load_customer(self, path: Path) -> x509.Certificate | None:
        """The leaf of an imported certificate file, after checking its key decrypts and matches."""
        if not path.exists():
            return None
        blocks = _pem_blocks(_read(path))
        certs = [b for label, b in blocks if label == "CERTIFICATE"]
        keys = [b for label, b in blocks if label == "ENCRYPTED PRIVATE KEY"]
        if not certs or len(keys) != 1:
            raise TLSFileError(f"{path} is damaged: expected certificates and one encrypted private key")
        cert = _parse_cert(path, certs[0])
        try:
            key = serialization.load_pem_private_key(keys[0], password=self._password)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise TLSKeyPasswordError(f"cannot decrypt the private key in {path}: wrong key password or damaged file") from None
        if _spki(key.public_key()) != _spki(cert.public_key()):
            raise TLSFileError(f"{path} is inconsistent: the private key does not match the certificate")
        return cert

    # -- internals -------------------------------------------------------------

    def _due(self, cert: x509.Certificate, now: float) -> bool:
        return cert.not_valid_after_utc.timestamp() - now <= self._config.renew_before_days * DAY

    def _prepare_dir(self) -> None:
        try:
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self._dir, 0o700)
        except OSError as exc:
            raise TLSFileError(f"cannot use the TLS directory {self._dir}: {exc.strerror}") from None

    def _load_ca(self) -> Issued | None:
        if not self._ca_key_path.exists():
            if self.ca_pem_path.exists():
                raise TLSFileError(
                    f"{self.ca_pem_path} exists but the CA key {self._ca_key_path} is missing; restore it from a "
                    "backup, or delete ca.pem to generate a new CA (every browser must then trust the new one)"
                )
            return None
        ca = self._load_pair(self._ca_key_path)
        basic = _basic_constraints(ca.cert)
        if basic is None or not basic.ca:
            raise TLSFileError(f"{self._ca_key_path} does not hold a CA certificate")
        if self.ca_pem_path.exists():
            # A damaged public copy is reported, not silently rewritten: it may be a failing disk.
            _parse_cert(self.ca_pem_path, _read(self.ca_pem_path))
        return ca

    def _load_leaf(self) -> Issued | None:
        if not self._leaf_path.exists():
            return None
        return self._load_pair(self._leaf_path)

    def _load_pair(self, path: Path) -> Issued:
        """Parse a file holding one certificate and its encrypted key; check they match."""
        blocks = _pem_blocks(_read(path))
        certs = [b for label, b in blocks if label == "CERTIFICATE"]
        keys = [(label, b) for label, b in blocks if label.endswith("PRIVATE KEY")]
        if len(certs) != 1 or len(keys) != 1:
            raise TLSFileError(f"{path} is damaged: expected one certificate and one private key")
        label, key_pem = keys[0]
        if label != "ENCRYPTED PRIVATE KEY":
            raise TLSFileError(f"the private key in {path} is not encrypted; refusing to use it")
        cert = _parse_cert(path, certs[0])
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
        if _spki(key.public_key()) != _spki(cert.public_key()):
            raise TLSFileError(f"{path} is inconsistent: the private key does not match the certificate")
        return Issued(key, cert)

    def _load_chain(self, context: ssl.SSLContext, path: Path | None = None) -> None:
        if path is None:
            path = self._customer_path if self._customer is not None else self._leaf_path
            served = self._served_cert().public_bytes(serialization.Encoding.DER)
        else:
            served = b""
        try:
            context.load_cert_chain(path, password=self._password)
        except (ssl.SSLError, OSError) as exc:
            raise TLSFileError(f"cannot load {path} into the TLS context: {exc}") from None
        if served:
            self._served = served

    def _write(self, path: Path, data: bytes) -> None:
        try:
            write_atomic(path, data, 0o600)
        except OSError as exc:
            raise TLSFileError(f"cannot write {path}: {exc.strerror}") from None


def server_context(profile: str) -> ssl.SSLContext:
    """A server SSLContext for a Mozilla profile ("intermediate" or "modern"), without certificates."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if profile == "modern":
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    elif profile == "intermediate":
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(INTERMEDIATE_CIPHERS)
    else:
        raise ValueError(f"unknown TLS profile {profile!r}")
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.options |= ssl.OP_NO_COMPRESSION  # CRIME
    # Mozilla: every offered suite is strong, so let the client choose (ChaCha20 on
    # devices without AES hardware). Python turns server preference on by default.
    context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    # No session tickets: Python cannot rotate the ticket key, so one key would protect
    # every resumable session for the life of the process (breaking forward secrecy).
    # Browsers keep connections alive, so a full handshake (~0.9 ms ECDSA) is rare.
    context.options |= ssl.OP_NO_TICKET
    context.num_tickets = 0  # TLS 1.3 tickets; OP_NO_TICKET alone leaves stateful ones
    context.set_alpn_protocols(["http/1.1"])
    return context


def _local_addresses() -> list[str]:
    addresses: list[str] = []
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            ip = ipaddress.ip_address(entry.address.split("%", 1)[0])
            # IPv6 link-local needs a zone id; browsers cannot use it in a URL.
            if ip.version == 6 and ip.is_link_local:
                continue
            addresses.append(str(ip))
    return addresses


_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.DOTALL)


def _pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    return [(m.group(1).decode("ascii"), m.group(0)) for m in _PEM.finditer(data)]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TLSFileError(f"cannot read {path}: {exc.strerror}") from None


def _parse_cert(path: Path, pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise TLSFileError(f"{path} is damaged: it does not hold a readable certificate") from None


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def reencrypt_keys(tls_dir: Path, old_password: bytes, new_password: bytes) -> int:
    """Re-encrypt every private key under `tls_dir` from `old_password` to `new_password`.

    Idempotent (a file whose keys already open with the new password is left alone), so
    an interrupted database rekey can run it again. Each file is replaced atomically.
    Returns the number of files rewritten.
    """
    rewritten = 0
    if not Path(tls_dir).is_dir():
        return 0
    for path in sorted(Path(tls_dir).glob("*.key")) + sorted(Path(tls_dir).glob("*.pem")):
        data = _read(path)
        blocks = _pem_blocks(data)
        if not any(label == "ENCRYPTED PRIVATE KEY" for label, _ in blocks):
            continue
        out = []
        changed = False
        for label, block in blocks:
            if label == "ENCRYPTED PRIVATE KEY":
                try:
                    serialization.load_pem_private_key(block, password=new_password)
                except (ValueError, TypeError):
                    try:
                        key = serialization.load_pem_private_key(block, password=old_password)
                    except (ValueError, TypeError):
                        raise TLSKeyPasswordError(f"the private key in {path} opens with neither the old nor the new "
                                                  "database key") from None
                    block = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.BestAvailableEncryption(new_password))
                    changed = True
            out.append(block)
        if changed:
            write_atomic(path, b"".join(out), 0o600)
            rewritten += 1
    return rewritten
