"""UPD-3 with two real frozen executables (CI; slow): dist/outpost and a second build
stamped 2.0.0 (`build.py binary --version 2.0.0 --out ...`) are packaged as two releases,
installed into A/B slots, started by the launcher, updated, health-gated. The launcher
and `update apply` run from the checkout with a test root (see driver.py); the slot
programs are the real binaries."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import ROOT

from . import kit
from .rig import Rig

pytestmark = pytest.mark.binary


def _stable_copy(binary, tmp_path) -> bytes:
    """The binary's bytes, once a copy of them runs: dist/ is shared, and a concurrent
    `build.py binary` may be rewriting it (a half-written copy fails with a PyInstaller TOC error)."""
    copy = tmp_path / "outpost-copy"
    for _ in range(10):
        data = binary.read_bytes()
        copy.write_bytes(data)
        copy.chmod(0o755)
        if subprocess.run([str(copy), "version"], capture_output=True, timeout=60).returncode == 0:
            return data
        time.sleep(5)
    raise AssertionError(f"{binary} does not run")


@pytest.fixture(scope="session")
def second_build(tmp_path_factory, binary):  # noqa: F811  (built after dist/outpost, not beside it)
    out = tmp_path_factory.mktemp("build-2.0.0") / "outpost"
    python = shutil.which("python3") or sys.executable
    proc = subprocess.run([python, str(ROOT / "build.py"), "binary", "--version", "2.0.0", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"second build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert subprocess.run([str(out), "version"], capture_output=True, text=True).stdout.strip() == "outpost 2.0.0"
    return out


def test_real_binary_update_comes_up_in_the_other_slot(tmp_path, binary, second_build):  # noqa: F811
    keys = kit.Keys()
    rig = Rig(tmp_path, keys)
    rig.init()
    data = _stable_copy(binary, tmp_path)
    assert subprocess.run([str(binary), "version"], capture_output=True, text=True).stdout.strip() != "outpost 2.0.0"
    v1 = kit.make(tmp_path / "outpost-1.0.0.opkg", keys, version="1.0.0", files=[("outpost", data, True)])
    v2 = kit.make(tmp_path / "outpost-2.0.0.opkg", keys, version="2.0.0",
                  files=[("outpost", second_build.read_bytes(), True)])
    try:
        rig.cli("update", "apply", str(v1), "--no-wait")
        rig.start_launcher()
        assert "installed: 1.0.0 (slot a)" in rig.wait_idle(90)
        rig.wait_healthy(60)
        r = rig.cli("update", "apply", str(v2))
        assert "installed: 2.0.0 (slot b)" in r.stdout and "previous:  1.0.0" in r.stdout, r.stdout + r.stderr
        rig.wait_healthy(60)
        children = psutil.Process(rig.launcher.pid).children()
        assert any(c.exe().endswith("/slots/b/outpost") or "slots/b/outpost" in " ".join(c.cmdline()) for c in children)
        running = subprocess.run([str(rig.install / "slots" / "b" / "outpost"), "version"], capture_output=True, text=True)
        assert running.stdout.strip() == "outpost 2.0.0", "slot b must hold the second real build"
    finally:
        rig.stop_launcher()
