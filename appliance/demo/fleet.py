"""Simulated Linux devices: SSH servers on loopback that answer the probe's metric command.

Used by `serve --demo-data` (a few devices so a newcomer sees a live dashboard), by
the benchmark (1,000+ devices) and by tests. Each device has its own Ed25519 host
key and password login; figures drift plausibly between polls (CPU counters grow,
memory and disk wander). Only loopback; no shell; commands other than the metric
command get a small fixed repertoire (hostname, uptime, echo, uname) or "not found".
"""

from __future__ import annotations

import random
import shlex

import msgspec

from appliance.probe.metrics import METRICS_COMMAND
from appliance.ssh import server

DEMO_USER = "demo"


class SimDevice:
    """The changing state of one simulated host."""

    def __init__(self, index: int, seed: int | None = None) -> None:
        self.rng = random.Random(seed if seed is not None else index)
        self.name = f"demo-{index:04d}"
        self.load_bias = self.rng.uniform(0.05, 0.6)
        self.busy = self.rng.randint(10_000, 100_000)
        self.idle = self.rng.randint(500_000, 900_000)
        self.mem_total = self.rng.choice((2, 4, 8, 16)) * 1024 * 1024
        self.mem_used = self.mem_total * self.rng.uniform(0.2, 0.7)
        self.disk_total = self.rng.choice((20, 50, 100)) * 1024 * 1024
        self.disk_used = self.disk_total * self.rng.uniform(0.2, 0.8)
        self.uptime = self.rng.uniform(3600, 90 * 86400)
        self.forced_cpu: float | None = None  # tests and demos: pin the CPU busy fraction

    def step(self) -> None:
        ticks = 100 * 2 * 10  # ~10 s of two CPUs
        cpu = self.forced_cpu if self.forced_cpu is not None else \
            min(0.99, max(0.01, self.load_bias + self.rng.gauss(0, 0.08)))
        self.busy += int(ticks * cpu)
        self.idle += int(ticks * (1 - cpu))
        self.mem_used = min(self.mem_total * 0.97, max(self.mem_total * 0.1,
                                                       self.mem_used + self.rng.gauss(0, self.mem_total * 0.01)))
        self.disk_used = min(self.disk_total * 0.99, self.disk_used + self.rng.uniform(0, 2048))
        self.uptime += 10

    def metrics_output(self) -> bytes:
        self.step()
        user, system = self.busy * 7 // 10, self.busy * 3 // 10
        load = self.load_bias * 2
        avail = int(self.mem_total - self.mem_used)
        used_disk = int(self.disk_used)
        pct = 100 * used_disk // self.disk_total
        boot_total, boot_used = 523248, 80000
        return (
            f"@@outpost:stat\ncpu  {user} 0 {system} {self.idle} 120 0 40 0 0 0\n"
            f"@@outpost:loadavg\n{load:.2f} {load * 0.9:.2f} {load * 0.8:.2f} 1/180 4242\n"
            f"@@outpost:meminfo\nMemTotal:       {self.mem_total} kB\nMemFree:        {avail // 2} kB\n"
            f"MemAvailable:   {avail} kB\nSwapTotal:      2097148 kB\nSwapFree:       2000000 kB\n"
            f"@@outpost:df\nFilesystem     1024-blocks      Used Available Capacity Mounted on\n"
            f"/dev/sda1      {self.disk_total} {used_disk} {self.disk_total - used_disk} {pct}% /\n"
            f"tmpfs          1024000 0 1024000 0% /run\n"
            f"/dev/sda2      {boot_total} {boot_used} {boot_total - boot_used} 16% /boot\n"
            f"@@outpost:uptime\n{self.uptime:.2f} {self.uptime * 1.5:.2f}\n@@outpost:end\n"
        ).encode()

    def handle(self, command: str) -> tuple[bytes, int]:
        if command == METRICS_COMMAND:
            return self.metrics_output(), 0
        try:
            words = shlex.split(command)
        except ValueError:
            return b"sh: syntax error\n", 2
        if not words:
            return b"", 0
        name, args = words[0], words[1:]
        if name == "hostname":
            return f"{self.name}\n".encode(), 0
        if name == "echo":
            return (" ".join(args) + "\n").encode(), 0
        if name == "uptime":
            return f" up {int(self.uptime // 86400)} days, load average: {self.load_bias * 2:.2f}\n".encode(), 0
        if name == "uname":
            return b"Linux " + self.name.encode() + b" 6.1.0-demo x86_64 GNU/Linux\n", 0
        if name == "true":
            return b"", 0
        if name == "false":
            return b"", 1
        return f"sh: {name}: command not found\n".encode(), 127


class DemoDevice(msgspec.Struct, kw_only=True):
    name: str
    port: int
    host_key_line: str


class Fleet:
    """A running set of simulated devices; `close()` stops them."""

    def __init__(self, password: str, authorized_keys: tuple = ()) -> None:
        self.password = password
        self.authorized_keys = authorized_keys
        self.devices: list[DemoDevice] = []
        self.sims: list[SimDevice] = []
        self._acceptors: list = []

    async def add(self, index: int, *, port: int = 0, host_key=None, host: str = "127.0.0.1") -> DemoDevice:
        sim = SimDevice(index)
        key = host_key or server.new_host_key()
        acceptor = await server.listen(port, key, username=DEMO_USER, password=self.password, handler=sim.handle,
                                       host=host, authorized_keys=self.authorized_keys)
        self._acceptors.append(acceptor)
        device = DemoDevice(name=sim.name, port=acceptor.get_port(), host_key_line=server.host_key_line(key))
        self.devices.append(device)
        self.sims.append(sim)
        return device

    async def close(self) -> None:
        await server.close_all(self._acceptors)
        self._acceptors.clear()


async def start(count: int, password: str, *, first_index: int = 1, authorized_keys: tuple = ()) -> Fleet:
    fleet = Fleet(password, authorized_keys)
    for i in range(count):
        await fleet.add(first_index + i)
    return fleet
