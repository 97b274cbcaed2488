"""Issue 11, finding 1 and the graceful-stop part of finding 23: connection exhaustion.

Each test attacks the real `outpost serve` over TLS on loopback. Clients bind to other
127.0.0.0/8 source addresses to play several hosts (Linux routes all of 127/8 locally).
"""

from __future__ import annotations

import os
import re
import signal
import ssl
import sys
import time

import pytest

from tests.conftest import FAST_HASH_CONFIG, Appliance, csrf_of, do_login, do_setup, wait_until
from tests.serving import ServerThread
from tests.web.rawclient import client_from, closed_within, closed_within_each, healthz_from, read_response, tcp, tls

# Short deadlines so the tests see them fire; production defaults are 10 s and 15 s.
DEADLINE_CONFIG = FAST_HASH_CONFIG + """
[web]
tls_handshake_timeout = 2
header_timeout = 2
"""
# Long deadlines, small caps: connections stay open while the caps are counted.
CAPS_CONFIG = FAST_HASH_CONFIG + """
[web]
tls_handshake_timeout = 30
header_timeout = 30
max_connections = 24
max_connections_per_address = 8
trusted_proxies = ["127.0.0.3/32"]
"""
CLOSE_WITHIN = 10.0  # generous bound on a loaded machine for a 2 s deadline


@pytest.fixture(scope="module")
def short_deadlines(tmp_path_factory):
    app = Appliance(tmp_path_factory.mktemp("deadlines") / "data", config=DEADLINE_CONFIG)
    yield app
    app.stop()


@pytest.fixture(scope="module")
def shared_small_caps(tmp_path_factory):
    """For the cap tests that leave no connection behind and need no exact global count."""
    app = Appliance(tmp_path_factory.mktemp("caps") / "data", config=CAPS_CONFIG)
    yield app
    app.stop()


@pytest.fixture
def small_caps(tmp_path):
    app = Appliance(tmp_path / "data", config=CAPS_CONFIG)
    yield app
    app.stop()


def _close_all(socks) -> None:
    for s in socks:
        s.close()


# ---- deadlines ---------------------------------------------------------------------------------

def test_idle_tcp_connection_is_closed_by_the_tls_handshake_deadline(short_deadlines):
    with tcp(short_deadlines) as sock:
        assert closed_within(sock, CLOSE_WITHIN), "a TCP connection that never starts TLS must be closed"


def test_idle_tls_connection_without_a_request_is_closed(short_deadlines):
    with tls(short_deadlines) as sock:
        assert closed_within(sock, CLOSE_WITHIN), "a TLS connection that never sends a request must be closed"


def _trickle_until_closed(sock, seconds: float) -> bool:
    """Send one header line every 0.5 s (never the blank line); True once the server closes."""
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        try:
            sock.sendall(f"X-Trickle-{n}: {n}\r\n".encode())
        except OSError:
            return True
        n += 1
        if closed_within(sock, 0.5):
            return True
    return False


def test_header_trickle_is_closed(short_deadlines):
    with tls(short_deadlines) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        assert _trickle_until_closed(sock, CLOSE_WITHIN), "a request head trickled forever must be cut off"


def test_trickle_on_a_kept_alive_connection_is_closed(short_deadlines):
    with tls(short_deadlines) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_response(sock)[0] == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        assert _trickle_until_closed(sock, CLOSE_WITHIN), "the next request's head has the same deadline"


def test_a_prompt_client_is_not_cut_off(short_deadlines):
    """Requests that complete their heads in time are served, one after another, on one connection."""
    with tls(short_deadlines) as sock:
        for _ in range(3):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert read_response(sock)[0] == 200
            time.sleep(0.5)


# ---- caps ----------------------------------------------------------------------------------------

