"""Fixtures for the TLS and HTTPS listener tests: real certificates, real sockets, real tools."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvloop

from appliance.clock import FrozenClock
from appliance.config import TLSConfig
from appliance.tls import TLSManager
from appliance.web.server import serve

KEY_PASSWORD = b"test-key-password-not-a-secret"
HOSTNAME = "outpost.test"


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
    return subprocess.CompletedProcess(argv, proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))


@pytest.fixture
def openssl() -> str:
    return openssl_path()


@pytest.fixture
def sslyze() -> str:
    return sslyze_path()


@pytest.fixture
def frozen_clock() -> FrozenClock:
    # Start at the real time: openssl and Python clients check validity against the real clock.
    return FrozenClock(start=time.time())


def make_manager(
    tls_dir: Path,
    clock: FrozenClock,
    *,
    hostname: str = HOSTNAME,
    password: bytes = KEY_PASSWORD,
    **config: object,
) -> TLSManager:
    return TLSManager(tls_dir, TLSConfig(**config), hostname, clock, password)


@pytest.fixture
def manager(tmp_path: Path, frozen_clock: FrozenClock) -> TLSManager:
    """A TLSManager that has already run ensure() once in tmp_path/tls."""
    m = make_manager(tmp_path / "tls", frozen_clock)
    m.ensure()
    return m


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def tiny_app(scope, receive, send) -> None:
    """Minimal ASGI app: lifespan support, and an echo of the scheme on every request."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = f"ok {scope['scheme']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


class ServerThread:
    """`serve()` on its own uvloop in a background thread; `stop()` cancels it gracefully."""

    def __init__(self, ssl_context: ssl.SSLContext, host: str = "127.0.0.1", port: int | None = None, app=tiny_app) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._context = ssl_context
        self._app = app
        self._started = threading.Event()
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._thread = threading.Thread(target=lambda: uvloop.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        try:
            await serve(self._app, host=self.host, port=self.port, ssl_context=self._context, on_started=self._started.set)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # handed to the test thread
            self.error = exc
        finally:
            self._started.set()

    def start(self) -> ServerThread:
        self._thread.start()
        self._started.wait(10)
        if self.error is not None:
            raise self.error
        return self

    def call(self, fn: Callable[[], object]) -> object:
        """Run fn in the server's loop thread (where the app would run it) and return its result."""
        assert self.loop is not None

        async def call() -> object:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)

    def stop(self) -> None:
        if self.loop is not None and self._task is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(15)
        assert not self._thread.is_alive(), "server thread did not stop"


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


def peer_certificate(host: str, port: int, *, server_name: str | None = "localhost", **versions: ssl.TLSVersion) -> bytes:
    """DER of the certificate a fresh connection is served (no verification)."""
    ctx = client_context()
    for name, value in versions.items():
        setattr(ctx, name, value)
    with socket.create_connection((host, port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=server_name) as tls:
        return tls.getpeercert(binary_form=True)
