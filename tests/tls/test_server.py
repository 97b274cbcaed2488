"""The HTTPS listener, probed from outside: openssl s_client, sslyze, Python clients."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import uvloop
from cryptography import x509

from appliance.audit.events import Event
from appliance.tls import TLSManager, selfsigned
from appliance.web.server import ServerStartError, bind_socket, serve

from .conftest import ServerThread, client_context, free_port, make_manager, peer_certificate, run, tiny_app

DAY = 86400
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(manager: TLSManager, start_server) -> ServerThread:
    return start_server(manager.ssl_context())


def _fingerprint(der: bytes) -> str:
    return selfsigned.fingerprint(x509.load_der_x509_certificate(der))


def test_openssl_verifies_the_chain(server: ServerThread, manager: TLSManager, openssl: str) -> None:
    result = run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{server.port}", "-CAfile", str(manager.ca_pem_path),
         "-verify_return_error", "-servername", "localhost", "-verify_hostname", "localhost"],
        stdin=b"Q\n",
    )
    assert "Verify return code: 0 (ok)" in result.stdout, result.stdout + result.stderr


def test_sslyze_finds_only_tls12_ecdhe_aead_and_tls13(server: ServerThread, sslyze: str, tmp_path: Path) -> None:
    out = tmp_path / "sslyze.json"
    result = run(
        [sslyze, f"--json_out={out}", "--quiet", "--mozilla_config=disable", "--sslv2", "--sslv3", "--tlsv1",
         "--tlsv1_1", "--tlsv1_2", "--tlsv1_3", "--compression", f"127.0.0.1:{server.port}"],
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    scan = json.loads(out.read_text())["server_scan_results"][0]
    assert scan["scan_status"] == "COMPLETED", scan.get("connectivity_error_trace")
    results = scan["scan_result"]

    def accepted(command: str) -> list[str]:
        assert results[command]["status"] == "COMPLETED", results[command]
        return [s["cipher_suite"]["name"] for s in results[command]["result"]["accepted_cipher_suites"]]

    for old in ("ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites", "tls_1_1_cipher_suites"):
        assert accepted(old) == [], old
    tls12 = accepted("tls_1_2_cipher_suites")
    assert tls12, "TLS 1.2 must be accepted by the intermediate profile"
    for name in tls12:
        assert name.startswith("TLS_ECDHE_"), name
        assert "_GCM_" in name or "CHACHA20_POLY1305" in name, name
    assert accepted("tls_1_3_cipher_suites")
    assert results["tls_compression"]["result"]["supports_compression"] is False


def test_modern_profile_accepts_only_tls13(tmp_path: Path, frozen_clock, start_server, openssl: str) -> None:
    m = make_manager(tmp_path / "tls", frozen_clock, profile="modern")
    m.ensure()
    server = start_server(m.ssl_context())
    peer_certificate("127.0.0.1", server.port, minimum_version=ssl.TLSVersion.TLSv1_3)
    with pytest.raises(ssl.SSLError):
        peer_certificate("127.0.0.1", server.port, maximum_version=ssl.TLSVersion.TLSv1_2)
    tls12 = run([openssl, "s_client", "-connect", f"127.0.0.1:{server.port}", "-tls1_2"], stdin=b"Q\n")
    assert tls12.returncode != 0 and "Cipher is (NONE)" in tls12.stdout
    tls13 = run([openssl, "s_client", "-connect", f"127.0.0.1:{server.port}", "-tls1_3",
                 "-CAfile", str(m.ca_pem_path), "-verify_return_error"], stdin=b"Q\n")
    assert "New, TLSv1.3, Cipher is TLS_" in tls13.stdout and "Verify return code: 0 (ok)" in tls13.stdout, tls13.stdout


def test_response_has_no_server_header_and_https_scheme(server: ServerThread, manager: TLSManager) -> None:
    conn = http.client.HTTPSConnection("localhost", server.port, context=client_context(manager.ca_pem_path), timeout=5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 200 and body == b"ok https"
    assert response.getheader("server") is None
    assert response.getheader("date") is not None


def test_port_in_use_is_a_clear_error(server: ServerThread, manager: TLSManager) -> None:
    with pytest.raises(ServerStartError) as info:
        bind_socket("127.0.0.1", server.port)
    assert info.value.message.startswith(f"port {server.port} on 127.0.0.1 is already in use")
    with pytest.raises(ServerStartError, match="already in use"):
        bind_socket("0.0.0.0", server.port)

    async def second() -> None:
        await serve(tiny_app, host="127.0.0.1", port=server.port, ssl_context=manager.ssl_context())

    with pytest.raises(ServerStartError, match=f"port {server.port} on 127.0.0.1 is already in use"):
        uvloop.run(second())


def test_bind_errors_in_plain_words() -> None:
    with pytest.raises(ServerStartError, match="not assigned to this machine"):
        bind_socket("192.0.2.254", free_port())
    with pytest.raises(ServerStartError, match="not a usable address"):
        bind_socket("no such host.invalid", 8443)


def test_ipv6_listener(manager: TLSManager, start_server) -> None:
    sock = bind_socket("::", 0)
    try:
        assert sock.family == socket.AF_INET6
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    finally:
        sock.close()
    server = start_server(manager.ssl_context(), host="::1")
    # The certificate carries IP:::1, so hostname checking against the address passes.
    conn = http.client.HTTPSConnection("::1", server.port, context=client_context(manager.ca_pem_path), timeout=5)
    try:
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"ok https"
    finally:
        conn.close()


def test_hot_swap_new_connections_get_the_renewed_leaf(tmp_path: Path, frozen_clock, start_server) -> None:
    m = make_manager(tmp_path / "tls", frozen_clock)
    m.ensure()
    listening = m.ssl_context()
    server = start_server(listening)
    old = m.info().leaf_fingerprint
    assert _fingerprint(peer_certificate("127.0.0.1", server.port)) == old

    # A connection in flight before the swap...
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=client_context(), timeout=5)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"ok https"

    frozen_clock.advance(61 * DAY)
    # From this (non-loop) thread, as the CLI's maintenance task does with asyncio.to_thread.
    assert m.renew_if_due() == [Event.TLS_CERT_RENEW]
    new = m.info().leaf_fingerprint
    assert new != old
    assert m.ssl_context() is listening
    assert _fingerprint(peer_certificate("127.0.0.1", server.port)) == new
    assert _fingerprint(peer_certificate("127.0.0.1", server.port, server_name=None)) == new  # no SNI
    assert _fingerprint(peer_certificate("127.0.0.1", server.port, maximum_version=ssl.TLSVersion.TLSv1_2)) == new

    # ...keeps working, with the certificate it was given.
    conn.request("GET", "/again")
    assert conn.getresponse().read() == b"ok https"
    assert _fingerprint(conn.sock.getpeercert(binary_form=True)) == old
    conn.close()
    assert m.renew_if_due() == []


def test_renewals_during_handshakes_never_fail_one(tmp_path: Path, frozen_clock, start_server) -> None:
    m = make_manager(tmp_path / "tls", frozen_clock)
    m.ensure()
    server = start_server(m.ssl_context())
    stop = threading.Event()
    seen: set[str] = set()
    errors: list[BaseException] = []

    def handshakes() -> None:
        while not stop.is_set():
            try:
                seen.add(_fingerprint(peer_certificate("127.0.0.1", server.port)))
            except BaseException as exc:
                errors.append(exc)

    clients = [threading.Thread(target=handshakes) for _ in range(3)]
    for t in clients:
        t.start()
    fingerprints = {m.info().leaf_fingerprint}
    for _ in range(15):
        frozen_clock.advance(61 * DAY)
        assert m.renew_if_due() == [Event.TLS_CERT_RENEW]
        fingerprints.add(m.info().leaf_fingerprint)
        time.sleep(0.01)
    stop.set()
    for t in clients:
        t.join(10)
    assert errors == []
    assert seen <= fingerprints and len(seen) > 1


def test_cancel_shuts_down_gracefully(manager: TLSManager) -> None:
    """Cancelling serve() runs uvicorn's shutdown (lifespan included) and frees the port."""
    seen: list[str] = []

    async def app(scope, receive, send) -> None:
        while scope["type"] == "lifespan":
            message = await receive()
            seen.append(message["type"])
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return

    server = ServerThread(manager.ssl_context(), app=app).start()
    server.stop()
    assert seen == ["lifespan.startup", "lifespan.shutdown"]
    bind_socket("127.0.0.1", server.port).close()


