"""Fixtures for the TLS and HTTPS listener tests: real certificates, real sockets, real tools."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.audit.events import Event
from appliance.audit.models import Actor
from appliance.clock import FrozenClock
from appliance.config import TLSConfig
from appliance.tls import TLSManager
from appliance.tls.manager import TLSAudit
from tests.conftest import FAST_HASH_CONFIG, free_port  # noqa: F401  (tests here import free_port from this package)
from tests.serving import ServerThread, tiny_app  # noqa: F401

KEY_PASSWORD = b"test-key-password-not-a-secret"
HOSTNAME = "outpost.test"
# A running appliance that names itself localhost: imported certificates are made for that name.
LIVE_CONFIG = FAST_HASH_CONFIG + '\n[web]\nhostname = "localhost"\n'


@pytest.fixture(scope="module")
def appliance_config() -> str:
    return LIVE_CONFIG


def served_fingerprint(port: int) -> str:
    """SHA-256 of the certificate a new TLS connection to 127.0.0.1:port is served (not verified)."""
    return hashlib.sha256(peer_certificate("127.0.0.1", port)).digest().hex(":").upper()
OPERATOR = Actor(type="user", name="operator", source="127.0.0.1")


class AuditTrail(list):
    """The audit callable's edge for tests that are about certificates, not the log:
    keeps (event, actor, target, details) in order (test_importer.py checks the real log)."""

    def __call__(self, event: Event, *, actor: Actor, target: str, details: dict) -> None:
        self.append((event, actor, target, details))


def openssl_path() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("missing tool: openssl (install the openssl command-line tool)")
    return path


def sslyze_path() -> str:
    path = os.environ.get("OUTPOST_SSLYZE", "")
    if not path or not Path(path).is_file():
        pytest.skip("missing tool: sslyze (set OUTPOST_SSLYZE, as `python3 build.py test` does)")
    return path


def run(argv: list[str], *, stdin: bytes = b"", timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, check=False)
    return subprocess.CompletedProcess(argv, proc.returncode, proc.stdout.decode(errors="replace"),
                                       proc.stderr.decode(errors="replace"))


@pytest.fixture
def openssl() -> str:
    return openssl_path()


@pytest.fixture
def sslyze() -> str:
    return sslyze_path()


def make_manager(
    tls_dir: Path,
    clock: FrozenClock,
    *,
    hostname: str = HOSTNAME,
    password: bytes = KEY_PASSWORD,
    audit: TLSAudit | None = None,
    **config: object,
) -> TLSManager:
    return TLSManager(tls_dir, TLSConfig(**config), hostname, clock, password,
                      audit=AuditTrail() if audit is None else audit)


@pytest.fixture
def manager(tmp_path: Path, frozen_clock: FrozenClock) -> TLSManager:
    """A TLSManager that has already run ensure() once in tmp_path/tls."""
    m = make_manager(tmp_path / "tls", frozen_clock)
    m.ensure()
    return m


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerThread]]:
    """Factory: start_server(ssl_context, host=..., port=...) -> running ServerThread, stopped at teardown."""
    servers: list[ServerThread] = []

    def start(ssl_context: ssl.SSLContext, **kw) -> ServerThread:
        server = ServerThread(ssl_context, **kw)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


def client_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """A client context trusting only ca_file, or verifying nothing when ca_file is None."""
    if ca_file is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=str(ca_file))


def peer_certificate(host: str, port: int, *, server_name: str | None = "localhost",
                     **versions: ssl.TLSVersion) -> bytes:
    """DER of the certificate a fresh connection is served (no verification)."""
    ctx = client_context()
    for name, value in versions.items():
        setattr(ctx, name, value)
    with socket.create_connection((host, port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=server_name) as tls:
        return tls.getpeercert(binary_form=True)
