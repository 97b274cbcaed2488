"""PERF-1: the SSH probe against a simulated fleet of 1,000+ asyncssh devices on loopback.

    python -m bench.probe [--devices N] [--seconds S]

The fleet runs in a separate process (its CPU is reported separately). Measured in
one run, bounded to ~90 s:
1. new connections: the probe opens a connection to every device (connect, host-key
   check against the pin, Ed25519 key login) -> connections/s and client CPU each;
2. polls with connection reuse: every device polled repeatedly for S seconds
   (metric command, parse, store in the encrypted database via ProbeService)
   -> device polls/min and client CPU per poll -> % of one core per 100 devices at 60 s;
3. the same new-connection work (connect, key login, one command, close) done by
   OpenSSH `ssh` (spawned, known_hosts file, key auth) and paramiko (TCP_NODELAY on),
   against the same simulated devices.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-Pa55word-not-secret"
CONCURRENCY = 200


def _raise_nofile(want: int = 65536) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(want, hard) if hard != resource.RLIM_INFINITY else want
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


# --- the fleet process -----------------------------------------------------------------------

def fleet_main(count: int, client_pub: str) -> None:
    """Child process: start `count` devices, print their ports and keys as JSON, run until stdin closes."""
    _raise_nofile()
    from appliance.demo.fleet import start
    from appliance.ssh import server

    async def main():
        fleet = await start(count, PASSWORD, authorized_keys=(server.public_key_of(client_pub),))
        print(json.dumps([[d.port, d.host_key_line] for d in fleet.devices]), flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)
        await fleet.close()

    asyncio.run(main())


class FleetProcess:
    def __init__(self, count: int, client_pub: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.probe", "--fleet", str(count), client_pub],
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the fleet process did not start")
        self.devices = json.loads(line)
        self.ps = psutil.Process(self.proc.pid)

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            self.proc.kill()
            self.proc.wait(timeout=5)


# --- the probe side ----------------------------------------------------------------------------

class _PinOnly:
    """Devices are pre-pinned (preset keys), so the runner never needs DeviceService here."""

    async def pin_host_key(self, *a, **kw):
        raise AssertionError("unexpected pin")

    async def record_host_key_mismatch(self, *a, **kw):
        raise AssertionError("unexpected mismatch")


def _targets(devices, private_key: str):
    from appliance.devices.models import DeviceSecret, ProbeTarget

    secret = DeviceSecret(username="demo", private_key=private_key)
    return [ProbeTarget(device_id=i + 1, name=f"demo-{i + 1:04d}", address="127.0.0.1", port=port, poll_interval=60,
                        enabled=True, legacy_algorithms=False, host_key=line, host_key_status="pinned",
                        credential=secret) for i, (port, line) in enumerate(devices)]


async def _probe_phases(targets, tmp: Path, seconds: float, fleet: FleetProcess) -> dict:
    from appliance.app import open_database
    from appliance.clock import SystemClock
    from appliance.config import ProbeConfig
    from appliance.probe.runner import Runner
    from appliance.probe.service import ProbeService, policy_from

    db, _ = open_database(tmp, readers=2)
    # the probe's tables reference devices(id): insert plain rows for the simulated devices
    db.write_sync(lambda c: c.executemany(
        "INSERT INTO devices (id, name, address, port, poll_interval, created_at, updated_at) VALUES (?, ?, ?, ?, 60, 0, 0)",
        [(t.device_id, t.name, t.address, t.port) for t in targets]))
    # the simulated fleet listens on loopback, which the probe target policy refuses unless allowed
    cfg = ProbeConfig(connect_timeout=10, auth_timeout=30, command_timeout=30, allow_loopback=True)
    runner = Runner(policy_from(cfg), _PinOnly(), SystemClock())
    service = ProbeService(db, SystemClock(), cfg, runner, None)
    sem = asyncio.Semaphore(CONCURRENCY)
    out = {}
    try:
        # phase 1: a new connection per device
        async def connect(t):
            async with sem:
                await runner.session_for(t)
        cpu0, f0, t0 = time.process_time(), fleet.cpu(), time.perf_counter()
        await asyncio.gather(*(connect(t) for t in targets))
        wall = time.perf_counter() - t0
        out["connect"] = dict(n=len(targets), wall=wall, cpu=time.process_time() - cpu0, fleet_cpu=fleet.cpu() - f0,
                              held=runner.open_connections)

        # phase 2: polls over the held connections, results stored
        polls = 0
        failed = 0
        deadline = time.perf_counter() + seconds

        async def worker(queue):
            nonlocal polls, failed
            while time.perf_counter() < deadline:
                t = queue.pop()
                queue.insert(0, t)
                result = await runner.poll(t)
                await service.record(result)
                polls += 1
                failed += result.status not in ("up", "degraded")
        order = list(targets)
        cpu0, f0, t0 = time.process_time(), fleet.cpu(), time.perf_counter()
        await asyncio.gather(*(worker(order) for _ in range(CONCURRENCY)))
        wall = time.perf_counter() - t0
        out["poll"] = dict(polls=polls, failed=failed, wall=wall, cpu=time.process_time() - cpu0,
                           fleet_cpu=fleet.cpu() - f0, samples=db.read_sync(
                               lambda c: c.execute("SELECT COUNT(*) FROM probe_samples").fetchone()[0]))
    finally:
        await runner.close()
        db.close()
    return out


async def _probe_new_sessions(targets, seconds: float, fleet: FleetProcess, parallel: int) -> dict:
    """Same work as the peers below: connect, key login, one command, close."""
    from appliance.probe.metrics import METRICS_COMMAND
    from appliance.ssh import keys
    from appliance.ssh.connect import Credential, Endpoint, Policy, open_session
    from appliance.ssh.targets import TargetPolicy

    key = keys.load_private_key(targets[0].credential.private_key)
    cred = Credential(username="demo", private_key=key)
    policy = Policy(connect_timeout=10, auth_timeout=30, command_timeout=30,
                    targets=TargetPolicy(allow_loopback=True))  # the fleet is on loopback
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(i):
        nonlocal done
        while time.perf_counter() < deadline:
            t = targets[(i * 7 + done) % len(targets)]
            s = await open_session(Endpoint(address=t.address, port=t.port, host_key=t.host_key), cred, policy)
            await s.run(METRICS_COMMAND)
            await s.wait_closed()
            done += 1
    cpu0, f0, t0 = time.process_time(), fleet.cpu(), time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(parallel)))
    return dict(n=done, wall=time.perf_counter() - t0, cpu=time.process_time() - cpu0, fleet_cpu=fleet.cpu() - f0)


def _ssh_sessions(targets, key_path: Path, known_hosts: Path, seconds: float, fleet: FleetProcess,
                  parallel: int) -> dict:
    from appliance.probe.metrics import METRICS_COMMAND

    done = 0
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker(i):
        nonlocal done
        n = 0
        while time.perf_counter() < deadline:
            t = targets[(i * 13 + n) % len(targets)]
            n += 1
            subprocess.run(["ssh", "-F", "none", "-i", str(key_path), "-o", f"UserKnownHostsFile={known_hosts}",
                            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                            "-o", "Ciphers=aes256-gcm@openssh.com", "-o", "KexAlgorithms=curve25519-sha256",
                            "-p", str(t.port), "demo@127.0.0.1", METRICS_COMMAND],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=30)
            with lock:
                done += 1
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    f0, t0 = fleet.cpu(), time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(worker, range(parallel)))
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return dict(n=done, wall=time.perf_counter() - t0, cpu=cpu, fleet_cpu=fleet.cpu() - f0)


def _paramiko_sessions(targets, key_path: Path, seconds: float, fleet: FleetProcess, parallel: int) -> dict:
    import socket

    import paramiko

    from appliance.probe.metrics import METRICS_COMMAND

    pkey = paramiko.Ed25519Key.from_private_key_file(str(key_path))  # loaded once, like ours
    done = 0
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def one(t):
        sock = socket.create_connection(("127.0.0.1", t.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # paramiko at its best (SPEC Facts)
        client = paramiko.SSHClient()
        client.get_host_keys().add(f"[127.0.0.1]:{t.port}", t.host_key.split()[0],
                                   paramiko.PKey.from_type_string(t.host_key.split()[0],
                                                                  __import__("base64").b64decode(t.host_key.split()[1])))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect("127.0.0.1", t.port, username="demo", pkey=pkey, sock=sock, allow_agent=False,
                       look_for_keys=False, timeout=10)
        _, stdout, _ = client.exec_command(METRICS_COMMAND)
        stdout.read()
        client.close()

    def worker(i):
        nonlocal done
        n = 0
        while time.perf_counter() < deadline:
            one(targets[(i * 11 + n) % len(targets)])
            n += 1
            with lock:
                done += 1
    cpu0, f0, t0 = time.process_time(), fleet.cpu(), time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(worker, range(parallel)))
    return dict(n=done, wall=time.perf_counter() - t0, cpu=time.process_time() - cpu0, fleet_cpu=fleet.cpu() - f0)


def measure(devices: int = 1000, seconds: float = 20.0, compare_seconds: float = 8.0) -> dict:
    _raise_nofile()
    with tempfile.TemporaryDirectory(prefix="outpost-bench-probe-") as tmp_s:
        tmp = Path(tmp_s)
        key_path = tmp / "client"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key_path)], check=True)
        fleet = FleetProcess(devices, (tmp / "client.pub").read_text().strip())
        try:
            targets = _targets(fleet.devices, key_path.read_text())
            known = tmp / "known_hosts"
            known.write_text("".join(f"[127.0.0.1]:{t.port} {t.host_key}\n" for t in targets))
            (tmp / "db").mkdir()
            result = asyncio.run(_probe_phases(targets, tmp / "db", seconds, fleet))
            result["cmp_probe"] = asyncio.run(_probe_new_sessions(targets, compare_seconds, fleet, parallel=32))
            result["cmp_ssh"] = _ssh_sessions(targets, key_path, known, compare_seconds, fleet, parallel=8)
            result["cmp_paramiko"] = _paramiko_sessions(targets, key_path, compare_seconds, fleet, parallel=8)
        finally:
            fleet.close()
    result["devices"] = devices
    return result


def _rate(d: dict) -> float:
    return d["n"] / d["wall"] if d["wall"] else 0.0


def rows_from(m: dict) -> list[tuple[str, str, str, str, str]]:
    c, p = m["connect"], m["poll"]
    polls_min = p["polls"] / p["wall"] * 60
    cpu_per_poll = p["cpu"] / max(1, p["polls"])
    core_per_100 = cpu_per_poll * (100 / 60) * 100  # % of one core for 100 devices polled every 60 s
    probe, ssh, pmk = m["cmp_probe"], m["cmp_ssh"], m["cmp_paramiko"]

    def per(d):
        return f"{_rate(d):.0f}/s, client {1000 * d['cpu'] / max(1, d['n']):.1f} ms CPU each"

    def fleet_cpu(d):
        return f"fleet {d['fleet_cpu'] / d['wall'] * 100:.0f} % of a core"

    return [
        ("probe: device polls/min (reuse, stored)", f"{polls_min:,.0f} ({m['devices']} devices, {p['failed']} failed)",
         f"{p['samples']:,} samples stored", ">= 20,000/min",
         f"probe {p['cpu'] / p['wall'] * 100:.0f} % / {fleet_cpu(p)}"),
        ("probe: CPU per 100 devices @ 60 s", f"{core_per_100:.2f} % of one core",
         f"{1000 * cpu_per_poll:.2f} ms CPU per poll", "<= 1 % of one core", ""),
        ("probe: connections held open", f"{c['held']:,} of {c['n']:,}",
         f"opened at {c['n'] / c['wall']:.0f}/s, {1000 * c['cpu'] / c['n']:.1f} ms client CPU each",
         ">= 5,000 (not run: 1,000 here)", f"{fleet_cpu(c)}"),
        ("probe: new sessions vs OpenSSH ssh", per(probe), "ssh " + per(ssh),
         f">= 2x ({_rate(probe) / max(_rate(ssh), 1e-9):.1f}x)", f"{fleet_cpu(probe)} / {fleet_cpu(ssh)}"),
        ("probe: new sessions vs paramiko", per(probe), "paramiko " + per(pmk),
         f">= 1.5x ({_rate(probe) / max(_rate(pmk), 1e-9):.1f}x)", f"{fleet_cpu(probe)} / {fleet_cpu(pmk)}"),
    ]


def run() -> list[tuple[str, str, str, str, str]]:
    return rows_from(measure())


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--fleet":
        fleet_main(int(sys.argv[2]), sys.argv[3])
        sys.exit(0)
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=20.0)
    a = ap.parse_args()
    from bench.load import print_table

    print_table(rows_from(measure(a.devices, a.seconds)), title="PERF-1 probe")
