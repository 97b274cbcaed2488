"""UPD-3 with the real frozen executable (CI; slow): dist/outpost is packaged as two
releases, installed into A/B slots, started by the launcher, updated, health-gated.

One build serves as both releases (the bundle versions differ; the program is the same
bytes): building dist/outpost twice would not fit the time budget. The launcher and
`update apply` run from the checkout with a test root (see driver.py); the slot
programs are the real binary."""

from __future__ import annotations

import subprocess
import time

import psutil
import pytest

from tests.e2e.test_binary import binary  # noqa: F401  (session fixture: builds dist/outpost when stale)

from . import kit
from .test_apply import Rig

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


def test_real_binary_update_comes_up_in_the_other_slot(tmp_path, binary):  # noqa: F811
    keys = kit.Keys()
    rig = Rig(tmp_path, keys)
    rig.init()
    data = _stable_copy(binary, tmp_path)
    v1 = kit.make(tmp_path / "outpost-1.0.0.opkg", keys, version="1.0.0", files=[("outpost", data, True)])
    v2 = kit.make(tmp_path / "outpost-2.0.0.opkg", keys, version="2.0.0", files=[("outpost", data, True)])
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
    finally:
        rig.stop_launcher()
