"""Raw TCP/TLS clients for the front-door tests: connections from a chosen loopback source
address, hand-written requests, and "was this connection closed?" checks.

httpx hides exactly what these tests look at (half-sent heads, idle sockets, resets), so
they speak HTTP/1.1 over `ssl` sockets directly.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from pathlib import Path

import httpx

REQUIRED_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "strict-transport-security": "max-age=",
    "permissions-policy": "camera=()",
    "cache-control": "no-store",
}


def tcp(appliance, source: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    """A plain TCP connection to the appliance from `source` (any 127.0.0.0/8 address)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    # A blocking connect returns once TCP is established; with a timeout Python polls
    # SO_ERROR afterwards and would report a refusal's immediate RST as a connect error.
    sock.connect(("127.0.0.1", appliance.port))
    sock.settimeout(timeout)
    return sock


def tls(appliance, source: str = "127.0.0.1", timeout: float = 10.0) -> ssl.SSLSocket:
    """A TLS connection (handshake done) trusting only the appliance's CA."""
    return appliance.tls().wrap_socket(tcp(appliance, source, timeout), server_hostname="localhost")


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True if the peer closes (EOF, reset, TLS alert) within `seconds`; False if still open."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, min(0.5, deadline - time.monotonic())))
        try:
            if sock.recv(65536) == b"":
                return True
        except (TimeoutError, socket.timeout, ssl.SSLWantReadError):
            continue
        except OSError:  # ECONNRESET, ssl.SSLError (EOF, alerts): the server closed it
            return True
    return False


def closed_within_each(socks: list[socket.socket], seconds: float) -> list[bool]:
    """`closed_within` for many connections at once (one wait, not one per connection): for each,
    True if the peer closed it within `seconds`."""
    closed = [False] * len(socks)
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        pending = [i for i, done in enumerate(closed) if not done]
        if not pending:
            break
        ready, _, _ = select.select([socks[i] for i in pending], [], [], min(0.5, remaining))
        for i in pending:
            if socks[i] in ready or (isinstance(socks[i], ssl.SSLSocket) and socks[i].pending()):
                closed[i] = _closed_now(socks[i])
    return closed


def _closed_now(sock: socket.socket) -> bool:
    """True if a readable socket turns out to be closed (EOF, reset, TLS alert)."""
    sock.settimeout(0.05)
    try:
        return sock.recv(65536) == b""
    except (TimeoutError, socket.timeout, ssl.SSLWantReadError):
        return False
    except OSError:
        return True


def read_response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length body: (status, lower-cased headers, body)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response head: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def exchange(appliance, raw: bytes, source: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """Send `raw` on a fresh TLS connection and read the response."""
    with tls(appliance, source) as sock:
        sock.sendall(raw)
        return read_response(sock)


def missing_security_headers(headers: dict[str, str]) -> dict[str, str | None]:
    return {k: headers.get(k) for k, v in REQUIRED_HEADERS.items() if v not in (headers.get(k) or "")}


def client_from(appliance, source: str, **kw) -> httpx.Client:
    """An httpx client whose connections leave from `source`."""
    transport = httpx.HTTPTransport(local_address=source, verify=appliance.tls())
    headers = {"Origin": appliance.url, **kw.pop("headers", {})}
    return httpx.Client(base_url=appliance.url, transport=transport, headers=headers, timeout=15, **kw)


def healthz_from(appliance, source: str) -> int | str:
    """/healthz status from a fresh connection, or the error's name if it could not be reached."""
    try:
        with client_from(appliance, source) as c:
            return c.get("/healthz").status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS line")
