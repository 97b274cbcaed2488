"""Client connections under the algorithm policy (DEV-4) with host-key pinning (DEV-3).

`open_session(target, policy)` makes its own TCP connection (timed: reachability and
latency), then runs the SSH handshake over it with:
- the pinned key as the ONLY trusted host key, or, on first contact, an empty trust
  list plus a callback that captures the presented key (TOFU; the caller pins it);
- on mismatch the callback refuses, asyncssh aborts the handshake before the
  userauth request, and HostKeyMismatchError carries the presented key line;
- explicit algorithm lists (modern, or modern + legacy when the device opted in),
  rekey limits by bytes and seconds, and no reading of ~/.ssh at all.
`Session.run` executes one command with a timeout and a byte cap on its output.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import asyncssh
import msgspec

from appliance.ssh import keys
from appliance.ssh.errors import (
    AuthFailedError,
    CommandError,
    CommandTimeoutError,
    HandshakeError,
    HostKeyMismatchError,
    TargetRefusedError,
    UnreachableError,
)
from appliance.ssh.targets import TargetPolicy

MODERN_KEX = ("mlkem768x25519-sha256", "curve25519-sha256", "curve25519-sha256@libssh.org",
              "ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521")
LEGACY_KEX = ("diffie-hellman-group-exchange-sha256", "diffie-hellman-group16-sha512",
              "diffie-hellman-group14-sha256", "diffie-hellman-group14-sha1", "diffie-hellman-group1-sha1")
MODERN_HOST_KEYS = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
                    "rsa-sha2-512", "rsa-sha2-256")
LEGACY_HOST_KEYS = ("ssh-rsa", "ssh-dss")
# AES-GCM first: asyncssh's chacha20-poly1305 runs per packet in pure Python (SPEC Facts).
MODERN_CIPHERS = ("aes256-gcm@openssh.com", "aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com",
                  "aes256-ctr", "aes192-ctr", "aes128-ctr")
LEGACY_CIPHERS = ("aes256-cbc", "aes128-cbc", "3des-cbc")
MODERN_MACS = ("hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com")
LEGACY_MACS = ("hmac-sha2-256", "hmac-sha2-512", "hmac-sha1")


class Credential(msgspec.Struct, frozen=True, kw_only=True):
    """What to log in with. `private_key` is a loaded key object, never a path."""

    username: str
    password: str | None = None
    private_key: object | None = None

    def __repr__(self) -> str:  # never print secrets, even in a traceback
        return f"Credential(username={self.username!r}, password={'set' if self.password else 'none'})"


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    address: str
    port: int
    host_key: str | None  # pinned OpenSSH public key line; None = first contact
    preset_fingerprint: str | None = None  # first contact: accept only a key with this SHA256 fingerprint
    legacy_algorithms: bool = False


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    connect_timeout: float = 5.0
    auth_timeout: float = 10.0
    command_timeout: float = 15.0
    output_cap: int = 65536
    rekey_bytes: int = 1 << 30
    rekey_seconds: int = 3600
    keepalive_seconds: int = 30
    targets: TargetPolicy = TargetPolicy()  # where connections may go (secure default: no loopback)


class CommandResult(msgspec.Struct, frozen=True, kw_only=True):
    exit_status: int | None  # None: the device never reported one
    output: bytes
    truncated: bool
    seconds: float


def algorithms(legacy: bool) -> dict[str, list[str]]:
    """The negotiation lists for asyncssh, restricted to what this asyncssh supports."""
    from asyncssh.encryption import get_encryption_algs
    from asyncssh.kex import get_kex_algs
    from asyncssh.mac import get_mac_algs
    from asyncssh.public_key import get_public_key_algs

    def pick(modern, old, supported):
        names = {a.decode() for a in supported()}
        return [a for a in (*modern, *(old if legacy else ())) if a in names]

    return {"kex_algs": pick(MODERN_KEX, LEGACY_KEX, get_kex_algs),
            "server_host_key_algs": pick(MODERN_HOST_KEYS, LEGACY_HOST_KEYS, get_public_key_algs),
            "encryption_algs": pick(MODERN_CIPHERS, LEGACY_CIPHERS, get_encryption_algs),
            "mac_algs": pick(MODERN_MACS, LEGACY_MACS, get_mac_algs),
            "compression_algs": ["none"]}


class _Client(asyncssh.SSHClient):
    """Captures the presented host key; trusts it only on first contact (no pin).

    asyncssh calls this only for a key NOT in the trust list, so with a pin it means
    a mismatch: refuse, and the handshake ends before any authentication."""

    def __init__(self, tofu: bool, preset_fingerprint: str | None) -> None:
        self.tofu = tofu
        self.preset_fingerprint = preset_fingerprint
        self.presented: str | None = None
        self.closed = False

    def validate_host_public_key(self, host, addr, port, key) -> bool:
        self.presented = keys.public_line(key)
        if not self.tofu:
            return False
        if self.preset_fingerprint:
            return key.get_fingerprint("sha256") == self.preset_fingerprint
        return True

    def connection_lost(self, exc) -> None:
        self.closed = True


class Session:
    """One live SSH connection to a device, reused between polls."""

    def __init__(self, conn: asyncssh.SSHClientConnection, client: _Client, host_key: str, tcp_ms: float,
                 policy: Policy) -> None:
        self._conn = conn
        self._client = client
        self.host_key = host_key  # the key the device proved it holds (pinned or TOFU-captured)
        self.tcp_ms = tcp_ms
        self.policy = policy
        self.opened_at = time.monotonic()

    @property
    def alive(self) -> bool:
        return not self._client.closed

    async def run(self, command: str, *, timeout: float | None = None, cap: int | None = None) -> CommandResult:
        """Run one command; output (stdout+stderr) capped at `cap` bytes, the rest discarded."""
        cap = cap or self.policy.output_cap
        started = time.monotonic()
        chunks: list[bytes] = []
        size, truncated, proc = 0, False, None
        try:
            async with asyncio.timeout(timeout or self.policy.command_timeout):
                proc = await self._conn.create_process(command, encoding=None, stderr=asyncssh.STDOUT,
                                                       stdin=asyncssh.DEVNULL)
                while True:
                    chunk = await proc.stdout.read(32768)
                    if not chunk:
                        break
                    if size + len(chunk) > cap:
                        chunks.append(chunk[:cap - size])
                        size, truncated = cap, True
                        proc.close()  # stop reading a never-ending or huge output
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                if not truncated:
                    await proc.wait_closed()
        except TimeoutError:
            if proc is not None:
                proc.close()
            raise CommandTimeoutError("The command did not finish within its timeout.") from None
        except (asyncssh.Error, OSError) as exc:
            raise CommandError(f"The connection failed while the command ran ({type(exc).__name__}).") from None
        status = None if truncated or proc is None else proc.exit_status
        return CommandResult(exit_status=status, output=b"".join(chunks), truncated=truncated,
                             seconds=time.monotonic() - started)

    def close(self) -> None:
        self._conn.close()

    async def wait_closed(self) -> None:
        self._conn.close()
        try:
            async with asyncio.timeout(2):
                await self._conn.wait_closed()
        except (TimeoutError, asyncssh.Error, OSError):
            pass


def _allowed(infos: list, port: int, targets: TargetPolicy) -> tuple:
    """The first resolved address the target policy allows; TargetRefusedError if none is."""
    reason = "The address did not resolve."
    for info in infos:
        refusal = targets.refusal(info[4][0], port)
        if refusal is None:
            return info
        reason = refusal
    raise TargetRefusedError(f"Refused by the probe target policy: {reason}")


async def _tcp(address: str, port: int, timeout: float, targets: TargetPolicy) -> tuple[socket.socket, float]:
    """Resolve, check the target policy on the very address connected to, connect (timed)."""
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(address, port, type=socket.SOCK_STREAM)
            family, type_, proto, _, sockaddr = _allowed(infos, port, targets)
            sock = socket.socket(family, type_, proto)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, sockaddr)
            except BaseException:
                sock.close()
                raise
    except TimeoutError:
        raise UnreachableError("No TCP connection within the connect timeout.") from None
    except OSError as exc:
        raise UnreachableError(f"TCP connection failed: {exc.strerror or type(exc).__name__}.") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, (time.monotonic() - started) * 1000


async def tcp_check(address: str, port: int, policy: Policy) -> float:
    """Reachability and latency alone: connect, close, return milliseconds."""
    sock, ms = await _tcp(address, port, policy.connect_timeout, policy.targets)
    sock.close()
    return ms


async def open_session(endpoint: Endpoint, credential: Credential, policy: Policy) -> Session:
    """Connect and log in; raises one of the ssh.errors classes (never with secrets in it)."""
    sock, tcp_ms = await _tcp(endpoint.address, endpoint.port, policy.connect_timeout, policy.targets)
    client = _Client(tofu=endpoint.host_key is None, preset_fingerprint=endpoint.preset_fingerprint)
    trusted = [keys.load_public_key(endpoint.host_key)] if endpoint.host_key else []
    options: dict[str, Any] = dict(
        known_hosts=(trusted, [], []),  # explicit trust list: checking is never off
        config=None, agent_path=None, client_keys=[credential.private_key] if credential.private_key else None,
        password=credential.password, preferred_auth=("publickey", "password", "keyboard-interactive"),
        kbdint_auth=False, gss_host=None, x509_trusted_certs=None, client_host_keys=None,
        username=credential.username, login_timeout=policy.auth_timeout,
        rekey_bytes=policy.rekey_bytes, rekey_seconds=policy.rekey_seconds,
        keepalive_interval=policy.keepalive_seconds, keepalive_count_max=3,
        **algorithms(endpoint.legacy_algorithms))
    try:
        async with asyncio.timeout(policy.connect_timeout + policy.auth_timeout):
            conn = await asyncssh.connect(endpoint.address, endpoint.port, sock=sock,
                                          client_factory=lambda: client, **options)
    except TimeoutError:
        sock.close()
        raise HandshakeError("The device accepted TCP but did not complete SSH in time.") from None
    except asyncssh.PermissionDenied:
        raise AuthFailedError("The device refused the credential.",
                              presented=client.presented or endpoint.host_key) from None
    except asyncssh.HostKeyNotVerifiable:
        if client.presented and (endpoint.host_key or endpoint.preset_fingerprint):
            raise HostKeyMismatchError(client.presented) from None
        raise HandshakeError("The device's host key could not be verified.") from None
    except (asyncssh.Error, OSError, ValueError) as exc:
        sock.close()
        raise HandshakeError(f"SSH handshake failed ({type(exc).__name__}).") from None
    presented = client.presented or endpoint.host_key
    if presented is None:  # not reached: asyncssh matched the pinned key, or the TOFU callback captured one
        conn.close()
        raise HandshakeError("The device's host key could not be verified.")
    return Session(conn, client, presented, tcp_ms, policy)
