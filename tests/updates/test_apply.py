"""UPD-3 with real processes: the launcher (`outpost run-slot`) runs the current slot,
`outpost update apply` installs into the other one, the health gate decides, a failed
version is rolled back with the database snapshot; `kill -9` at every step of apply
leaves a bootable old or new version."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN, ADMIN_PASSWORD, FAST_HASH_CONFIG, ROOT, do_login, do_setup, free_port, wait_until

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


@pytest.fixture
def rig(tmp_path, keys):
    r = Rig(tmp_path, keys, health_timeout=12)
    r.init()
    yield r
    r.stop_launcher()


def test_good_update_comes_up_and_bad_one_rolls_back(rig):
    out = rig.cli("update", "apply", str(rig.bundle("1.0.0")), "--no-wait").stdout
    assert "step: switch" in out and "no launcher is running" in out
    rig.start_launcher()
    assert "installed: 1.0.0" in rig.wait_idle()
    rig.wait_healthy()
    with rig.client() as c:  # data written by version 1.0.0
        assert do_setup(c, (rig.data / "setup-code").read_text().strip()).status_code == 303

    r = rig.cli("update", "apply", str(rig.bundle("2.0.0")))
    assert "installed: 2.0.0" in r.stdout and "previous:  1.0.0" in r.stdout, r.stdout
    assert "last:      installed 2.0.0" in r.stdout
    assert rig.marker.read_text().split()[-1] == "2.0.0"
    rig.wait_healthy()
    with rig.client() as c:
        assert do_login(c).status_code == 303

    r = rig.cli("update", "apply", str(rig.bundle("3.0.0", healthy=False)), check=False)
    assert r.returncode == 1 and "rolled back" in r.stderr and "exited with status 3" in r.stderr, r.stdout + r.stderr
    status = rig.cli("update", "status").stdout
    assert "installed: 2.0.0" in status and "last:      rolled back" in status, status
    assert rig.marker.read_text().split()[-2:] == ["3.0.0", "2.0.0"]  # tried 3.0.0, then back on 2.0.0
    rig.wait_healthy()
    with rig.client() as c:  # the old data is intact: the admin created under 1.0.0 still signs in
        assert do_login(c, ADMIN, ADMIN_PASSWORD).status_code == 303

    # 4.0.0 starts and writes to the database (its system.start record) but never answers the
    # gate: after the rollback its writes are gone, the snapshot is back.
    starts = rig.audit_actions().count("system.start")
    r = rig.cli("update", "apply", str(rig.bundle("4.0.0", healthy="elsewhere")), check=False)
    assert r.returncode == 1 and "did not answer /healthz within 12 s" in r.stderr, r.stdout + r.stderr
    rig.wait_healthy()
    assert rig.marker.read_text().split()[-2:] == ["4.0.0", "2.0.0"]
    rig.stop_launcher()
    actions = rig.audit_actions()
    assert actions.count("system.start") == starts + 1  # 2.0.0's restart only; 4.0.0's start was rolled back
    for action in ("update.verify", "update.install", "update.snapshot", "update.switch", "update.rollback.done"):
        assert action in actions, action


STEPS = ["stage", "verify", "install", "snapshot", "switch", "restart"]


def test_kill_9_at_every_step_leaves_a_bootable_version(tmp_path, keys):
    rig = Rig(tmp_path, keys)
    rig.init()
    rig.cli("update", "apply", str(rig.bundle("1.0.0")), "--no-wait")
    _confirm(rig.install, "1.0.0")
    for i, step in enumerate(STEPS):
        version = f"2.{i}.0"
        cmd = [sys.executable, str(DRIVER), str(rig.trust), "update", "apply", "--config", str(rig.config),
               "--data-dir", str(rig.data), *ROOT_FLAG, "--no-wait", str(rig.bundle(version))]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            seen = []
            for line in proc.stdout:
                seen.append(line)
                if line.strip() == f"step: {step}":
                    proc.send_signal(signal.SIGKILL)
                    break
        finally:
            proc.kill()
            proc.wait(timeout=10)
        assert any(step in line for line in seen), seen
        status = rig.cli("update", "status").stdout
        installed = status.split("installed: ")[1].split()[0]
        assert installed in {"1.0.0", version} or installed.startswith("2."), status
        current = rig.install / "current" / "outpost"
        r = subprocess.run([str(current), "version"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.startswith("outpost "), (step, r.stdout, r.stderr)
        assert rig.marker.read_text().split()[-1] == installed, (step, status)
        if "(switched)" in status:
            _confirm(rig.install, installed)
    # `update rollback` with no launcher running completes the rollback itself
    before = rig.cli("update", "status").stdout
    previous = before.split("previous:  ")[1].split()[0]
    after = rig.cli("update", "rollback").stdout
    assert f"installed: {previous}" in after and "last:      rolled back" in after, before + after


def _confirm(install: Path, version: str) -> None:
    """What the launcher records after a passed health gate (no launcher runs in this test)."""
    from appliance.updates import slots
    slots.Layout(install).save(slots.State(result=f"installed {version}"))
