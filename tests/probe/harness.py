"""In-process probe stack for tests: a real encrypted database, the real DeviceService and vault,
the real runner/scheduler, and real SSH servers (simulated fleet or OpenSSH sshd)."""

from __future__ import annotations

import asyncio
import time

from appliance.app import open_database
from appliance.audit.models import Actor
from appliance.clock import SystemClock
from appliance.config import ProbeConfig
from appliance.crypto.keypool import KeyPool
from appliance.devices.models import CredentialCreate, DeviceCreate
from appliance.devices.service import DeviceService
from appliance.probe.runner import Runner
from appliance.probe.scheduler import Scheduler
from appliance.probe.service import ProbeService, policy_from

OPERATOR = Actor(type="user", name="op", source="127.0.0.1")
# Test devices listen on 127.0.0.1: the target policy must allow loopback explicitly.
FAST = ProbeConfig(connect_timeout=2.0, auth_timeout=4.0, command_timeout=4.0, output_cap_bytes=65536,
                   backoff_max_seconds=10, jitter_percent=0, allow_loopback=True)


class Stack:
    def __init__(self, tmp_path, config: ProbeConfig = FAST) -> None:
        self.db, _ = open_database(tmp_path, readers=2)
        self.clock = SystemClock()
        self.devices = DeviceService(self.db, b"v" * 32, self.clock, KeyPool())
        self.runner = Runner(policy_from(config), self.devices, self.clock)
        self.probe = ProbeService(self.db, self.clock, config, self.runner, self.devices)
        self.scheduler = Scheduler(self.probe, self.runner, self.devices, max_concurrency=config.max_concurrency,
                                   jitter=0, backoff_max=config.backoff_max_seconds)

    async def add_device(self, name: str, port: int, *, username: str, password: str | None = None,
                         private_key: str | None = None, interval: int = 10, address: str = "127.0.0.1",
                         host_key: str | None = None) -> int:
        kind = "key" if private_key else "password"
        cred = await self.devices.create_credential(
            CredentialCreate(name=f"cred-{name}", username=username, kind=kind, password=password,
                             private_key=private_key), actor=OPERATOR)
        return await self.devices.create_device(
            DeviceCreate(name=name, address=address, port=port, poll_interval=interval, credential_id=cred,
                         host_key=host_key or ""), actor=OPERATOR)

    async def wait_status(self, device_id: int, wanted: set[str], timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            status = await self.probe.device_status(device_id)
            if status and status.status in wanted:
                return status
            await asyncio.sleep(0.1)
        raise AssertionError(f"device {device_id} did not reach {wanted}: {status}")

    def audit(self, action_prefix: str = "") -> list[tuple]:
        return self.db.read_sync(lambda c: c.execute(
            "SELECT action, target, outcome, details FROM audit_log WHERE action LIKE ? ORDER BY seq",
            (action_prefix + "%",)).fetchall())

    def close(self) -> None:
        self.db.close()
