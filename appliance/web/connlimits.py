"""The front door of the HTTPS listener: who may connect, how many, and how big a request head may be.

Issue 11, findings 1 and 2 (ACL-3, ACL-4). Policy lives here; web/server.py plugs it into
uvicorn's protocol (the only module allowed to import uvicorn).

Invariants:
- Every TCP connection is judged by `Listener` as it is accepted, before a byte is read or
  a TLS byte is sent: a peer outside the IP allow list, above its per-address cap or above
  the global cap is reset at once. A trusted proxy is always admitted and has no per-address
  cap (it carries many clients); the HTTP layer then judges the forwarded client per request.
- An admitted connection holds one `Slot` until its socket is gone, whichever protocol (TLS
  handshake, HTTP, WebSocket) owns it then; `Slot.release` is idempotent.
- The TLS handshake has `handshake_timeout`; a request head has `header_timeout` and
  `max_header_bytes`, counted as bytes arrive, so an unfinished head is never buffered past
  the limit (plus one read).
- The global cap fits under the open-file limit with RESERVED_FDS left for the database,
  logs, certificates and SSH connections to devices.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import resource
import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("outpost.web")

RESERVED_FDS = 256
MIN_CONNECTIONS = 16
# Closing a TLS connection sends close_notify and waits this long for the peer's reply before
# dropping the socket (uvloop waits 30 s by default, which held a graceful stop for its full 10 s).
TLS_CLOSE_SECONDS = 2.0
REFUSAL_LOG_SECONDS = 60.0
ACCEPT_BATCH = 64


@dataclass(frozen=True)
class Limits:
    """The [web] connection and request-head limits (see config.WebConfig for each one)."""

    handshake_timeout: float
    header_timeout: float
    max_header_bytes: int
    max_header_count: int
    max_url_bytes: int
    max_connections: int
    max_per_address: int

    @classmethod
    def from_config(cls, web) -> Limits:
        return cls(handshake_timeout=web.tls_handshake_timeout, header_timeout=web.header_timeout,
                   max_header_bytes=web.max_header_bytes, max_header_count=web.max_header_count,
                   max_url_bytes=web.max_url_bytes, max_connections=web.max_connections,
                   max_per_address=web.max_connections_per_address)


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (systemd's soft default is 1024); return (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        # e.g. above fs.nr_open: keep the soft limit; connection_cap() sizes the cap to it
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, hard


def connection_cap(limits: Limits) -> int | None:
    """The global cap: [web] max_connections, lowered (and logged) to fit under the soft open-file
    limit with RESERVED_FDS to spare; None if not even MIN_CONNECTIONS fit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = limits.max_connections
    if soft != resource.RLIM_INFINITY:
        cap = min(cap, soft - RESERVED_FDS)
    if cap < MIN_CONNECTIONS:
        return None
    if cap < limits.max_connections:
        log.warning("connection cap lowered to fit the open-file limit",
                    extra={"max_connections": limits.max_connections, "effective": cap, "nofile_soft": soft})
    log.info("connection limits", extra={"max_connections": cap, "max_connections_per_address": limits.max_per_address,
                                         "tls_handshake_timeout": limits.handshake_timeout,
                                         "header_timeout": limits.header_timeout,
                                         "max_header_bytes": limits.max_header_bytes,
                                         "max_header_count": limits.max_header_count,
                                         "max_url_bytes": limits.max_url_bytes})
    return cap


class HeadRefused(Exception):
    """A request head broke a limit: answer `status` with `code`/`message`, then close."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class HeadBudget:
    """Counts one request head as it arrives; raises HeadRefused as soon as a limit is passed."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.reset()

    def reset(self) -> None:
        self.received = 0   # raw bytes read while the head was incomplete (an undercount by at most one read)
        self.parsed = 0     # bytes of the target and of completed header fields
        self.fields = 0

    def bytes_read(self, n: int) -> None:
        self.received += n
        if self.received > self.limits.max_header_bytes:
            raise self._too_large()

    def target(self, length: int) -> None:
        if length > self.limits.max_url_bytes:
            raise HeadRefused(414, "uri_too_long",
                              f"The request target is too long: at most {self.limits.max_url_bytes} bytes are allowed.")

    def field(self, target_length: int, name_length: int, value_length: int) -> None:
        self.fields += 1
        self.parsed += name_length + value_length + 4  # "name: value\r\n"
        if self.fields > self.limits.max_header_count:
            raise HeadRefused(431, "too_many_headers",
                              f"Too many header fields: at most {self.limits.max_header_count} are allowed.")
        if target_length + self.parsed > self.limits.max_header_bytes:
            raise self._too_large()

    def _too_large(self) -> HeadRefused:
        return HeadRefused(431, "headers_too_large",
                           f"The request headers are too large: at most {self.limits.max_header_bytes} bytes in all.")


class Slot:
    """One admitted connection's place in the counts; released once when its socket goes away."""

    __slots__ = ("_gate", "_address", "_released")

    def __init__(self, gate: Gate, address: str) -> None:
        self._gate, self._address, self._released = gate, address, False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._gate._release(self._address)