def test_per_address_cap_refuses_extra_connections_and_others_still_get_in(shared_small_caps):
    small_caps = shared_small_caps
    held = [tls(small_caps, "127.0.0.5") for _ in range(8)]
    try:
        extra = [tcp(small_caps, "127.0.0.5") for _ in range(4)]
        try:
            assert all(closed_within(s, 5) for s in extra), "connections above the per-address cap are closed"
        finally:
            _close_all(extra)
        assert not any(closed_within_each(held, 0.2)), "the connections under the cap stay open"
        assert healthz_from(small_caps, "127.0.0.2") == 200, "another address still gets in"
    finally:
        _close_all(held)
    assert wait_until(lambda: healthz_from(small_caps, "127.0.0.5") == 200, 10, interval=0.2), \
        "closed connections give their slots back"


def test_global_cap_refuses_connections_above_it(small_caps):
    # 30 connections from four addresses, none above its own cap of 8; the global cap is 24.
    opened = [tcp(small_caps, f"127.0.0.{10 + i % 4}") for i in range(30)]
    held = []
    try:
        time.sleep(0.5)  # let the server accept them all
        held = [s for s, closed in zip(opened, closed_within_each(opened, 0.3), strict=True) if not closed]
        assert len(held) <= 24, f"{len(held)} connections open at once; the global cap is 24"
        # Top up from fresh addresses until one is refused (the fixture's own readiness probes
        # may still have held a slot or two above).
        for i in range(8):
            extra = tcp(small_caps, f"127.0.0.{14 + i}")
            if closed_within(extra, 1):
                extra.close()
                break
            held.append(extra)
        assert len(held) == 24, f"{len(held)} connections open when the cap of 24 refused the next one"
        assert healthz_from(small_caps, "127.0.0.30") != 200, "a new address is refused while the cap is full"
    finally:
        _close_all(opened + held)
    assert wait_until(lambda: healthz_from(small_caps, "127.0.0.30") == 200, 10, interval=0.2), \
        "the global count goes down as connections close"


def test_trusted_proxy_is_exempt_from_the_per_address_cap(shared_small_caps):
    held = [tls(shared_small_caps, "127.0.0.3") for _ in range(10)]
    try:
        assert not any(closed_within_each(held, 0.3)), "a trusted proxy carries many clients"
    finally:
        _close_all(held)


def _set_allow_list(appliance, source: str, networks: str) -> None:
    with client_from(appliance, source) as c:
        assert do_setup(c, appliance.setup_code()).status_code == 303
        assert do_login(c).status_code == 303
        page = c.get("/settings/allowlist")
        assert page.status_code == 200, page.text[:300]
        r = c.post("/settings/allowlist", data={"_csrf": csrf_of(page.text), "networks": networks})
        assert r.status_code == 303, r.text[:500]


