"""A real OpenSSH sshd on a loopback port, for tests (DEV-3, PROBE-2).

Own host keys, config, authorized_keys and log in the test's directory; verbose log via -E
so tests can show from sshd's own log what did and did not happen.

It logs in the current user (root in CI) and changes nothing on the host: no useradd, no
password change, no edit of a home directory. Password login needs a password sshd can check
(UsePAM no: it reads /etc/shadow), so sshd runs in a private mount namespace (`unshare
--mount`) where a copy of /etc/shadow carrying this instance's random password is
bind-mounted over the real one. Only that sshd and its per-connection children see the copy;
it disappears with them. The public key goes into this instance's own AuthorizedKeysFile.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.conftest import free_port, require_tool, wait_until

# In the namespace: put the shadow copy in place, then become sshd (same pid: stop() signals it).
_NAMESPACE_SCRIPT = 'mount --bind "$1" /etc/shadow && shift && exec "$@"'


def _keygen(path: Path, kind: str = "ed25519") -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "", "-f", str(path)], check=True,
                   capture_output=True, timeout=30)
    return Path(str(path) + ".pub").read_text().strip()


def _shadow_with_password(user: str, password: str, path: Path) -> None:
    """A copy of /etc/shadow where `user`'s hash is `password`'s (SHA-512 crypt, by openssl)."""
    hashed = subprocess.run([require_tool("openssl"), "passwd", "-6", "-stdin"], input=password, text=True,
                            check=True, capture_output=True, timeout=30).stdout.strip()
    lines = Path("/etc/shadow").read_text().splitlines()
    entry = f"{user}:{hashed}:19000:0:99999:7:::"
    lines = [entry if line.split(":", 1)[0] == user else line for line in lines]
    if entry not in lines:
        lines.append(entry)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


class Sshd:
    def __init__(self, workdir: Path) -> None:
        if os.geteuid() != 0:
            pytest.skip("the sshd tests run sshd in its own mount namespace and need root (CI runs as root)")
        self.sshd = require_tool("sshd") if shutil.which("sshd") else "/usr/sbin/sshd"
        if not Path(self.sshd).exists():
            pytest.skip("missing tool: sshd (apt openssh-server, installed by .ci/run)")
        require_tool("ssh-keygen")
        self.unshare = require_tool("unshare")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host_key_a = self.dir / "host_a"
        self.host_key_b = self.dir / "host_b"
        self.host_line_a = _keygen(self.host_key_a)
        self.host_line_b = _keygen(self.host_key_b)
        self.client_key = self.dir / "client"
        (self.dir / "authorized_keys").write_text(_keygen(self.client_key) + "\n")
        self.client_private = self.client_key.read_text()
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.password = "T3st-" + secrets.token_urlsafe(18)
        _shadow_with_password(self.user, self.password, self.dir / "shadow")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory (as the package makes it)
        self.log = self.dir / "sshd.log"
        self.proc: subprocess.Popen | None = None
        self.started_once = False
        self.current_line = ""

    def _config(self, host_key: Path) -> Path:
        cfg = self.dir / "sshd_config"
        cfg.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {self.dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}\n"
            # the current user is root in CI: allowed here, on loopback, for this instance's password only
            f"PermitRootLogin {'yes' if os.geteuid() == 0 else 'no'}\n"
            "PasswordAuthentication yes\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            f"UsePAM no\nStrictModes no\nAllowUsers {self.user}\nLogLevel DEBUG1\nMaxStartups 100:30:200\n"
            "X11Forwarding no\nAllowTcpForwarding no\nPrintMotd no\nSubsystem sftp internal-sftp\n")
        return cfg

    def start(self, host_key: str = "a") -> None:
        """Start (or restart, on the same port) with host key "a" or "b". A first start whose port
        another process took meanwhile retries on a new one (free_port() is only a hint); a
        restart keeps its port, since devices and pins already point at it."""
        path, self.current_line = ((self.host_key_a, self.host_line_a) if host_key == "a"
                                   else (self.host_key_b, self.host_line_b))
        attempts = 1 if self.started_once else 3
        for attempt in range(attempts):
            self.proc = subprocess.Popen(
                [self.unshare, "--mount", "--propagation", "private", "--", "sh", "-c", _NAMESPACE_SCRIPT, "sh",
                 str(self.dir / "shadow"), self.sshd, "-D", "-e", "-f", str(self._config(path)), "-E", str(self.log)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                if not wait_until(self._answers, 10, interval=0.05):
                    raise RuntimeError(f"sshd did not start: {self.log_text()[-2000:]}")
            except RuntimeError:
                self.stop()
                if attempt == attempts - 1 or "Address already in use" not in self.log_text():
                    raise
                self.port = free_port()
                continue
            self.started_once = True
            return

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {self.log_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                return s.recv(64).startswith(b"SSH-")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            # per-connection sshd processes start their own sessions: stop them by pid too,
            # so clients see their connection drop as when a real device restarts
            try:
                children = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                children = []
            for child in children:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)  # the listener and its per-connection children
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
