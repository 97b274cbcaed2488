"""Issue 11, findings 2, 13 and 14: request heads, Host headers and `next` redirects.

Through the real server over TLS, with hand-written requests where a client library
would refuse to send the attack.
"""

from __future__ import annotations

import asyncio
import select
import ssl

import pytest

from appliance.web.security import SecurityMiddleware
from tests.conftest import FAST_HASH_CONFIG, csrf_of
from tests.web.rawclient import exchange, missing_security_headers, read_response, rss_kib, tls

CONFIG = FAST_HASH_CONFIG + """
login_attempts_per_minute = 1000
"""
HEAD_LIMIT = 32 * 1024  # [web] max_header_bytes default
GET = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"


@pytest.fixture(scope="module")
def appliance_config():
    return CONFIG


def _refused(response, status: int) -> None:
    code, headers, body = response
    assert code == status, (code, body[:200])
    assert not missing_security_headers(headers), missing_security_headers(headers)
    assert headers.get("connection") == "close" and headers["content-type"] == "application/json"
    assert body.startswith(b'{"error":{"code":'), body[:200]


# ---- finding 2: header limits ----------------------------------------------------------------------

@pytest.mark.parametrize("head", [
    GET + b"X-Big: " + b"a" * (40 * 1024) + b"\r\n\r\n",
    GET + b"X-Big: " + b"a" * (8 * 1024 * 1024) + b"\r\n\r\n",
    GET + b"Cookie: c=" + b"a" * (1024 * 1024) + b"\r\n\r\n",
    GET + b"".join(b"X-H%d: v\r\n" % i for i in range(20_000)) + b"\r\n",
    GET + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n",  # small, but too many headers
], ids=["40KiB-header", "8MiB-header", "1MiB-cookie", "20000-headers", "150-headers"])
def test_oversized_request_heads_get_431_with_the_security_headers(shared_appliance, head):
    with tls(shared_appliance) as sock:
        try:
            sock.sendall(head)
        except OSError:
            pass  # the server may refuse and close before the whole head is sent
        _refused(read_response(sock), 431)


def test_overlong_url_gets_414(shared_appliance):
    long_url = b"GET /healthz?q=" + b"a" * (16 * 1024) + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"
    _refused(exchange(shared_appliance, long_url), 414)


def test_a_head_under_the_limit_is_served(shared_appliance):
    head = GET + b"X-Fill: " + b"a" * (HEAD_LIMIT - 2048) + b"\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(80))
    assert exchange(shared_appliance, head + b"\r\n")[0] == 200


def test_an_unfinished_huge_head_does_not_grow_memory(shared_appliance):
    """The review sent 300 MiB of one header without finishing it and watched RSS grow by 350 MB."""
    before = rss_kib(shared_appliance.proc.pid)
    chunk = b"a" * (64 * 1024)
    sent = 0
    answered = None
    with tls(shared_appliance) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Huge: ")
        try:
            while sent < 50 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
                if select.select([sock], [], [], 0)[0] or sock.pending():
                    answered = read_response(sock)
                    break
        except (OSError, ssl.SSLError):
            pass
        if answered is None:
            try:
                answered = read_response(sock, timeout=5)
            except (OSError, ConnectionError):
                pass
        growth_mb = (rss_kib(shared_appliance.proc.pid) - before) / 1024
    assert growth_mb < 30, f"server grew by {growth_mb:.0f} MB after {sent >> 20} MiB of unfinished header"
    assert answered is not None and answered[0] == 431, "the server answers 431 as soon as the head is too big"
    assert sent < 4 * 1024 * 1024, f"the server read {sent >> 20} MiB before refusing"


def test_the_next_request_is_served_after_a_refusal(shared_appliance):
    _refused(exchange(shared_appliance, GET + b"X-Big: " + b"a" * (40 * 1024) + b"\r\n\r\n"), 431)
    assert exchange(shared_appliance, GET + b"\r\n")[0] == 200


# ---- finding 13: Host header and parser errors --------------------------------------------------

