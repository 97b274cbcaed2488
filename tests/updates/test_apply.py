"""UPD-3 with real processes: the launcher (`outpost run-slot`) runs the current slot,
`outpost update apply` installs into the other one, the health gate decides, a failed
version is rolled back with the database snapshot; `kill -9` at every step of apply
leaves a bootable old or new version."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ADMIN, ADMIN_PASSWORD, ROOT, do_login, do_setup

from .rig import DRIVER, ROOT_FLAG, Rig

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
