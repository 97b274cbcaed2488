"""Server SSL contexts and the live certificate swap (TLS-1, TLS-3).

`LiveContext.listening()` returns one listening context for the life of the process;
listeners never restart. Hot swap: `publish()` loads the new chain into a fresh context
that no connection uses yet, then publishes it with one reference assignment; the
listening context's servername callback (run for every ClientHello, with or without SNI)
moves each new handshake onto the published context. Connections in flight keep theirs.

Why not `load_cert_chain` again on the live context: Python releases the GIL inside it
and OpenSSL does not lock an SSL_CTX against a concurrent SSL_new, so a renewal from a
worker thread (`asyncio.to_thread`) could race a handshake (a key-less certificate for a
moment, or worse). This way a swap is safe from any thread.

Invariants (what must never happen):
- TLS below 1.2, a non-AEAD suite, compression or session tickets offered.
- A chain is published that did not load into a context first.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from appliance.tls.errors import TLSFileError

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


def server_context(profile: str) -> ssl.SSLContext:
    """A server SSLContext for a Mozilla profile ("intermediate" or "modern"), without certificates.

    intermediate: TLS 1.2 and 1.3; TLS 1.2 limited to ECDHE with AES-GCM or ChaCha20.
    modern: TLS 1.3 only.
    """
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


def load_chain(context: ssl.SSLContext, path: Path, password: bytes) -> None:
    """Load a PEM chain with its encrypted key into `context`; TLSFileError if it does not load."""
    try:
        context.load_cert_chain(path, password=password)
    except (ssl.SSLError, OSError) as exc:
        raise TLSFileError(f"cannot load {path} into the TLS context: {exc}") from None


class LiveContext:
    """The listening context (built once) and the context new handshakes are moved onto."""

    def __init__(self, profile: str, password: bytes) -> None:
        self._profile, self._password = profile, password
        self._listening: ssl.SSLContext | None = None  # never replaced once built
        self._live: ssl.SSLContext | None = None  # holds the current chain; new handshakes move here
        self.served = b""  # DER of the leaf the live context serves

    @property
    def started(self) -> bool:
        return self._listening is not None

    def listening(self, path: Path, served: bytes) -> ssl.SSLContext:
        """The listening context, built from `path` on the first call (later calls return it as is)."""
        if self._listening is None:
            context = server_context(self._profile)
            load_chain(context, path, self._password)
            self.served = served
            context.sni_callback = self._select_context
            self._listening = self._live = context
        return self._listening

    def publish(self, path: Path, served: bytes) -> None:
        """New handshakes get the chain in `path` (DER leaf `served`); connections in flight keep theirs."""
        fresh = server_context(self._profile)
        load_chain(fresh, path, self._password)
        self.served = served
        self._live = fresh  # one reference assignment: handshakes see old or new, whole

    def proves_loadable(self, path: Path) -> None:
        """Raise TLSFileError unless `path` loads into a context of this profile."""
        load_chain(server_context(self._profile), path, self._password)

    def _select_context(self, ssl_object: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        live = self._live
        if live is not None and live is not context:
            # Same profile, newer chain. Until the first renewal this is a no-op.
            ssl_object.context = live
