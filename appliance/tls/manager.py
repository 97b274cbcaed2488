"""`TLSManager`: keeps the appliance's CA and server certificate on disk and serves them (TLS-1..4).

It owns `tls_dir` (layout and checks: files.py), the live context (swap without restart:
context.py) and customer certificates (import and rollback: customer.py), and records
what it did through the `audit` callable it is built with (as `updates.apply.Updater`
does), so no caller has to: certificate generation and renewal as the system, imports,
rollbacks and regenerations as the operator who asked.

Invariants:
- Private keys are PKCS#8 "ENCRYPTED PRIVATE KEY" under `key_password`, never plaintext.
- An existing CA is never replaced because a file is unreadable, damaged or the password
  is wrong: `ensure()` raises and writes nothing. The CA is replaced only when it no longer
  covers the wanted names or is about to expire (audited as tls.ca.generate).
- The leaf is renewed when within `renew_before_days` of expiry, when it no longer
  covers the wanted names, or when it was not issued by the current CA.
- `ssl_context()` returns one listening context for the life of the manager; listeners
  never restart, and `renew_if_due()` is safe from any thread (context.py says why).
- `ensure()`/`renew_if_due()`/`install_customer()`/`rollback()`/`regenerate()` run one at
  a time (a lock): file changes come from the UI, the maintenance task and the CLI watcher.
- An imported certificate is written only after `importer` validated it and it loaded
  into a fresh context; automatic renewal never replaces a customer certificate.
- A change is made and not audited: each method records its events before it returns
  (files cannot join a database transaction, so the record follows the change at once).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from pathlib import Path
from typing import Protocol

import msgspec
import psutil
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from appliance.audit.events import Event
from appliance.audit.models import Actor
from appliance.clock import Clock
from appliance.config import TLSConfig
from appliance.tls import customer, importer, selfsigned
from appliance.tls.context import LiveContext
from appliance.tls.errors import TLSError
from appliance.tls.files import TLSFiles, issued_by
from appliance.tls.selfsigned import Issued, Names

DAY = 86400.0


class TLSAudit(Protocol):
    """Records one TLS event in its own transaction (e.g. `AuditService.record_alone_sync`)."""

    def __call__(self, event: Event, *, actor: Actor, target: str, details: dict) -> object: ...


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

    def __init__(self, tls_dir: Path, config: TLSConfig, hostname: str, clock: Clock, key_password: bytes, *,
                 audit: TLSAudit) -> None:
        if not key_password:
            raise ValueError("key_password must not be empty")
        self._files = TLSFiles(Path(tls_dir), key_password)
        self._config = config
        self._hostname = hostname
        self._clock = clock
        self._password = key_password
        self._audit = audit
        self._live = LiveContext(config.profile, key_password)
        self._ca: Issued | None = None
        self._leaf: Issued | None = None
        self._customer: x509.Certificate | None = None  # the imported leaf being served, if any
        self._force_leaf = False
        self._signature: tuple | None = None  # files_signature() when ensure() last read the files
        self._lock = threading.RLock()

    @property
    def ca_pem_path(self) -> Path:
        """The CA certificate users download and trust (PEM)."""
        return self._files.ca_pem

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

    # -- what the appliance does by itself (audited as the system) -----------------------

    def ensure(self) -> list[Event]:
        """Load, check, and create or renew the CA and leaf as needed; return the events recorded.

        Events, in order: tls.ca.generate, tls.cert.generate or tls.cert.renew. Raises
        TLSError (writing nothing) when existing files are unreadable, damaged or do not
        decrypt. If the live context exists and the leaf changed, new handshakes get the
        new leaf (hot swap).
        """
        with self._lock:
            events = self._ensure()
        return self._record(events, Actor.system(), via="")

    def renew_if_due(self) -> list[Event]:
        """Periodic entry point (e.g. daily): `ensure()`, which hot-swaps a renewed leaf.

        Connections already established keep their certificate; new handshakes get the
        new one. On TLSError the live context keeps serving the previous certificate.
        """
        return self.ensure()

    def files_signature(self) -> tuple:
        """(name, inode, mtime, size) of every file that decides what is served (cheap: a few stats)."""
        return self._files.signature()

    def changed_on_disk(self) -> bool:
        """True when another process (`outpost cert import|rollback|regenerate`) changed the files
        since `ensure()` last read them."""
        return self._signature is not None and self.files_signature() != self._signature

    def reload_if_changed(self) -> list[Event]:
        """`ensure()` if the files changed on disk (hot swap to what the CLI installed), else []."""
        with self._lock:
            events = self._ensure() if self.changed_on_disk() else []
        return self._record(events, Actor.system(), via="")

    # -- what an operator asks for (audited as that operator) -----------------------------

    def install_customer(self, bundle: importer.CustomerBundle, *, actor: Actor, via: str) -> list[Event]:
        """Serve a validated customer certificate from the next handshake on; keep the current one for rollback.

        Connections in flight keep their certificate. Raises TLSFileError (nothing
        changed) if the bundle does not load into a TLS context. Returns [] (nothing
        changed, nothing recorded) when the bundle is the certificate already served.
        """
        with self._lock:
            if self._leaf is not None and bundle.fingerprint == selfsigned.fingerprint(self._served_cert()):
                # Re-importing what is served changes nothing: in particular the previous
                # certificate stays what rollback restores (it must not become this one).
                return []
            customer.install(self._files, self._live, bundle, self._password)
            events = [Event.TLS_CERT_IMPORT, *self._ensure()]
        return self._record(events, actor, via=via)

    def rollback(self, *, actor: Actor, via: str) -> list[Event]:
        """Go back to the previously served certificate (and keep the current one as "previous")."""
        with self._lock:
            customer.rollback(self._files, self._clock.now())
            events = [Event.TLS_CERT_ROLLBACK, *self._ensure()]
        return self._record(events, actor, via=via)

    def regenerate(self, *, actor: Actor, via: str) -> list[Event]:
        """Serve a freshly generated local leaf; a customer certificate in use becomes "previous"."""
        with self._lock:
            customer.step_aside(self._files)
            self._force_leaf = True
            done = self._ensure()
        # The new leaf is the point of the request, not a renewal: it is recorded as tls.cert.regenerate.
        return self._record([Event.TLS_CERT_REGENERATE, *[e for e in done if e is not Event.TLS_CERT_RENEW]],
                            actor, via=via)

    # -- serving --------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """The listening context for the configured profile (built once; renewals swap behind it).

        intermediate: TLS 1.2 and 1.3; TLS 1.2 limited to ECDHE with AES-GCM or ChaCha20.
        modern: TLS 1.3 only.
        """
        if not self._live.started and self._leaf is None:
            raise RuntimeError("TLSManager.ensure() must succeed before ssl_context()")
        return self._live.listening(self._served_path(), self._served_der())

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
            # Read on every dashboard refresh: reads the certificate only, never decrypts the key.
            previous=customer.previous_description(self._files, serving_customer=self._customer is not None),
        )

    # -- internals ------------------------------------------------------------------------

    def _ensure(self) -> list[Event]:
        names = self.wanted_names()
        files = self._files
        files.prepare_dir()
        # Read and check everything before writing anything.
        ca, leaf, served_customer = files.load_ca(), files.load_leaf(), files.load_customer(files.customer)
        now = self._clock.now()
        events: list[Event] = []
        if ca is None or not selfsigned.ca_covers(ca.cert, names) or self._due(ca.cert, now):
            ca = selfsigned.generate_ca(names, now=now, days=self._config.ca_days)
            pem = selfsigned.encrypted_key_pem(ca.key, self._password) + selfsigned.cert_pem(ca.cert)
            files.write(files.ca_key, pem)
            events.append(Event.TLS_CA_GENERATE)
        if not files.ca_pem.exists() or files.ca_pem.read_bytes() != selfsigned.cert_pem(ca.cert):
            files.write(files.ca_pem, selfsigned.cert_pem(ca.cert))
        stale = self._force_leaf or leaf is None or (
            not issued_by(leaf.cert, ca.cert) or not selfsigned.leaf_covers(leaf.cert, names)
            or self._due(leaf.cert, now)
        )
        if stale:
            events.append(Event.TLS_CERT_GENERATE if leaf is None else Event.TLS_CERT_RENEW)
            leaf = selfsigned.generate_leaf(ca, names, now=now, days=self._config.leaf_days)
            pem = selfsigned.cert_pem(leaf.cert) + selfsigned.encrypted_key_pem(leaf.key, self._password)
            files.write(files.leaf, pem)
            self._force_leaf = False
        self._ca, self._leaf, self._customer = ca, leaf, served_customer
        self._signature = self.files_signature()
        if self._live.started and self._live.served != self._served_der():
            self._live.publish(self._served_path(), self._served_der())
        return events

    def _record(self, events: list[Event], actor: Actor, *, via: str) -> list[Event]:
        """Audit each event once: the fingerprint it concerns; for an operator, the certificate and the channel."""
        events = list(dict.fromkeys(events))
        if not events:
            return events
        info = self.info()
        target = info.leaf_subject[:200] if via else ""
        for event in events:
            fingerprint = info.ca_fingerprint if event is Event.TLS_CA_GENERATE else info.leaf_fingerprint
            details = {"fingerprint": fingerprint, **({"via": via} if via else {})}
            self._audit(event, actor=actor, target=target, details=details)
        return events

    def _served_cert(self) -> x509.Certificate:
        if self._customer is not None:
            return self._customer
        if self._leaf is None:
            raise RuntimeError("TLSManager.ensure() must succeed before use")
        return self._leaf.cert

    def _served_path(self) -> Path:
        return self._files.customer if self._customer is not None else self._files.leaf

    def _served_der(self) -> bytes:
        return self._served_cert().public_bytes(serialization.Encoding.DER)

    def _due(self, cert: x509.Certificate, now: float) -> bool:
        return cert.not_valid_after_utc.timestamp() - now <= self._config.renew_before_days * DAY


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
