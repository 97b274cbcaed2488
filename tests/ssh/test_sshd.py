"""Against a real OpenSSH sshd on loopback: password and key login, metrics parsed from the real
host's output, and DEV-3: after a host-key swap no authentication request reaches sshd (its own
log), the device shows "host key changed", an alert exists, and an audited re-pin restores polling."""

import asyncio
import re

import pytest

from appliance.probe import metrics
from appliance.ssh import keys
from appliance.ssh.connect import Credential, Endpoint, Policy, open_session
from appliance.ssh.targets import TargetPolicy
from appliance.ssh.errors import AuthFailedError, HostKeyMismatchError
from tests.probe.harness import OPERATOR, Stack


POLICY = Policy(connect_timeout=3, auth_timeout=5, command_timeout=5, output_cap=1 << 20,
                targets=TargetPolicy(allow_loopback=True))


def test_real_metrics_output_parses(sshd):
    async def main():
        session = await open_session(Endpoint(address="127.0.0.1", port=sshd.port, host_key=sshd.host_line_a),
                                     Credential(username=sshd.user, password=sshd.password), POLICY)
        first = await session.run(metrics.METRICS_COMMAND)
        await asyncio.sleep(0.3)
        second = await session.run(metrics.METRICS_COMMAND)
        await session.wait_closed()
        return first, second

    first, second = asyncio.run(main())
    assert first.exit_status == 0 and not first.truncated
    a, b = metrics.parse(first.output), metrics.parse(second.output)
    assert a.problems == [] and b.problems == [], (a.problems, first.output[:500])
    assert a.mem_total_kb > 0 and 0 <= a.memory_percent <= 100 and a.load1 is not None and a.uptime_seconds > 0
    assert any(d.mount == "/" for d in a.disks) and a.disk_percent is not None
    cpu = metrics.cpu_percent(a, b)
    assert cpu is None or 0 <= cpu <= 100


def test_key_login_and_negotiated_algorithms(sshd):
    async def main():
        key = keys.load_private_key(sshd.client_private)
        session = await open_session(Endpoint(address="127.0.0.1", port=sshd.port, host_key=sshd.host_line_a),
                                     Credential(username=sshd.user, private_key=key), POLICY)
        conn = session._conn
        algs = (conn._rekey_bytes, conn._rekey_seconds)  # DEV-4: rekeying by volume and time is on
        result = await session.run("id -un")
        await session.wait_closed()
        return result, algs

    result, rekey = asyncio.run(main())
    assert rekey == (POLICY.rekey_bytes, POLICY.rekey_seconds) and all(rekey)
    assert result.output.decode().strip() == sshd.user
    log = sshd.log_text()
    assert re.search(r"Accepted publickey for " + sshd.user, log)
    # DEV-4: modern algorithms only (sshd logs what was chosen)
    kex = re.findall(r"kex: algorithm: (\S+)", log)
    assert kex and all(k in ("mlkem768x25519-sha256", "curve25519-sha256", "curve25519-sha256@libssh.org",
                             "ecdh-sha2-nistp256") for k in kex)
    ciphers = re.findall(r"kex: client->server cipher: (\S+)", log)
    assert ciphers and all(c.startswith("aes256-gcm") for c in ciphers)


def test_wrong_password_is_auth_failed(sshd):
    async def main():
        with pytest.raises(AuthFailedError):
            await open_session(Endpoint(address="127.0.0.1", port=sshd.port, host_key=sshd.host_line_a),
                               Credential(username=sshd.user, password="wrong-password-1"), POLICY)

    asyncio.run(main())


def test_host_key_swap_refused_before_auth_then_repinned(sshd, tmp_path):
    async def main():
        stack = Stack(tmp_path)
        try:
            device_id = await stack.add_device("real-sshd", sshd.port, username=sshd.user, password=sshd.password)
            stack.scheduler.start()
            await stack.wait_status(device_id, {"up"})
            device = await stack.devices.get_device(device_id)
            assert device.pin_mode == "tofu" and keys.same_key(device.host_key, sshd.host_line_a)

            # swap the host key: restart sshd with key B; the probe's held connection goes away with it
            sshd.stop()
            before = len(sshd.log_text())
            sshd.start("b")
            await asyncio.sleep(0.2)
            assert stack.runner.open_connections == 0  # the held connection died with the old sshd
            stack.scheduler.device_changed(device_id)  # poll now rather than at the next interval
            status = await stack.wait_status(device_id, {"host key changed"})
            await asyncio.sleep(0.5)  # let sshd finish logging the aborted connection
            log_after = sshd.log_text()[before:]
            # control: the first login did show up in sshd's log as a userauth request
            assert "userauth-request for user " + sshd.user in sshd.log_text()[:before]
            # sshd saw the connection and the key exchange, but never a userauth request
            assert "Connection from 127.0.0.1" in log_after and "kex: algorithm:" in log_after
            for marker in ("userauth-request", "Accepted", "Failed password", "Failed publickey", "input_userauth"):
                assert marker not in log_after, (marker, log_after[-3000:])
            device = await stack.devices.get_device(device_id)
            assert device.host_key_status == "mismatch" and keys.same_key(device.presented_key, sshd.host_line_b)
            alerts = await stack.probe.alerts()
            assert any(a.kind == "host_key" and a.device_id == device_id for a in alerts), alerts
            assert status.status == "host key changed"
            assert stack.audit("device.hostkey.mismatch")

            # operator review: re-pin (audited) -> polling resumes and the alert resolves
            await stack.devices.pin_host_key(device_id, device.presented_key, actor=OPERATOR, mode="review")
            await stack.wait_status(device_id, {"up"})
            repins = stack.audit("device.hostkey.repin")
            assert repins and repins[-1][1] == f"device:{device_id}"
            assert not [a for a in await stack.probe.alerts() if a.kind == "host_key" and a.resolved_at is None]
        finally:
            await stack.scheduler.stop()
            stack.close()

    try:
        asyncio.run(main())
    finally:
        if sshd.proc is None or sshd.current_line != sshd.host_line_a:
            sshd.stop()
            sshd.start("a")


def test_direct_mismatch_raises_with_presented_key(sshd):
    async def main():
        with pytest.raises(HostKeyMismatchError) as info:
            await open_session(Endpoint(address="127.0.0.1", port=sshd.port, host_key=sshd.host_line_b),
                               Credential(username=sshd.user, password=sshd.password), POLICY)
        assert keys.same_key(info.value.presented, sshd.host_line_a)

    asyncio.run(main())
