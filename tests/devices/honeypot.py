"""An SSH server that logs every password it is offered (an attacker's host, for tests).

It runs asyncssh on its own event loop in a thread, listens on loopback ports, and
records each TCP connection and each (port, username, password) offered; every login
is refused. A test points devices at it and then asserts what did and did not arrive.
"""

from __future__ import annotations

import asyncio
import threading

import asyncssh


class _Catcher(asyncssh.SSHServer):
    def __init__(self, pot: Honeypot, port: int) -> None:
        self.pot, self.port = pot, port

    def connection_made(self, conn) -> None:
        with self.pot.lock:
            self.pot.connections[self.port] = self.pot.connections.get(self.port, 0) + 1

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key) -> bool:
        with self.pot.lock:
            self.pot.keys.append((self.port, username, key.get_fingerprint("sha256")))
        return False

    def validate_password(self, username: str, password: str) -> bool:
        with self.pot.lock:
            self.pot.passwords.append((self.port, username, password))
        return False


class Honeypot:
    def __init__(self, listeners: int = 1) -> None:
        self.lock = threading.Lock()
        self.passwords: list[tuple[int, str, str]] = []
        self.keys: list[tuple[int, str, str]] = []
        self.connections: dict[int, int] = {}
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.host_line = " ".join(self.host_key.export_public_key("openssh").decode().split()[:2])
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._acceptors = [self._call(self._listen()) for _ in range(listeners)]
        self.ports = [a.get_port() for a in self._acceptors]

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    async def _listen(self):
        holder: dict[str, int] = {}
        acceptor = await asyncssh.listen("127.0.0.1", 0, server_host_keys=[self.host_key],
                                         server_factory=lambda: _Catcher(self, holder["port"]),
                                         login_timeout=10, allow_pty=False)
        holder["port"] = acceptor.get_port()
        return acceptor

    def offered(self, port: int | None = None) -> list[tuple[int, str, str]]:
        with self.lock:
            return [p for p in self.passwords if port is None or p[0] == port]

    def connected(self, port: int) -> int:
        with self.lock:
            return self.connections.get(port, 0)

    def close(self) -> None:
        for acceptor in self._acceptors:
            acceptor.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
