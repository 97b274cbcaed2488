"""A small SSH server for simulated devices (demo fleet, benchmark, tests).

It lives here because only appliance/ssh imports asyncssh. Each listener has its
own host key and one username/password; every exec request is answered by a
plain callable `handler(command) -> (output bytes, exit status)`. It listens on
loopback only. No shell, no port forwarding, no SFTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncssh

from appliance.ssh import keys

Handler = Callable[[str], tuple[bytes, int]]
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def new_host_key():
    """A fresh Ed25519 host key object."""
    return asyncssh.generate_private_key("ssh-ed25519")


def host_key_line(key) -> str:
    return keys.public_line(key)


def public_key_of(line: str):
    """A public key object (for authorized_keys) from an OpenSSH line."""
    return asyncssh.import_public_key(line)


def export_private(key) -> str:
    return key.export_private_key("openssh").decode()


class _Server(asyncssh.SSHServer):
    def __init__(self, username: str, password: str, authorized: tuple = ()) -> None:
        self._username, self._password = username, password
        self._authorized = authorized

    def public_key_auth_supported(self) -> bool:
        return bool(self._authorized)

    def validate_public_key(self, username: str, key) -> bool:
        return username == self._username and key in self._authorized

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == self._username and password == self._password


def _process_factory(handler: Handler):
    def run(process) -> None:
        command = process.command or ""
        try:
            output, status = handler(command)
        except Exception:  # a broken simulation answers like a broken device, not a crashed server
            output, status = b"internal error\n", 1
        process.stdout.write(output)
        process.exit(status)
    return run


async def listen(port: int, host_key, *, username: str, password: str, handler: Handler,
                 host: str = "127.0.0.1", authorized_keys: tuple = ()):
    """Start one simulated device; returns the asyncssh acceptor (close() to stop)."""
    if host not in LOOPBACK:
        raise ValueError("simulated devices listen on loopback only")
    return await asyncssh.listen(host, port, server_host_keys=[host_key], encoding=None,
                                 server_factory=lambda: _Server(username, password, authorized_keys),
                                 process_factory=_process_factory(handler), allow_scp=False,
                                 sftp_factory=None, agent_forwarding=False, x11_forwarding=False,
                                 allow_pty=False, line_editor=False, login_timeout=30,
                                 backlog=1024, reuse_address=True)


async def close_all(acceptors) -> None:
    for acceptor in acceptors:
        acceptor.close()
    await asyncio.gather(*(a.wait_closed() for a in acceptors), return_exceptions=True)