def test_allow_list_is_enforced_when_the_connection_is_accepted(small_caps):
    _set_allow_list(small_caps, "127.0.0.2", "127.0.0.2/32")
    # 127.0.0.1 is outside the list: closed at accept, before any TLS byte is sent.
    outside = [tcp(small_caps, "127.0.0.1") for _ in range(30)]
    try:
        for sock in outside:
            sock.settimeout(5)
            try:
                first = sock.recv(1)
            except ConnectionResetError:
                first = b""
            assert first == b"", "an address outside the allow list gets nothing, not even a handshake"
    finally:
        _close_all(outside)
    with pytest.raises(OSError):
        tls(small_caps, "127.0.0.1").close()
    assert healthz_from(small_caps, "127.0.0.2") == 200
    # A trusted proxy is admitted at accept; the HTTP layer then judges the forwarded client.
    with client_from(small_caps, "127.0.0.3") as proxy:
        assert proxy.get("/healthz", headers={"X-Forwarded-For": "127.0.0.2"}).status_code == 200
        r = proxy.get("/healthz", headers={"X-Forwarded-For": "192.0.2.9"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "address_not_allowed"


def test_open_file_limit_is_raised_and_one_address_cannot_exhaust_it(tmp_path):
    """The review's reproduction: under a 1024 soft limit the 995th connection failed and /healthz
    stopped answering. Now the soft limit is raised to the hard one at start, and one address
    holds at most its cap whatever it opens."""
    argv = ["prlimit", "--nofile=1024:2048", sys.executable, "-m", "appliance"]
    app = Appliance(tmp_path / "data", argv=argv)
    socks = []
    try:
        limits = open(f"/proc/{app.proc.pid}/limits").read()
        assert re.search(r"Max open files\s+2048\s+2048", limits), limits
        assert '"msg":"open file limit"' in app.output()
        for _ in range(2100):
            socks.append(tcp(app))
        assert healthz_from(app, "127.0.0.2") == 200, "another address is still served"
        open_fds = len(os.listdir(f"/proc/{app.proc.pid}/fd"))
        assert open_fds < 400, f"the server holds {open_fds} descriptors for one attacking address"
    finally:
        _close_all(socks)
        app.stop()


# ---- graceful stop (finding 23) ------------------------------------------------------------------

def test_sigterm_with_idle_connections_open_stops_promptly(tmp_path):
    app = Appliance(tmp_path / "data")
    kept_alive = tls(app)
    kept_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert read_response(kept_alive)[0] == 200
    no_request = tls(app)
    no_handshake = tcp(app)
    try:
        time.sleep(0.5)
        started = time.monotonic()
        os.killpg(app.proc.pid, signal.SIGTERM)
        app.proc.wait(timeout=30)
        elapsed = time.monotonic() - started
    finally:
        _close_all([kept_alive, no_request, no_handshake])
        app.stop()
    log = app.output()
    assert "timeout graceful shutdown exceeded" not in log, log[-2000:]
    assert app.proc.returncode == 0, log[-2000:]
    assert elapsed < 7, f"SIGTERM took {elapsed:.1f} s with idle connections open"


# ---- framework patch guard ------------------------------------------------------------------------

def test_unexpected_uvicorn_internals_stop_startup(monkeypatch):
    """The listener subclasses uvicorn's protocol; a uvicorn without the methods it relies on
    is refused at start with a clear message, not discovered under attack."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from appliance.web.protocol import ServerStartError, check_framework

    check_framework()  # the installed uvicorn passes
    monkeypatch.delattr(HttpToolsProtocol, "on_response_complete")
    with pytest.raises(ServerStartError, match="on_response_complete"):
        check_framework()
    monkeypatch.undo()
    monkeypatch.setattr("uvicorn.__version__", "1.0.0")
    with pytest.raises(ServerStartError, match="uvicorn 1.0.0"):
        check_framework()


# ---- a WebSocket keeps its connection's slot until it closes ----------------------------------------

async def _ws_app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass
    else:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


class _Served:
    """serve() with one connection per address, on its own uvloop thread (no appliance needed)."""

    def __init__(self, tmp_path) -> None:
        from appliance.clock import SystemClock
        from appliance.config import TLSConfig, WebConfig
        from appliance.tls import TLSManager
        from appliance.web.connlimits import Limits
        import dataclasses

        self.manager = TLSManager(tmp_path / "tls", TLSConfig(), "", SystemClock(), b"pw", audit=lambda *a, **k: None)
        self.manager.ensure()
        limits = dataclasses.replace(Limits.from_config(WebConfig()), max_per_address=1)
        self.server = ServerThread(self.manager.ssl_context(), app=_ws_app, limits=limits).start()
        self.port = self.server.port

    def tls(self):
        return ssl.create_default_context(cafile=str(self.manager.ca_pem_path))

    def stop(self) -> None:
        self.server.stop()


def test_a_websocket_holds_its_slot_until_it_closes(tmp_path):
    served = _Served(tmp_path)
    try:
        ws = tls(served)
        ws.sendall(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        assert ws.recv(4096).startswith(b"HTTP/1.1 101"), "upgraded"
        with tcp(served) as second:
            assert closed_within(second, 5), "the WebSocket still holds the address's only slot"
        ws.close()

        def served_again() -> bool:
            try:
                with tls(served) as again:
                    again.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                    return read_response(again)[0] == 200
            except OSError:
                return False  # refused: the slot is not back yet

        assert wait_until(served_again, 10, interval=0.2), "closing the WebSocket gives the slot back"
    finally:
        served.stop()