def test_serve_refuses_the_plain_asyncio_loop(manager: TLSManager) -> None:
    async def main() -> None:
        await serve(tiny_app, host="127.0.0.1", port=free_port(), ssl_context=manager.ssl_context())

    with pytest.raises(ServerStartError, match="uvloop"):
        asyncio.run(main())


@pytest.mark.parametrize("module", ["uvloop", "httptools"])
def test_missing_fast_path_is_refused(manager: TLSManager, monkeypatch, module: str) -> None:
    port = free_port()

    async def main() -> None:
        monkeypatch.setitem(sys.modules, module, None)  # what a frozen build without it looks like
        await serve(tiny_app, host="127.0.0.1", port=port, ssl_context=manager.ssl_context())

    with pytest.raises(ServerStartError, match=f"fast path is missing \\({module}\\)"):
        uvloop.run(main())
    bind_socket("127.0.0.1", port).close()  # nothing was left listening


def test_failed_app_startup_is_a_server_start_error(manager: TLSManager) -> None:
    async def broken(scope, receive, send) -> None:
        raise RuntimeError("database missing")

    async def main() -> None:
        await serve(broken, host="127.0.0.1", port=free_port(), ssl_context=manager.ssl_context())

    with pytest.raises(ServerStartError, match="failed to start"):
        uvloop.run(main())


SERVE_MAIN = """
import sys, time, uvloop
from pathlib import Path
from appliance.clock import SystemClock
from appliance.config import TLSConfig
from appliance.tls import TLSManager
from appliance.web.server import serve

async def app(scope, receive, send):
    assert scope["type"] == "lifespan"
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            print("lifespan shutdown", flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return

async def main():
    m = TLSManager(Path(sys.argv[1]), TLSConfig(), "", SystemClock(), b"pw", audit=lambda *a, **k: None)
    m.ensure()
    await serve(app, host="127.0.0.1", port=int(sys.argv[2]), ssl_context=m.ssl_context(),
                on_started=lambda: print("started", flush=True))
    print("serve returned", flush=True)

uvloop.run(main())
print("clean exit", flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_shuts_down_gracefully_and_returns(tmp_path: Path, sig: signal.Signals) -> None:
    """In the main thread serve() owns SIGTERM/SIGINT and returns, so the caller's cleanup runs."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE_MAIN, str(tmp_path / "tls"), str(free_port())],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started", proc.stderr.read() if proc.stderr else ""
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.splitlines() == ["lifespan shutdown", "serve returned", "clean exit"], (out, err)
