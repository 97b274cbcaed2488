"""The update rig: an install root with two slots run by the real launcher (`outpost run-slot`),
a data directory and the release keys, for the update tests with real processes
(tests/updates/test_apply.py, test_binary_update.py)."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import FAST_HASH_CONFIG, ROOT, free_port, wait_until

from . import kit

DRIVER = Path(__file__).with_name("driver.py")
ROOT_FLAG = ["--allow-root"] if os.geteuid() == 0 else []


def slot_program(version: str, marker: Path, healthy: bool | str = True) -> bytes:
    """A test 'binary': a shell script that records its version and runs this checkout's appliance.
    healthy=False: exits at once; healthy="elsewhere": serves (and writes to the database) on
    another port, so /healthz never answers where the launcher looks."""
    run = f'PYTHONPATH="{ROOT}" exec "{sys.executable}" -m appliance "$@"'
    if healthy is False:
        return kit.program(version, f'echo {version} >> "{marker}"\nexit 3')
    if healthy == "elsewhere":
        run += f" --listen 127.0.0.1:{free_port()}"
    return kit.program(version, f'echo {version} >> "{marker}"\n{run}')


class Rig:
    def __init__(self, tmp: Path, keys: kit.Keys, health_timeout: int = 30) -> None:
        self.tmp, self.keys = tmp, keys
        self.data = tmp / "data"
        self.install = tmp / "install"
        self.marker = tmp / "started.log"
        self.trust = keys.write_trust_file(tmp / "trust.pub")
        self.port = free_port()
        self.config = tmp / "config.toml"
        self.config.write_text(FAST_HASH_CONFIG + f'\n[updates]\ninstall_root = "{self.install}"\n'
                               f"health_timeout_seconds = {health_timeout}\n")
        self.launcher: subprocess.Popen | None = None
        self.url = f"https://localhost:{self.port}"

    def cli(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        cmd = [sys.executable, str(DRIVER), str(self.trust), *args[:2], "--config", str(self.config),
               "--data-dir", str(self.data), *ROOT_FLAG, *args[2:]]
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, **kw)
        if check:
            assert r.returncode == 0, r.stdout + r.stderr
        return r

    def bundle(self, version: str, healthy: bool | str = True) -> Path:
        return kit.make(self.tmp / f"outpost-{version}.opkg", self.keys, version=version,
                        files=[("outpost", slot_program(version, self.marker, healthy), True)])

    def init(self) -> None:
        subprocess.run([sys.executable, "-m", "appliance", "init", "--config", str(self.config), "--data-dir",
                        str(self.data), *ROOT_FLAG], cwd=ROOT, check=True, capture_output=True, timeout=60)

    def start_launcher(self) -> None:
        self.log = open(self.tmp / "launcher.log", "wb")
        self.launcher = subprocess.Popen(
            [sys.executable, str(DRIVER), str(self.trust), "run-slot", "--config", str(self.config), "--data-dir",
             str(self.data), "--listen", f"127.0.0.1:{self.port}", *ROOT_FLAG],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop_launcher(self) -> None:
        if self.launcher and self.launcher.poll() is None:
            self.launcher.send_signal(signal.SIGTERM)  # the launcher stops its child (systemd KillMode=mixed)
            try:
                self.launcher.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.launcher.pid, signal.SIGKILL)
                self.launcher.wait(timeout=5)
        if self.launcher:
            self.log.close()

    def wait_idle(self, timeout: float = 60) -> str:
        """Wait until no update is in flight (state.json read directly: cheaper than the CLI)."""
        from appliance.updates import slots
        layout = slots.Layout(self.install)
        if not wait_until(lambda: layout.state().phase == "idle", timeout, interval=0.2):
            raise AssertionError(f"update never settled:\n{(self.tmp / 'launcher.log').read_text()}")
        return self.cli("update", "status").stdout

    def audit_actions(self) -> list[str]:
        out = subprocess.run([sys.executable, "-m", "appliance", "audit", "export", "--format", "jsonl", "--data-dir",
                              str(self.data), *ROOT_FLAG], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return [json.loads(line)["action"] for line in out.stdout.splitlines() if line.strip()]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=ssl.create_default_context(cafile=str(self.data / "tls" / "ca.pem")), timeout=30,
                            headers={"Origin": self.url})

    def wait_healthy(self, timeout: float = 30) -> None:
        def healthy() -> bool:
            try:
                with self.client() as c:
                    return c.get("/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        if not wait_until(healthy, timeout, interval=0.2):
            raise AssertionError("appliance not healthy:\n" + (self.tmp / "launcher.log").read_text())
