"""A real OpenSSH sshd on a loopback port, for tests (DEV-3, PROBE-2).

Own host keys in a temp dir, a dedicated unprivileged test user (created with
useradd if absent) with password and key login, root login off, verbose log via -E
so tests can show from sshd's own log what did and did not happen.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import free_port, require_tool

TEST_USER = "outpostprobe"


def _keygen(path: Path, kind: str = "ed25519") -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "", "-f", str(path)], check=True,
                   capture_output=True, timeout=30)
    return Path(str(path) + ".pub").read_text().strip()


PASSWORD_FILE = Path("/var/tmp/outpost-test-user.password")  # one random password shared by concurrent test runs


def _shared_password() -> tuple[str, bool]:
    """(password, created now?): test runs on one machine share the user, so they must share its password."""
    candidate = "T3st-" + secrets.token_urlsafe(18)
    try:
        fd = os.open(PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another run may be writing it this instant
            text = PASSWORD_FILE.read_text().strip()
            if text:
                return text, False
            time.sleep(0.05)
        raise RuntimeError(f"{PASSWORD_FILE} is empty")
    with os.fdopen(fd, "w") as f:
        f.write(candidate)
    return candidate, True


def _ensure_user(public_key: str) -> str:
    if os.geteuid() != 0:
        pytest.skip("the sshd tests create a test user and need root (CI runs as root)")
    password, _ = _shared_password()
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", TEST_USER], check=False, capture_output=True, timeout=30)
    # idempotent: every run sets the same shared password, so concurrent runs do not lock each other out
    subprocess.run(["chpasswd"], input=f"{TEST_USER}:{password}\n", text=True, check=True, capture_output=True,
                   timeout=30)
    entry = pwd.getpwnam(TEST_USER)
    ssh_dir = Path(entry.pw_dir) / ".ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # append (bounded): concurrent test runs each add their own client key
    path = ssh_dir / "authorized_keys"
    lines = path.read_text().splitlines() if path.exists() else []
    path.write_text("\n".join([*lines[-30:], public_key]) + "\n")
    for p in (ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(p, entry.pw_uid, entry.pw_gid)
    os.chmod(ssh_dir / "authorized_keys", 0o600)
    return password


class Sshd:
    def __init__(self, workdir: Path) -> None:
        self.sshd = require_tool("sshd") if shutil.which("sshd") else "/usr/sbin/sshd"
        if not Path(self.sshd).exists():
            pytest.skip("missing tool: sshd (apt openssh-server, installed by .ci/run)")
        require_tool("ssh-keygen")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host_key_a = self.dir / "host_a"
        self.host_key_b = self.dir / "host_b"
        self.host_line_a = _keygen(self.host_key_a)
        self.host_line_b = _keygen(self.host_key_b)
        self.client_key = self.dir / "client"
        client_pub = _keygen(self.client_key)
        self.client_private = self.client_key.read_text()
        self.user = TEST_USER
        self.password = _ensure_user(client_pub)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        self.log = self.dir / "sshd.log"
        self.proc: subprocess.Popen | None = None
        self.current_line = ""

    def _config(self, host_key: Path) -> Path:
        cfg = self.dir / "sshd_config"
        cfg.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {self.dir / 'sshd.pid'}\n"
            "PermitRootLogin no\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            f"UsePAM no\nStrictModes no\nAllowUsers {TEST_USER}\nLogLevel DEBUG1\nMaxStartups 100:30:200\n"
            "X11Forwarding no\nAllowTcpForwarding no\nPrintMotd no\nSubsystem sftp internal-sftp\n")
        return cfg

    def start(self, host_key: str = "a") -> None:
        path, self.current_line = ((self.host_key_a, self.host_line_a) if host_key == "a"
                                   else (self.host_key_b, self.host_line_b))
        cfg = self._config(path)
        self.proc = subprocess.Popen([self.sshd, "-D", "-e", "-f", str(cfg), "-E", str(self.log)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            # per-connection sshd processes start their own sessions: stop them by pid too,
            # so clients see their connection drop as when a real device restarts
            try:
                children = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                children = []
            for child in children:
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the listener and its per-connection children
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
