"""ASGI middleware that runs before any handler (ACL-4, AUTH-7).

In order, for every HTTP request:
0. IP allow list (ACL-3): the client address (see 3) outside the list gets 403 before
   anything else is looked at.
1. Host allow list: a Host header that is not one of the appliance's names gets 400
   (defeats DNS rebinding and host-header poisoning).
   A malformed Host (a port that is not 1-65535, stray characters) gets 400 too.
2. Body size: a declared Content-Length above the limit gets 413 before reading.
3. Client address: the socket peer, or X-Forwarded-For only through a trusted proxy.
4. Session: /api/ and /metrics go through the API gate (bearer keys only, JSON only);
   elsewhere the `__Host-outpost` cookie is resolved to a Principal (or None).
5. Response headers: strict CSP, no-store, framing/sniffing/referrer protections,
   HSTS; any `Server` header is removed.
6. An exception escaping the application before its response started becomes a 500 with
   the same headers (uvicorn's own 500 has none).

The IP allow list and the connection caps also act earlier, when a connection is
accepted (web/connlimits.py); refusals below the application (431, 414, malformed
requests) are built by `raw_refusal` with the same header set.
"""

from __future__ import annotations

import http
import ipaddress
import logging
import re

import msgspec

SESSION_COOKIE = "__Host-outpost"
PRE_SESSION_COOKIE = "__Host-outpost-pre"
PRINCIPAL = "outpost.principal"
CLIENT = "outpost.client"
BACKGROUND_HEADER = b"x-outpost-background"  # "1" on polling requests: they do not extend the idle timeout

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; manifest-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_COMMON_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), usb=(), payment=()"),
]
_NO_STORE = (b"cache-control", b"no-store")
_STATIC_CACHE = (b"cache-control", b"public, max-age=3600")
_STRIPPED = {b"server", b"cache-control", b"x-powered-by"}
log = logging.getLogger("outpost.web")


def _error_body(code: str, message: str, details: dict | None = None) -> bytes:
    return msgspec.json.encode({"error": {"code": code, "message": message, "details": details or {}}})


# name[:port] or [IPv6][:port]; a name is letters, digits, dots and hyphens (IPv4 included).
_HOST = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+))(?::([0-9]{1,5}))?")


def host_name(host_header: str) -> str | None:
    """The name part of a Host header ('[::1]:8443' -> '::1', 'a.b:8443' -> 'a.b'), lower-cased;
    None if the header is not a well-formed host with an optional port 1-65535."""
    match = _HOST.fullmatch(host_header.strip())
    if match is None or (match[3] is not None and not 0 < int(match[3]) < 65536):
        return None
    if match[1] is not None:
        try:
            ipaddress.IPv6Address(match[1])
        except ValueError:
            return None
        return match[1].lower()
    return match[2].lower()


