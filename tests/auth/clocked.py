"""The real appliance server on a frozen clock, for tests of time limits (session idle and
absolute expiry, the step-up window) that cannot wait hours in real time.

How the clock gets in, and why this is not a production seam: `appliance.app.build(config,
clock)` already takes the clock as an explicit constructor argument (the composition root;
`outpost serve` passes SystemClock). Here the test builds the same Services with a
FrozenClock and serves them with the same `create_asgi` + `web.server.serve` over real
TLS on loopback, in a background thread. Nothing in the appliance reads an environment
variable, a file or a flag to change its clock: there is no switch to leave on by mistake.
The only difference from `outpost serve` is that the maintenance loop and the probe are not
started (neither is under test here).
"""

from __future__ import annotations

import contextlib
import ssl
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx

from appliance import app as app_mod
from appliance import config as config_mod
from appliance.clock import FrozenClock
from appliance.web import create_asgi
from tests.conftest import ADMIN, ADMIN_PASSWORD, FAST_HASH_CONFIG, do_login, do_setup
from tests.serving import ServerThread


class ClockedAppliance:
    """Services built with a FrozenClock and served over HTTPS; `clock.advance(s)` moves time."""

    def __init__(self, data_dir: Path, config_text: str = FAST_HASH_CONFIG) -> None:
        cfg = config_mod.with_data_dir(config_mod.parse(tomllib.loads(config_text)), str(data_dir))
        # Start at the real time: the TLS client checks the generated certificate against it.
        self.clock = FrozenClock(start=time.time())
        self.services = app_mod.build(cfg, self.clock)
        self.data_dir = Path(data_dir)
        self.services.auth.setup.ensure_setup_code(self.services.setup_code_file)
        self.server = ServerThread(self.services.tls.ssl_context(), app=create_asgi(self.services)).start()
        self.url = f"https://localhost:{self.server.port}"

    def client(self, **kw) -> httpx.Client:
        headers = {"Origin": self.url, **kw.pop("headers", {})}
        verify = ssl.create_default_context(cafile=str(self.data_dir / "tls" / "ca.pem"))
        return httpx.Client(base_url=self.url, verify=verify, headers=headers, timeout=30, **kw)

    def setup_code(self) -> str:
        return self.services.setup_code_file.read_text().strip()

    def set_up_admin(self) -> None:
        with self.client() as c:
            assert do_setup(c, self.setup_code()).status_code == 303

    @contextlib.contextmanager
    def admin(self) -> Iterator[httpx.Client]:
        """A signed-in admin client (closed on exit, so the server stops without waiting for it)."""
        with self.client() as c:
            assert do_login(c, ADMIN, ADMIN_PASSWORD).status_code == 303
            yield c

    def close(self) -> None:
        self.server.stop()
        self.services.close()
