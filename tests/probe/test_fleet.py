"""The probe against the simulated fleet (asyncssh servers on loopback): TOFU pin, polling with
connection reuse, samples, status, thresholds and alerts, custom checks, on-demand runs."""

import asyncio
import json

import pytest

from appliance.demo.fleet import DEMO_USER, start
from appliance.ssh import keys
from tests.probe.harness import OPERATOR, Stack

PASSWORD = "demo-Pa55-word-xyz"


def test_fleet_polled_pinned_charted_alerted(tmp_path):
    async def main():
        stack = Stack(tmp_path)
        fleet = await start(3, PASSWORD)
        try:
            ids = [await stack.add_device(d.name, d.port, username=DEMO_USER, password=PASSWORD)
                   for d in fleet.devices]
            bad = await stack.add_device("wrong-pass", fleet.devices[0].port, username=DEMO_USER, password="nope-nope-1")
            stack.scheduler.start()
            for device_id in ids:
                await stack.wait_status(device_id, {"up"})
            assert (await stack.wait_status(bad, {"auth failed"})).message
            # TOFU: each key pinned (audited with fingerprint) and equal to the device's real key
            for device_id, demo in zip(ids, fleet.devices):
                device = await stack.devices.get_device(device_id)
                assert device.host_key_status == "pinned" and keys.same_key(device.host_key, demo.host_key_line)
            pins = stack.audit("device.hostkey.pin")
            assert len(pins) == 4 and all("SHA256:" in row[3] for row in pins)
            # second poll on the reused connection gives CPU from /proc/stat deltas
            fleet.sims[0].forced_cpu = 0.97  # push device 0 over the CPU threshold
            for _ in range(100):
                stack.scheduler.device_changed(ids[0])
                await asyncio.sleep(0.1)
                status = await stack.probe.device_status(ids[0])
                if status.cpu is not None and status.cpu > 90:
                    break
            assert status.cpu > 90 and status.memory is not None and status.disk is not None and status.uptime > 0
            assert json.loads(status.disks)[0]["mount"] == "/"
            assert stack.runner.open_connections == 3  # one held connection per good device
            alerts = await stack.probe.alerts()
            cpu_alert = next(a for a in alerts if a.kind == "cpu" and a.device_id == ids[0])
            assert any(a.kind == "status" and a.device_id == bad for a in alerts)
            acked = await stack.probe.acknowledge(cpu_alert.id, OPERATOR)
            assert acked.acked_by == "op"
            with pytest.raises(Exception, match="already acknowledged"):
                await stack.probe.acknowledge(cpu_alert.id, OPERATOR)
            assert [r[0] for r in stack.audit("probe.alert.acknowledge")] == ["probe.alert.acknowledge"]
            # status transitions are events and audited
            events = await stack.probe.events(ids[1])
            assert events[-1].old_status == "unknown" and events[-1].new_status == "up"
            assert stack.audit("probe.status.change")
            # time series: raw for 1 h; roll-ups for 1 d and 1 m after the roll-up job
            series = await stack.probe.series(ids[0], "1h")
            assert len(series.ts) >= 2 and series.cpu[-1] is not None
            await stack.probe.roll_up_and_expire()
            assert len((await stack.probe.series(ids[0], "1d")).ts) >= 1
            assert len((await stack.probe.series(ids[0], "1m")).ts) >= 1
            # self-monitoring
            stats = stack.scheduler.stats()
            assert stats["probe_devices"] == 4 and stats["probe_polls_total"] >= 5
            # on demand: a fresh connection, output returned; the audit has the full command line, never output
            report = await stack.probe.run_command(ids[1], "echo \"hello-\"'from-device'", OPERATOR)
            assert report["output"] == "hello-from-device\n" and report["exit_status"] == 0
            test = await stack.probe.test_connectivity(ids[1], OPERATOR)
            assert test["ok"], test
            runs = stack.audit("probe.command.run")
            assert runs and "hello-from-device" not in runs[-1][3]
            assert json.loads(runs[-1][3])["command"] == "echo \"hello-\"'from-device'"
            # custom check: a failing check degrades the device and opens a check alert
            await stack.probe.add_check(ids[2], name="must-fail", command="false", expect_exit=0, expect_regex=None,
                                        timeout=5, output_cap=4096, actor=OPERATOR)
            stack.scheduler.device_changed(ids[2])
            await stack.wait_status(ids[2], {"degraded"})
            assert any(a.kind == "check" and a.device_id == ids[2] for a in await stack.probe.alerts())
        finally:
            await stack.scheduler.stop()
            await fleet.close()
            stack.close()

    asyncio.run(main())


def test_network_gear_without_linux_metrics_is_up_not_degraded(tmp_path):
    """A switch answers the Linux command with an error: logged in and reachable, so up, with a note."""
    from appliance.ssh import server

    async def main():
        stack = Stack(tmp_path)
        key = server.new_host_key()
        acceptor = await server.listen(0, key, username="admin", password=PASSWORD,
                                       handler=lambda cmd: (b"% Invalid input detected at '^' marker.\n", 1))
        try:
            device_id = await stack.add_device("switch", acceptor.get_port(), username="admin", password=PASSWORD,
                                               host_key=server.host_key_line(key))
            stack.scheduler.start()
            status = await stack.wait_status(device_id, {"up", "degraded"})
            assert status.status == "up" and "no Linux metrics" in status.message and status.latency_ms is not None
            device = await stack.devices.get_device(device_id)
            assert device.pin_mode == "preset"  # the key entered by the operator, no TOFU
        finally:
            await stack.scheduler.stop()
            acceptor.close()
            stack.close()

    asyncio.run(main())
