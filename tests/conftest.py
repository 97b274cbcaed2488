"""The test vocabulary: each fixture name means one thing everywhere under tests/.

Fixtures
- `appliance`: a running `outpost serve` process (real TLS on loopback, fresh data directory),
  for this test only, not set up. Tests that change server-wide state (setup itself, locks,
  policies, the allow list, restarts) use it.
- `admin_client`: an HTTPS client signed in as the setup admin on `appliance`.
- `shared_appliance`: a running server shared by the tests of one module, already set up (the
  admin exists). For tests that only read, or that change only things they name uniquely.
- `shared_admin_client`: an HTTPS client signed in as the admin on `shared_appliance` (module scope).
- `appliance_config`: the config text `appliance` and `shared_appliance` start with (module
  scope: a module overrides it with its own fixture of the same name).
- `services`: the application's Services built in process on tmp_path (real SQLCipher database,
  `frozen_clock`), setup code written; `asgi_client`: litestar's TestClient on `create_asgi(services)`,
  the whole served stack (security layer, guards, CSRF) without sockets; `asgi_admin_client`: the
  same, set up and signed in as the admin (its own cookies, so both can be used in one test).
- `frozen_clock`: a FrozenClock at the real time (TLS clients check certificates against it).
- `db`: a Database in tmp_path (the appliance's own key handling; tests/store narrows it).
- `sshd`: a real OpenSSH sshd on loopback (tests/ssh/sshd.py), started, shared by the module.
- `keys`: update-signing keys (a root, a signer certified by it, the root's trust store), per module.
- `binary`: dist/outpost, built when missing or older than the sources (session).

Helpers (import them): Appliance, outpost (the CLI), csrf_of, do_setup, do_login, free_port, require_tool,
wait_until, run, fast_hasher and the fast argon2 settings (FAST_ARGON2, FAST_AUTH, FAST_HASH_CONFIG).
Heavy imports (the application) happen inside fixtures, so a collection never depends on them.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "admin"
ADMIN_PASSWORD = "correct horse battery staple 42"
T = TypeVar("T")

# Fast but still argon2id parameters for tests (production defaults stay RFC 9106): RFC 9106's
# second recommended option at its memory floor. One place for the hasher, AuthConfig and the TOML.
FAST_ARGON2 = {"time_cost": 1, "memory_kib": 19456, "parallelism": 1}
FAST_AUTH = {f"argon2_{name}": value for name, value in FAST_ARGON2.items()}  # AuthConfig fields
# [probe] comes first: tests append bare [auth] keys to this text. Test devices (sshd, simulated
# fleet) listen on 127.0.0.1, which the probe target policy refuses unless allowed explicitly;
# tests/probe/test_targets.py runs without it.
FAST_HASH_CONFIG = f"""
[probe]
allow_loopback = true

[auth]
argon2_time_cost = {FAST_ARGON2["time_cost"]}
argon2_memory_kib = {FAST_ARGON2["memory_kib"]}
argon2_parallelism = {FAST_ARGON2["parallelism"]}
# Tests sign in as the setup admin without TOTP; tests/auth and the accounts e2e test
# exercise the default "admins" 2FA policy explicitly (ACCOUNTS_CONFIG).
totp_policy = "optional"
"""


def fast_hasher(concurrency: int = 2, **overrides: int):
    """A PasswordHasher with the fast test parameters (close it after use)."""
    from appliance.crypto.passwords import PasswordHasher

    return PasswordHasher(**{**FAST_ARGON2, **overrides}, concurrency=concurrency)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to completion on a fresh event loop (sync tests of async services)."""
    return asyncio.run(coro)


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, *, interval: float = 0.1) -> T:
    """Poll `predicate` until it returns something truthy or `timeout` seconds pass; return its
    last value, so callers write `assert wait_until(lambda: ..., 30), "what did not happen"`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now: only a hint, another process may take it before the caller binds
    it, so callers that start a server on it retry on "address in use" (Appliance, Sshd, ServerThread)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"missing tool: {name} (installed by .ci/run)")
    return path


def outpost(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the CLI (`python -m appliance ARGS`) from the checkout; as root, with --allow-root."""
    argv = [sys.executable, "-m", "appliance", *args]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


