"""PROBE-1 robustness: devices that hang, reset, send garbage, huge or never-ending or binary
output, or drop mid-command. Each ends in a clear status within its timeout; nothing grows
without bound. Real sshd for command behaviour; raw loopback sockets for broken SSH servers."""

import asyncio
import socket
import threading
import time

import pytest

from appliance.probe import metrics
from appliance.ssh.connect import Credential, Endpoint, Policy, open_session
from appliance.ssh.targets import TargetPolicy
from appliance.ssh.errors import CommandError, CommandTimeoutError, HandshakeError, UnreachableError
from appliance.config import ProbeConfig
from tests.probe.harness import Stack

POLICY = Policy(connect_timeout=1.5, auth_timeout=2.0, command_timeout=2.0, output_cap=100_000,
                targets=TargetPolicy(allow_loopback=True))


class RawServer:
    """A TCP listener on loopback that misbehaves: 'silent', 'garbage' or 'reset'."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop_flag = threading.Event()
        self.held = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_flag.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            if self.mode == "silent":
                self.held.append(conn)
            elif self.mode == "garbage":
                try:
                    conn.sendall(b"\x00\xffHELLO not ssh at all\r\n" + bytes(range(256)) * 64)
                except OSError:
                    pass
                self.held.append(conn)
            elif self.mode == "reset":  # speaks the banner, then resets mid-handshake
                try:
                    conn.sendall(b"SSH-2.0-OpenSSH_9.2p1\r\n")
                    time.sleep(0.1)
                except OSError:
                    pass
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()

    def close(self) -> None:
        self.stop_flag.set()
        self.thread.join(timeout=2)
        for c in self.held:
            c.close()
        self.sock.close()


@pytest.mark.parametrize("mode", ["silent", "garbage", "reset"])
def test_broken_ssh_servers_fail_fast_and_clearly(mode):
    server = RawServer(mode)
    try:
        async def main():
            started = time.monotonic()
            with pytest.raises(HandshakeError) as info:
                await open_session(Endpoint(address="127.0.0.1", port=server.port, host_key=None),
                                   Credential(username="x", password="y"), POLICY)
            return time.monotonic() - started, info.value

        elapsed, error = asyncio.run(main())
        assert elapsed < POLICY.connect_timeout + POLICY.auth_timeout + 1
        assert error.message and "y" != error.message
    finally:
        server.close()


def test_closed_port_is_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UnreachableError):
        asyncio.run(open_session(Endpoint(address="127.0.0.1", port=port, host_key=None),
                                 Credential(username="x", password="y"), POLICY))


def test_hostile_commands_on_real_sshd(sshd):
    async def main():
        session = await open_session(Endpoint(address="127.0.0.1", port=sshd.port, host_key=sshd.host_line_a),
                                     Credential(username=sshd.user, password=sshd.password), POLICY)
        try:
            never_ending = await session.run("yes outpost")
            assert never_ending.truncated and len(never_ending.output) == POLICY.output_cap
            huge = await session.run("head -c 5000000 /dev/zero")
            assert huge.truncated and len(huge.output) == POLICY.output_cap
            binary = await session.run("head -c 4000 /dev/urandom")
            assert not binary.truncated and len(binary.output) == 4000
            parsed = metrics.parse(binary.output)  # garbage in: every section reported, nothing raised
            assert len(parsed.problems) == 5 and parsed.mem_total_kb is None
            started = time.monotonic()
            with pytest.raises(CommandTimeoutError):
                await session.run("sleep 30", timeout=1.0)
            # cut off, not waited for (how promptly: bench/timing.py; the bound here is the command's own 30 s)
            assert time.monotonic() - started < 30
            ok = await session.run("echo still-alive")  # the connection survives a timed-out command
            assert ok.output == b"still-alive\n" and ok.exit_status == 0
            with pytest.raises(CommandError):
                await session.run("kill -9 $PPID; sleep 5")  # the device drops the connection mid-command
        finally:
            await session.wait_closed()

    asyncio.run(main())


def test_scheduler_survives_a_hanging_device(sshd, tmp_path):
    """A silent device must not stop the others being polled (bounded timeouts, bounded concurrency)."""
    silent = RawServer("silent")

    async def main():
        stack = Stack(tmp_path, ProbeConfig(connect_timeout=1, auth_timeout=1.5, command_timeout=2, jitter_percent=0,
                                            allow_loopback=True,
                                            backoff_max_seconds=10))
        try:
            hang = await stack.add_device("hang", silent.port, username="x", password="never-sent-1")
            good = await stack.add_device("good", sshd.port, username=sshd.user, password=sshd.password,
                                          host_key=sshd.host_line_a)
            stack.scheduler.start()
            await stack.wait_status(good, {"up"}, timeout=10)
            status = await stack.wait_status(hang, {"down"}, timeout=10)
            assert "SSH" in status.message
            assert any(a.kind == "status" and a.device_id == hang for a in await stack.probe.alerts())
        finally:
            await stack.scheduler.stop()
            stack.close()

    try:
        asyncio.run(main())
    finally:
        silent.close()
