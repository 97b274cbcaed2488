"""PROBE-4 retention and roll-ups: raw 48 h, 5-minute 30 days, hourly 400 days; chart ranges read
the right table; PROBE-3 status transitions are events, thresholds open and resolve alerts."""

import asyncio

from appliance.clock import FrozenClock
from appliance.probe.models import PollResult
from tests.probe.harness import Stack

HOUR = 3600
DAY = 86400


def test_rollups_retention_and_transitions(tmp_path):
    async def main():
        stack = Stack(tmp_path)
        clock = FrozenClock()
        stack.probe.clock = clock
        try:
            device_id = await stack.add_device("d", 22, username="u", password="pw-pw-pw-pw1", address="192.0.2.1")
            now = clock.now()
            # an hour of samples every minute, CPU climbing over the threshold at the end
            for i in range(60):
                await stack.probe.record(PollResult(device_id=device_id, ts=now - 3600 + 60 * i, status="up",
                                                    latency_ms=1.0, cpu=50.0 + i * 0.8, memory=40.0, disk=20.0))
            assert [a.kind for a in await stack.probe.alerts()] == ["cpu"]
            await stack.probe.record(PollResult(device_id=device_id, ts=now, status="unreachable", message="refused"))
            assert {a.kind for a in await stack.probe.alerts()} == {"cpu", "status"}
            await stack.probe.record(PollResult(device_id=device_id, ts=now + 1, status="up", cpu=10.0, memory=1.0,
                                                disk=1.0, latency_ms=1.0))
            open_alerts = [a for a in await stack.probe.alerts() if a.resolved_at is None]
            assert open_alerts == []
            events = await stack.probe.events(device_id)
            assert [(e.old_status, e.new_status) for e in reversed(events)] == [
                ("unknown", "up"), ("up", "unreachable"), ("unreachable", "up")]
            changes = stack.audit("probe.status.change")
            assert len(changes) == 3 and all('"to"' in row[3] for row in changes)
            # very old data: raw older than 48 h, 5-minute older than 30 d, hourly older than 400 d
            for ts in (now - 49 * HOUR, now - 31 * DAY, now - 401 * DAY):
                await stack.probe.record(PollResult(device_id=device_id, ts=ts, status="up", cpu=1.0, latency_ms=1.0))
            clock.now = lambda: now + 2
            await stack.probe.roll_up_and_expire()
            await stack.db.write(lambda c: c.executemany(
                "INSERT INTO probe_rollups (device_id, width, bucket, samples, cpu) VALUES (?, ?, ?, 1, 1.0)",
                [(device_id, 300, now - 31 * DAY), (device_id, 300, now - 29 * DAY),
                 (device_id, 3600, now - 401 * DAY), (device_id, 3600, now - 399 * DAY)]))
            await stack.probe.roll_up_and_expire()

            def counts(c):
                return (c.execute("SELECT MIN(ts) FROM probe_samples").fetchone()[0],
                        c.execute("SELECT MIN(bucket) FROM probe_rollups WHERE width = 300").fetchone()[0],
                        c.execute("SELECT MIN(bucket) FROM probe_rollups WHERE width = 3600").fetchone()[0])
            oldest_raw, oldest_5m, oldest_1h = stack.db.read_sync(counts)
            assert oldest_raw >= now - 48 * HOUR
            assert now - 30 * DAY <= oldest_5m and now - 400 * DAY <= oldest_1h
            hour, day, month = [await stack.probe.series(device_id, r) for r in ("1h", "1d", "1m")]
            assert len(hour.ts) == 60 and hour.width == 0  # 59 in the last hour + the recovery; "unreachable" has none
            assert 12 <= len(day.ts) <= 14 and day.width == 300 and all(t % 300 == 0 for t in day.ts)
            assert 2 <= len(month.ts) <= 4 and month.width == 3600
        finally:
            stack.close()

    asyncio.run(main())