class Appliance:
    """A running `outpost serve` subprocess."""

    def __init__(self, data_dir: Path, port: int | None = None, config: str = FAST_HASH_CONFIG,
                 extra_args: list[str] | None = None, argv: list[str] | None = None, env: dict | None = None) -> None:
        self.data_dir = data_dir
        for attempt in range(3):
            self._start(port or free_port(), config, extra_args, argv, env)
            try:
                self.wait_ready()
                return
            except RuntimeError:
                # free_port() is only a hint: another process may take the port before we bind it.
                if attempt == 2 or "already in use" not in self.output():
                    raise
                self._log.close()
                port = None

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
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env or dict(os.environ), start_new_session=True)

    @property
    def ca(self) -> str:
        return str(self.data_dir / "tls" / "ca.pem")

    def tls(self) -> ssl.SSLContext:
        """A client context trusting only this appliance's local CA."""
        return ssl.create_default_context(cafile=self.ca)

    def wait_ready(self, timeout: float = 30.0) -> None:
        if not wait_until(self._healthy, timeout):
            raise RuntimeError(f"appliance did not become ready:\n{self.output()}")

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"appliance exited with {self.proc.returncode}:\n{self.output()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                pass
            if not (self.data_dir / "tls" / "ca.pem").exists():
                return False
            return httpx.get(f"{self.url}/healthz", verify=self.tls(), timeout=2).status_code == 200
        except (OSError, httpx.HTTPError):
            return False

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def setup_code(self) -> str:
        return (self.data_dir / "setup-code").read_text().strip()

    def client(self, **kw) -> httpx.Client:
        headers = {"Origin": self.url, **kw.pop("headers", {})}
        return httpx.Client(base_url=self.url, verify=self.tls(), headers=headers, timeout=30, **kw)

    def set_up(self) -> None:
        """Complete first-run setup as the admin (ADMIN / ADMIN_PASSWORD)."""
        with self.client() as client:
            assert do_setup(client, self.setup_code()).status_code == 303

    def stop(self, *, wait: bool = True) -> None:
        """SIGTERM the server. wait=False (fixture teardown): do not wait for its graceful exit
        here; the session reaps it at the end (see `_reap_stopping_appliances`)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            if not wait:
                _STOPPING.append(self)
                return
            self.reap()
        self._log.close()

    def reap(self) -> None:
        """Wait for the exit (15 s, then SIGKILL)."""
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self._log.close()


# Servers stopped by fixtures finish their graceful shutdown (about 0.4 s) while the next test runs.
_STOPPING: list[Appliance] = []


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


# ---- fixtures: a real server ----------------------------------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def _reap_stopping_appliances() -> Iterator[None]:
    yield
    for app in _STOPPING:
        app.reap()



@pytest.fixture(scope="module")
def appliance_config() -> str:
    return FAST_HASH_CONFIG


@pytest.fixture
def appliance(tmp_path: Path, appliance_config: str) -> Iterator[Appliance]:
    app = Appliance(tmp_path / "data", config=appliance_config)
    yield app
    app.stop(wait=False)


@pytest.fixture
def admin_client(appliance: Appliance) -> Iterator[httpx.Client]:
    """A signed-in admin session on a freshly set-up appliance."""
    appliance.set_up()
    with appliance.client() as client:
        assert do_login(client).status_code == 303
        yield client


@pytest.fixture(scope="module")
def shared_appliance(tmp_path_factory: pytest.TempPathFactory, appliance_config: str) -> Iterator[Appliance]:
    app = Appliance(tmp_path_factory.mktemp("shared") / "data", config=appliance_config)
    try:
        app.set_up()
        yield app
    finally:
        app.stop(wait=False)


@pytest.fixture(scope="module")
def shared_admin_client(shared_appliance: Appliance) -> Iterator[httpx.Client]:
    with shared_appliance.client() as client:
        assert do_login(client).status_code == 303
        yield client


# ---- fixtures: in process -----------------------------------------------------------------------

@pytest.fixture
def frozen_clock():
    from appliance.clock import FrozenClock

    # Start at the real time: openssl and Python clients check validity against the real clock.
    return FrozenClock(start=time.time())


@pytest.fixture
def services(tmp_path: Path, frozen_clock, appliance_config: str):
    import tomllib

    from appliance import app as app_mod
    from appliance import config as config_mod

    cfg = config_mod.with_data_dir(config_mod.parse(tomllib.loads(appliance_config)), str(tmp_path / "data"))
    built = app_mod.build(cfg, frozen_clock)
    try:
        built.auth.setup.ensure_setup_code(built.setup_code_file)
        yield built
    finally:
        built.close()


def _asgi_client(services):
    """A TestClient on the served stack, sending Origin like `Appliance.client()` does."""
    from litestar.testing import TestClient

    from appliance.web import create_asgi

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # litestar suggests a dotted host; "localhost" is what the Host check allows
        client = TestClient(create_asgi(services), base_url="https://localhost")
    client.follow_redirects = False  # as httpx.Client: tests look at the 303s themselves
    client.headers["Origin"] = "https://localhost"
    return client


@pytest.fixture
def asgi_client(services):
    with _asgi_client(services) as client:
        yield client


@pytest.fixture
def asgi_admin_client(services):
    """Like `admin_client`, in process: setup done, signed in as the admin (its own cookie jar)."""
    with _asgi_client(services) as client:
        assert do_setup(client, services.setup_code_file.read_text().strip()).status_code == 303
        assert do_login(client).status_code == 303
        yield client


@pytest.fixture
def db(tmp_path: Path):
    from appliance.app import open_database

    database, _ = open_database(tmp_path, readers=2)
    yield database
    database.close()


@pytest.fixture(scope="module")
def keys():
    """A root key, a signing key and its certificate, and the trust store of that root (tests/updates/kit.py)."""
    from tests.updates import kit

    return kit.Keys()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    from tests.ssh.sshd import Sshd

    server = Sshd(tmp_path_factory.mktemp("sshd"))
    server.start("a")
    yield server
    server.stop()


# ---- fixtures: the frozen binary ----------------------------------------------------------------

BINARY = ROOT / "dist" / "outpost"
BUILD_TIMEOUT_S = 600


def _newest_source() -> float:
    newest = 0.0
    for f in (ROOT / "appliance").rglob("*"):
        if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
            newest = max(newest, f.stat().st_mtime)
    return newest


@pytest.fixture(scope="session")
def binary() -> Path:
    """dist/outpost, rebuilt only when missing or older than the sources."""
    if not BINARY.is_file() or BINARY.stat().st_mtime < _newest_source():
        python = shutil.which("python3") or sys.executable
        proc = subprocess.run([python, str(ROOT / "build.py"), "binary"], cwd=ROOT, capture_output=True,
                              text=True, timeout=BUILD_TIMEOUT_S)
        assert proc.returncode == 0, f"build.py binary failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert BINARY.is_file() and os.access(BINARY, os.X_OK)
    return BINARY