def raw_refusal(status: int, code: str, message: str, date_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole HTTP/1.1 error response for the listener to write itself (before or instead of
    the application): JSON error body, the full security header set, `Connection: close`."""
    body = _error_body(code, message)
    head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode()]
    headers = [*date_headers, (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close"), *_COMMON_HEADERS, _NO_STORE]
    head += [name + b": " + value + b"\r\n" for name, value in headers]
    return b"".join(head) + b"\r\n" + body


def client_address(peer: str, forwarded_for: str | None, trusted: list) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy (ACL-3)."""
    if not trusted or not forwarded_for:
        return peer
    try:
        if not any(ipaddress.ip_address(peer) in net for net in trusted):
            return peer
    except ValueError:
        return peer
    # Walk X-Forwarded-For from the right, skipping our own proxies.
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        try:
            addr = ipaddress.ip_address(hop)
        except ValueError:
            return peer
        if not any(addr in net for net in trusted):
            return str(addr)
    return peer


class SecurityMiddleware:
    """Raw ASGI middleware; see module docstring. `resolve(cookie, client, background=...)` -> Principal | None."""

    def __init__(self, app, *, allowed_hosts: set[str], max_body: int, trusted_proxies: list[str], resolve,
                 allow=None, api_gate=None) -> None:
        """`allow(client) -> bool`: the IP allow list (ACL-3), checked before anything else is
        looked at. `api_gate`: bearer-key authentication for /api/ and /metrics (web/apiauth.py),
        which never resolve the session cookie."""
        self.app = app
        self.allow = allow
        self.api_gate = api_gate
        self.allowed_hosts = allowed_hosts
        self.max_body = max_body
        self.trusted = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]
        self.resolve = resolve

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":  # websockets get their own checks with the terminal (REMOTE-3)
            return await self.app(scope, receive, send)
        secured = _SecureSend(send, scope["path"].startswith("/static/"))
        try:
            await self._http(scope, receive, secured)
        except Exception:
            if secured.started:
                raise  # too late for an error page: uvicorn closes the connection
            log.error("request failed before its response started", exc_info=True)  # logs the type only
            await self._reject(secured, 500, "internal_error", "The appliance could not handle this request.")

    async def _http(self, scope, receive, send) -> None:
        headers: dict[bytes, bytes] = {}
        for k, v in scope["headers"]:
            headers.setdefault(k, v)
        static = scope["path"].startswith("/static/")
        peer = (scope.get("client") or ("unknown", 0))[0]
        xff = headers.get(b"x-forwarded-for")
        client = client_address(peer, xff.decode("latin-1") if xff else None, self.trusted)
        if self.allow is not None and not self.allow(client):
            return await self._reject(send, 403, "address_not_allowed",
                                      "Your address is not on this appliance's IP allow list.")
        host = host_name(headers.get(b"host", b"").decode("latin-1"))
        if host is None:
            return await self._reject(send, 400, "bad_host", "Malformed Host header.")
        if host not in self.allowed_hosts:
            return await self._reject(send, 400, "unknown_host", "This appliance does not answer to that host name.")
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return await self._reject(send, 400, "bad_request", "Malformed Content-Length header.")
            if int(length) > self.max_body:
                return await self._reject(send, 413, "body_too_large",
                                          f"The request body is too large: at most {self.max_body} bytes are allowed.")
        scope[CLIENT] = client
        scope[PRINCIPAL] = None
        if self.api_gate is not None and self.api_gate.covers(scope["path"]):
            return await self.api_gate(self.app, scope, receive, send, headers, self._reject)
        token = read_cookie(headers.get(b"cookie", b""), SESSION_COOKIE)
        if token and not static:
            # A page's automatic refresh (hx-headers on polling elements) is not user activity (AUTH-7).
            background = headers.get(BACKGROUND_HEADER) == b"1"
            scope[PRINCIPAL] = await self.resolve(token, client, background=background)
        await self.app(scope, receive, send)

    @staticmethod
    async def _reject(send, status: int, code: str, message: str, details: dict | None = None,
                      headers: list | None = None) -> None:
        body = _error_body(code, message, details)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                *(headers or [])]})
        await send({"type": "http.response.body", "body": body})


class _SecureSend:
    """The ASGI send every response goes through: the security headers replace whatever the
    application set for them, and `started` tells whether an error page can still be sent."""

    __slots__ = ("send", "static", "started")

    def __init__(self, send, static: bool) -> None:
        self.send, self.static, self.started = send, static, False

    async def __call__(self, message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _STRIPPED]
            kept += _COMMON_HEADERS
            kept.append(_STATIC_CACHE if self.static else _NO_STORE)
            message = {**message, "headers": kept}
        await self.send(message)


def read_cookie(raw: bytes, name: str) -> str | None:
    """One cookie's value from a Cookie header; None if absent or empty.

    A plain split, not SimpleCookie (4 µs per request): our cookie values are
    URL-safe tokens, so quoting and escapes never matter here."""
    if not raw:
        return None
    wanted = name.encode("latin-1") + b"="
    for part in raw.split(b";"):
        part = part.strip()
        if part.startswith(wanted):
            return part[len(wanted):].decode("latin-1") or None
    return None