@pytest.mark.parametrize("host", [
    b"127.0.0.1:evil.example", b"localhost:99999", b"localhost:", b"localhost:80:80", b"[::1", b"[::1]x",
    b"local host", b"localhost:+443", b"localhost:0x1bb",
])
@pytest.mark.parametrize("path", [b"/api/v1/devices", b"/no-such-page", b"/login"])
def test_malformed_host_gets_400_with_the_security_headers(shared_appliance, host, path):
    request = b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
    response = exchange(shared_appliance, request)
    code, headers, body = response
    assert code == 400, (code, body[:200])
    assert not missing_security_headers(headers), missing_security_headers(headers)
    assert "Exception in ASGI application" not in shared_appliance.output()


def test_good_hosts_with_ports_still_work(shared_appliance):
    port = shared_appliance.port
    for host in (b"localhost", f"localhost:{port}".encode(), b"127.0.0.1:8443", b"[::1]:8443", b"[::1]"):
        assert exchange(shared_appliance, GET.replace(b"localhost", host) + b"\r\n")[0] == 200, host


def test_unparsable_request_gets_400_with_the_security_headers(shared_appliance):
    _refused(exchange(shared_appliance, b"GET /heal\nthz HTTP/1.1\r\nHost: localhost\r\n\r\n"), 400)


# ---- findings 13 and 14: `next` on /reauth --------------------------------------------------------

HOSTILE_NEXT = [
    "//evil.example/phish", "/\\evil.example", "\\\\evil.example", "/\t/evil.example/phish", "/\n/evil.example",
    "/\r\nSet-Cookie: x=1", "/ /evil.example", "/\x00x", "/\x7fx", "/\x0bx", "/\u00a0x", "/\u2028x", "/\u20acx",
    "https://evil.example/", "evil.example", "javascript:alert(1)", "", " /dashboard", "/" + "a" * 600,
]


@pytest.mark.parametrize("value", HOSTILE_NEXT, ids=[repr(v)[:30] for v in HOSTILE_NEXT])
def test_reauth_next_falls_back_to_the_dashboard(shared_appliance, shared_admin_client, value):
    page = shared_admin_client.get("/reauth", params={"next": value})
    assert page.status_code == 200
    r = shared_admin_client.post("/reauth", data={"_csrf": csrf_of(page.text), "next": value,
                                           "secret": "correct horse battery staple 42"})
    assert r.status_code == 303 and r.headers["location"] == "/dashboard", r.headers.get("location")


@pytest.mark.parametrize("value", ["/devices?tag=web&q=a%20b", "/users/5", "/account/sessions", "/dashboard#x"])
def test_reauth_next_keeps_same_origin_paths(shared_appliance, shared_admin_client, value):
    page = shared_admin_client.get("/reauth", params={"next": value})
    r = shared_admin_client.post("/reauth", data={"_csrf": csrf_of(page.text), "next": value,
                                           "secret": "correct horse battery staple 42"})
    assert r.status_code == 303 and r.headers["location"] == value


def test_raw_newline_in_next_does_not_drop_the_connection(shared_appliance, shared_admin_client):
    cookie = "; ".join(f"{k}={v}" for k, v in shared_admin_client.cookies.items())
    for target in (b"/reauth?next=/%0a/evil", b"/reauth?next=/%0d%0aX:%20y", b"/reauth?next=/\n/evil"):
        with tls(shared_appliance) as sock:
            sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\nCookie: " + cookie.encode()
                         + b"\r\nConnection: close\r\n\r\n")
            code, headers, body = read_response(sock)
        assert code in (200, 400), (target, code)
        assert not missing_security_headers(headers), (target, missing_security_headers(headers))
        assert b"/evil" not in body.split(b'name="next"')[-1][:80], "the hostile value is not carried on"


def test_an_exception_before_the_response_becomes_a_500_with_the_security_headers():
    """Defence in depth behind the Host fix: whatever escapes the application before its response
    starts is answered by the security layer (uvicorn's own 500 carries no security headers)."""
    async def broken(scope, receive, send):
        raise ValueError("a bug")

    middleware = SecurityMiddleware(broken, allowed_hosts={"localhost"}, max_body=1024, trusted_proxies=[],
                                    resolve=None)
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": "/x", "headers": [(b"host", b"localhost")], "client": ("127.0.0.1", 5)}
    asyncio.run(middleware(scope, None, send))
    assert sent[0]["status"] == 500
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    assert not missing_security_headers(headers), missing_security_headers(headers)
    assert sent[1]["body"].startswith(b'{"error":{"code":"internal_error"')
