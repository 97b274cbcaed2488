"""PERF-6: the frozen `dist/outpost` against its budgets, with the venv as a reference.

Figures (each row: metric, our figure, reference/budget):
- binary size in MB against the 40 MB budget;
- start to first HTTPS answer, cold: median of 5 runs, each a new process on a fresh
  data directory (so it includes creating the key, the database and the local CA), timed
  from exec to the first 200 on /healthz over TLS verified against `<data>/tls/ca.pem`;
  against the 1.5 s budget, and side by side with `python -m appliance serve` from .venv;
- idle RSS 10 s after the first answer, summed over the process tree (a onefile build is
  a bootloader parent plus the Python child), against the 100 MB budget.

The processes run with PATH=/usr/bin:/bin only and a temporary working directory, as on
the appliance. Production settings are used (no fast test hashing). Run:
`python3 build.py bench binary` or `.venv/bin/python -m bench.binary` (builds nothing:
run `python3 build.py binary` first).
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from tests.conftest import free_port  # the tests' helper (python -m bench runs from the checkout)

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / "dist" / "outpost"
RUNS = 5
IDLE_SECONDS = 10.0
BUDGET_MB = 40
BUDGET_START_S = 1.5
BUDGET_RSS_MB = 100
READY_TIMEOUT_S = 30.0


def _healthz(port: int, ctx: ssl.SSLContext) -> int | None:
    """Status of GET /healthz over verified TLS, or None while nothing answers yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                head = tls.recv(64)
    except OSError:  # refused, reset, TLS not ready (ssl.SSLError is an OSError)
        return None
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


class _Run:
    """One `serve` process on a fresh data directory under `tmp`."""

    def __init__(self, argv: list[str], tmp: Path, env: dict[str, str]) -> None:
        self.data = tmp / "data"
        self.port = free_port()
        cmd = [*argv, "serve", "--data-dir", str(self.data), "--listen", f"127.0.0.1:{self.port}"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        self.log = open(tmp / "serve.log", "wb")  # noqa: SIM115 - closed in stop()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> float:
        """Seconds from exec to the first 200 on /healthz."""
        ca = self.data / "tls" / "ca.pem"
        ctx: ssl.SSLContext | None = None
        deadline = self.started + READY_TIMEOUT_S
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.proc.args[0]} exited with {self.proc.returncode}; see {self.log.name}")
            if ctx is None and ca.exists():
                try:
                    ctx = ssl.create_default_context(cafile=str(ca))
                except (ssl.SSLError, OSError):  # file still being written
                    ctx = None
            if ctx is not None and _healthz(self.port, ctx) == 200:
                return time.perf_counter() - self.started
            time.sleep(0.005)
        raise RuntimeError(f"no answer on /healthz within {READY_TIMEOUT_S} s; see {self.log.name}")

    def tree_rss(self) -> int:
        """Resident set size of the process and all its descendants, in bytes."""
        root = psutil.Process(self.proc.pid)
        total = 0
        for p in [root, *root.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def _clean_env() -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    if "TMPDIR" in os.environ:
        env["TMPDIR"] = os.environ["TMPDIR"]
    return env


def start_times(argv: list[str], runs: int = RUNS, env: dict[str, str] | None = None) -> list[float]:
    """Cold start-to-first-HTTPS-answer of `argv serve`, `runs` times, fresh data dir each."""
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="outpost-bench-") as tmp:
            run = _Run(argv, Path(tmp), env or _clean_env())
            try:
                times.append(run.wait_ready())
            finally:
                run.stop()
    return times


def idle_rss(argv: list[str], idle: float = IDLE_SECONDS, env: dict[str, str] | None = None) -> int:
    """RSS in bytes of the whole process tree `idle` seconds after the first answer."""
    with tempfile.TemporaryDirectory(prefix="outpost-bench-") as tmp:
        run = _Run(argv, Path(tmp), env or _clean_env())
        try:
            run.wait_ready()
            time.sleep(idle)
            return run.tree_rss()
        finally:
            run.stop()


def _venv_argv() -> list[str]:
    return [str(ROOT / ".venv" / "bin" / "python"), "-m", "appliance"]


def _venv_env() -> dict[str, str]:
    return {**_clean_env(), "PYTHONPATH": str(ROOT)}  # the checkout, since cwd is a temp dir


def _fmt_times(times: list[float]) -> str:
    return f"{statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f})"


def run(binary: Path = BINARY) -> list[tuple[str, str, str]]:
    """Measure PERF-6 for `binary`; rows of (metric, our figure, reference/budget)."""
    if not binary.is_file():
        raise FileNotFoundError(f"{binary} is missing; build it with `python3 build.py binary`")
    size_mb = binary.stat().st_size / 1e6
    frozen = start_times([str(binary)])
    venv = start_times(_venv_argv(), env=_venv_env())
    rss_mb = idle_rss([str(binary)]) / 2**20
    venv_rss_mb = idle_rss(_venv_argv(), env=_venv_env()) / 2**20
    return [
        ("binary size", f"{size_mb:.1f} MB", f"budget {BUDGET_MB} MB"),
        (f"start to first HTTPS 200, cold (median of {RUNS})", _fmt_times(frozen),
         f"budget {BUDGET_START_S} s; venv `python -m appliance serve`: {_fmt_times(venv)}"),
        (f"idle RSS after {IDLE_SECONDS:.0f} s (process tree)", f"{rss_mb:.0f} MB",
         f"budget {BUDGET_RSS_MB} MB; venv: {venv_rss_mb:.0f} MB"),
    ]


def _table(rows: list[tuple[str, str, str]]) -> str:
    head = ("metric", "dist/outpost", "reference / budget")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else BINARY
    print("PERF-6 binary (PyInstaller)")
    print(_table(run(target)))
