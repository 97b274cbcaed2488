"""The frozen `dist/outpost` on its own (PLAT-1): no Python, no venv, no checkout.

The binary is built with `python3 build.py binary` (the `binary` fixture in tests/conftest.py)
only when it is missing or older than a file under `appliance/`, so CI builds it once. It
then runs with PATH=/usr/bin:/bin as its whole environment and a temporary working directory, and must: print its
version, show --help, serve HTTPS with the local CA it creates, complete setup and a
sign-in, render the dashboard (psutil, jinja templates) and the About page, serve the
vendored htmx from package data, and on SIGTERM shut down within 10 s and remove the
directory the onefile bootloader unpacked itself into.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests import conftest
from tests.conftest import ADMIN, Appliance, do_login, do_setup, free_port

pytestmark = pytest.mark.binary

ROOT = conftest.ROOT
STOP_TIMEOUT_S = 10
CLEAN_ENV = {"PATH": "/usr/bin:/bin"}


def _run(binary: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], cwd=cwd, env=CLEAN_ENV, capture_output=True, text=True, timeout=60)


def _unpack_dirs(pid: int) -> set[Path]:
    """Directories a onefile build unpacked into, seen in the memory maps of pid's tree."""
    found = set()
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        for m in proc.memory_maps(grouped=True):
            match = re.match(r"(.*/_MEI[^/]+)/", m.path)
            if match:
                found.add(Path(match.group(1)))
    return found


def test_version_and_help(binary, tmp_path):
    version = re.search(r'__version__ = "([^"]+)"', (ROOT / "appliance" / "__init__.py").read_text()).group(1)
    out = _run(binary, "version", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert version in out.stdout

    out = _run(binary, "--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "usage: outpost" in out.stdout and "serve" in out.stdout

    out = _run(binary, "serve", "--help", cwd=tmp_path)
    assert out.returncode == 0 and "--data-dir" in out.stdout

    out = _run(binary, "no-such-command", cwd=tmp_path)
    assert out.returncode != 0 and "invalid choice" in out.stderr


def test_serves_setup_login_dashboard_and_stops_on_sigterm(binary, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    # Appliance starts its process in conftest.ROOT; run the binary away from the checkout
    # instead, so nothing can be picked up from it.
    monkeypatch.setattr(conftest, "ROOT", cwd)
    app = Appliance(tmp_path / "data", free_port(), argv=[str(binary)], env=dict(CLEAN_ENV))
    try:
        unpacked = _unpack_dirs(app.proc.pid)
        with app.client() as client:
            assert client.get("/healthz").status_code == 200
            assert do_setup(client, app.setup_code()).status_code == 303
            assert do_login(client).status_code == 303

            page = client.get("/dashboard")
            assert page.status_code == 200, page.text[:500]
            assert "<h1>Dashboard</h1>" in page.text and ADMIN in page.text
            for tile in ("CPU", "Memory", "Database"):
                assert tile in page.text
            assert client.get("/dashboard/health").status_code == 200

            about = client.get("/about")
            assert about.status_code == 200 and "litestar" in about.text.lower()

            js = client.get("/static/vendor/htmx.min.js")
            assert js.status_code == 200
            assert js.content == (ROOT / "appliance" / "web" / "static" / "vendor" / "htmx.min.js").read_bytes()
            assert client.get("/static/app.css").status_code == 200

        # SIGTERM to the main process only (as systemd's KillMode=mixed does): the
        # bootloader forwards it to the Python process and cleans up after it.
        started = time.monotonic()
        os.kill(app.proc.pid, signal.SIGTERM)
        try:
            app.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"dist/outpost did not exit within {STOP_TIMEOUT_S} s of SIGTERM:\n{app.output()}")
        assert app.proc.returncode == 0, app.output()
        assert time.monotonic() - started < STOP_TIMEOUT_S
        assert '"Application shutdown complete."' in app.output() or "shutdown complete" in app.output().lower()
        leftovers = [d for d in unpacked if d.exists()]
        assert not leftovers, f"onefile unpack directory left behind: {leftovers}"
    finally:
        app.stop()
