"""Shared fixtures: a real appliance process over real TLS, and HTTPS clients for it.

`appliance` starts `python -m appliance serve` on a free loopback port with a fresh
data directory and stops it at the end of the test. Tests that need the server in
a particular state build on `admin_client` (setup done, signed in).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "admin"
ADMIN_PASSWORD = "correct horse battery staple 42"
# Fast but still argon2id parameters for tests (production defaults stay RFC 9106).
# [probe] comes first: tests append bare [auth] keys to this text. Test devices (sshd, simulated
# fleet) listen on 127.0.0.1, which the probe target policy refuses unless allowed explicitly;
# tests/probe/test_targets.py runs without it.
FAST_HASH_CONFIG = """
[probe]
allow_loopback = true

[auth]
argon2_time_cost = 1
argon2_memory_kib = 19456
argon2_parallelism = 1
# Tests sign in as the setup admin without TOTP; tests/auth and the accounts e2e test
# exercise the default "admins" 2FA policy explicitly (ACCOUNTS_CONFIG).
totp_policy = "optional"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"missing tool: {name} (installed by .ci/run)")
    return path


class Appliance:
    """A running `outpost serve` subprocess."""

    def __init__(self, data_dir: Path, port: int, config: str = FAST_HASH_CONFIG, extra_args: list[str] | None = None,
                 argv: list[str] | None = None, env: dict | None = None) -> None:
        self.data_dir = data_dir
        for attempt in range(3):
            self._start(port, config, extra_args, argv, env)
            try:
                self.wait_ready()
                return
            except RuntimeError:
                # free_port() is only a hint: another process may take the port before we bind it.
                if attempt == 2 or "already in use" not in self.output():
                    raise
                self._log.close()
                port = free_port()

    def _start(self, port, config, extra_args, argv, env) -> None:
        data_dir = self.data_dir
        self.port = port
        self.url = f"https://localhost:{port}"
        self.config_path = data_dir.parent / f"config-{port}.toml"
        self.config_path.write_text(config)
        self.log_path = data_dir.parent / f"appliance-{port}.log"
        base = argv or [sys.executable, "-m", "appliance"]
        cmd = [*base, "serve", "--config", str(self.config_path), "--data-dir", str(data_dir),
               "--listen", f"127.0.0.1:{port}", *(extra_args or [])]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env or dict(os.environ), start_new_session=True)

    @property
    def ca(self) -> str:
        return str(self.data_dir / "tls" / "ca.pem")

    def tls(self) -> ssl.SSLContext:
        """A client context trusting only this appliance's local CA."""
        return ssl.create_default_context(cafile=self.ca)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"appliance exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    if (self.data_dir / "tls" / "ca.pem").exists():
                        r = httpx.get(f"{self.url}/healthz", verify=self.tls(), timeout=2)
                        if r.status_code == 200:
                            return
            except (OSError, httpx.HTTPError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"appliance did not become ready:\n{self.output()}")

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def setup_code(self) -> str:
        return (self.data_dir / "setup-code").read_text().strip()

    def client(self, **kw) -> httpx.Client:
        headers = {"Origin": self.url, **kw.pop("headers", {})}
        return httpx.Client(base_url=self.url, verify=self.tls(), headers=headers, timeout=30, **kw)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()


def csrf_of(html: str) -> str:
    match = re.search(r'name="_csrf" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)


def do_setup(client: httpx.Client, code: str, username: str = ADMIN, password: str = ADMIN_PASSWORD) -> httpx.Response:
    page = client.get("/setup")
    return client.post("/setup", data={"_csrf": csrf_of(page.text), "code": code, "username": username,
                                       "password": password, "confirm": password})


def do_login(client: httpx.Client, username: str = ADMIN, password: str = ADMIN_PASSWORD) -> httpx.Response:
    page = client.get("/login")
    return client.post("/login", data={"_csrf": csrf_of(page.text), "username": username, "password": password})


@pytest.fixture
def appliance(tmp_path):
    app = Appliance(tmp_path / "data", free_port())
    yield app
    app.stop()


@pytest.fixture
def admin_client(appliance):
    """A signed-in admin session on a freshly set-up appliance."""
    with appliance.client() as client:
        assert do_setup(client, appliance.setup_code()).status_code == 303
        assert do_login(client).status_code == 303
        yield client