class Gate:
    """Admission at accept time: the IP allow list, then the per-address and global caps."""

    def __init__(self, limits: Limits, *, cap: int, allow: Callable[[str], bool] | None,
                 trusted_proxies: list[str]) -> None:
        self.limits = limits
        self.cap = cap
        self.allow = allow
        self.trusted = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]
        self.total = 0
        self.by_address: dict[str, int] = {}
        self.tasks: set[asyncio.Task] = set()  # TLS handshakes under way
        self.closing = False
        self.refused = {"not_allowed": 0, "per_address": 0, "global": 0, "stopping": 0}
        self._logged_at = time.monotonic()

    def _is_trusted(self, address: str) -> bool:
        try:
            addr = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        return any(addr in net for net in self.trusted)

    def admit(self, address: str) -> Slot | None:
        """A Slot for a new connection from `address`, or None: abort it now."""
        trusted = self._is_trusted(address)
        reason = None
        if self.closing:
            reason = "stopping"
        elif not trusted and self.allow is not None and not self.allow(address):
            reason = "not_allowed"
        elif self.total >= self.cap:
            reason = "global"
        elif not trusted and self.by_address.get(address, 0) >= self.limits.max_per_address:
            reason = "per_address"
        if reason is not None:
            self._refuse(reason)
            return None
        self.total += 1
        self.by_address[address] = self.by_address.get(address, 0) + 1
        return Slot(self, address)

    def _release(self, address: str) -> None:
        self.total -= 1
        left = self.by_address.get(address, 1) - 1
        if left > 0:
            self.by_address[address] = left
        else:
            self.by_address.pop(address, None)

    def _refuse(self, reason: str) -> None:
        # One summary line a minute at most: a flood must not become a log flood.
        self.refused[reason] += 1
        now = time.monotonic()
        if now - self._logged_at >= REFUSAL_LOG_SECONDS:
            log.warning("connections refused", extra={**{f"refused_{k}": v for k, v in self.refused.items()},
                                                      "open_connections": self.total})
            self.refused = dict.fromkeys(self.refused, 0)
            self._logged_at = now

    def close(self) -> None:
        """Stop admitting and drop connections still in their TLS handshake (graceful stop)."""
        self.closing = True
        for task in list(self.tasks):
            task.cancel()


class Listener:
    """Accepts connections itself, so each peer is judged before anything reads from its socket.

    (A protocol given to `loop.create_server` cannot do this: uvloop starts reading right after
    `connection_made` returns, before a TLS upgrade could be put in place, and with `ssl=` it
    starts the handshake before the protocol learns the peer.) Admitted sockets are handed to
    `loop.connect_accepted_socket` with TLS, the handshake deadline and a short close;
    `make_http(slot)` builds the HTTP protocol that owns the slot once the handshake is done.
    Quacks like an asyncio Server (close, wait_closed) for uvicorn's shutdown.
    """

    def __init__(self, sock: socket.socket, gate: Gate, ssl_context: ssl.SSLContext,
                 make_http: Callable[[Slot], asyncio.Protocol]) -> None:
        self.sock = sock
        self.gate = gate
        self.ssl_context = ssl_context
        self.make_http = make_http
        self.loop = asyncio.get_running_loop()
        self.accepting = False
        self._resume: asyncio.TimerHandle | None = None

    def start(self) -> Listener:
        self.sock.setblocking(False)
        self.loop.add_reader(self.sock.fileno(), self._accept)
        self.accepting = True
        return self

    def close(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
        if self.accepting:
            self.loop.remove_reader(self.sock.fileno())
            self.accepting = False

    async def wait_closed(self) -> None:
        return None

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):  # bounded: a flood of connects must not starve requests
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._pause(exc)  # the kernel keeps the rest in the backlog meanwhile
                    return
                raise
            slot = self.gate.admit(str(addr[0]))
            if slot is None:
                _reset(conn)
                continue
            task = self.loop.create_task(self._start_tls(conn, slot))
            self.gate.tasks.add(task)
            task.add_done_callback(self.gate.tasks.discard)

    def _pause(self, exc: OSError) -> None:
        log.warning("out of file descriptors; not accepting for a second", extra={"error": exc.strerror or ""})
        self.loop.remove_reader(self.sock.fileno())
        self.accepting = False

        def resume() -> None:
            self._resume = None
            if not self.gate.closing:
                self.start()
        self._resume = self.loop.call_later(1.0, resume)

    async def _start_tls(self, conn: socket.socket, slot: Slot) -> None:
        http = self.make_http(slot)
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            transport, _ = await self.loop.connect_accepted_socket(
                lambda: http, conn, ssl=self.ssl_context, ssl_handshake_timeout=self.gate.limits.handshake_timeout,
                ssl_shutdown_timeout=TLS_CLOSE_SECONDS)
        except Exception:
            # Handshake deadline passed, a client that does not speak TLS, a reset.
            conn.close()
            slot.release()
            return
        except asyncio.CancelledError:  # graceful stop while the handshake was under way
            conn.close()
            slot.release()
            raise
        # A socket lost mid-handshake "completes" with a closed transport and its HTTP
        # protocol never hears of it: release the slot here (Slot.release is idempotent).
        if self.gate.closing or transport.is_closing():
            transport.abort()
            slot.release()


def _reset(conn: socket.socket) -> None:
    """Close with RST (linger 0): no TIME_WAIT kept for a refused peer, no byte sent."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
