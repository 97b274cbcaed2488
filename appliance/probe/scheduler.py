"""The poll scheduler (PROBE-1, PROBE-6).

Every enabled device is polled at its interval plus jitter. Bounded everywhere:
- at most `max_concurrency` polls run at once (a semaphore acquired BEFORE a poll
  task exists, so waiting work is a count, not a queue of tasks);
- at most one poll per device is in flight; a device still busy when it falls
  due again is skipped and rescheduled, never queued twice;
- a failing device backs off exponentially (interval, 2x, 4x ... up to
  `backoff_max_seconds`); any change to it (re-pin, edit) resets the backoff.
Self-monitoring: `stats()` gives backlog (devices due but not started) and poll lag.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time

from appliance.devices.models import ProbeTarget
from appliance.probe.models import PollResult

log = logging.getLogger("outpost.probe")
REFRESH_SECONDS = 60.0
ROLLUP_SECONDS = 60.0
TICK_MAX = 1.0


class Scheduler:
    def __init__(self, service, runner, devices, *, max_concurrency: int, jitter: float = 0.1,
                 backoff_max: float = 900.0) -> None:
        self.service = service
        self.runner = runner
        self.devices = devices
        self.max_concurrency = max_concurrency
        self.jitter = jitter
        self.backoff_max = backoff_max
        self._targets: dict[int, ProbeTarget] = {}
        self._heap: list[tuple[float, int]] = []
        self._due: dict[int, float] = {}
        self._failures: dict[int, int] = {}
        self._in_flight: set[int] = set()
        self._dirty: set[int] = set()
        self._refresh_all = True
        self._wake = asyncio.Event()
        self._sem = asyncio.Semaphore(max_concurrency)
        self._tasks: set[asyncio.Task] = set()
        self._main: asyncio.Task | None = None
        self._last_lag = 0.0
        self._polls = 0
        self._subscribed = False

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if not self._subscribed:
            self.devices.subscribe(self.device_changed)
            self._subscribed = True
        self._main = asyncio.create_task(self._run(), name="probe-scheduler")

    async def stop(self) -> None:
        if self._main:
            self._main.cancel()
            await asyncio.gather(self._main, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.runner.close()

    def device_changed(self, device_id: int) -> None:
        """DeviceService callback (same event loop): refresh this device and poll it soon."""
        self._dirty.add(device_id)
        self._failures.pop(device_id, None)
        self._wake.set()

    # --- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        last_refresh = last_rollup = time.monotonic()
        while True:
            try:
                now = time.monotonic()
                if self._refresh_all or now - last_refresh > REFRESH_SECONDS:
                    await self._load_all()
                    last_refresh, self._refresh_all = now, False
                if self._dirty:
                    await self._load_dirty()
                if now - last_rollup > ROLLUP_SECONDS:
                    last_rollup = now
                    self._spawn(self._roll_up())
                await self._start_due()
                await self._sleep()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep polling whatever one bad round did
                log.exception("probe scheduler round failed")
                await asyncio.sleep(1.0)

    async def _load_all(self) -> None:
        targets = await self.devices.list_probe_targets()
        fresh = {t.device_id: t for t in targets if t.enabled}
        for gone in set(self._targets) - set(fresh):
            self._forget(gone)
        for device_id, target in fresh.items():
            self._targets[device_id] = target
            if device_id not in self._due:
                self._schedule(device_id, random.uniform(0, min(target.poll_interval, 5.0)))

    async def _load_dirty(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for device_id in dirty:
            target = await self.devices.get_probe_target(device_id)
            if target is None or not target.enabled:
                self._forget(device_id)
                continue
            self._targets[device_id] = target
            self._schedule(device_id, 0.0)

    def _forget(self, device_id: int) -> None:
        self._targets.pop(device_id, None)
        self._due.pop(device_id, None)
        self._failures.pop(device_id, None)
        self.runner.forget(device_id)

    def _schedule(self, device_id: int, delay: float) -> None:
        due = time.monotonic() + delay
        self._due[device_id] = due
        heapq.heappush(self._heap, (due, device_id))

    async def _start_due(self) -> None:
        while self._heap and self._heap[0][0] <= time.monotonic():
            due, device_id = heapq.heappop(self._heap)
            if self._due.get(device_id) != due:
                continue  # superseded entry (rescheduled or forgotten)
            target = self._targets.get(device_id)
            if target is None:
                continue
            if device_id in self._in_flight:
                self._schedule(device_id, target.poll_interval)
                continue
            await self._sem.acquire()  # bounded: wait here rather than queue tasks
            self._last_lag = max(0.0, time.monotonic() - due)
            self._in_flight.add(device_id)
            del self._due[device_id]
            self._spawn(self._poll(target))

    async def _sleep(self) -> None:
        delay = TICK_MAX
        if self._heap:
            delay = max(0.0, min(TICK_MAX, self._heap[0][0] - time.monotonic()))
        self._wake.clear()
        try:
            async with asyncio.timeout(delay):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _poll(self, target: ProbeTarget) -> None:
        device_id = target.device_id
        try:
            checks = await self.service.checks(device_id)
            result: PollResult = await self.runner.poll(target, checks)
            await self.service.record(result)
            self._polls += 1
            failed = result.status in ("down", "unreachable", "auth failed", "host key changed")
            self._failures[device_id] = self._failures.get(device_id, 0) + 1 if failed else 0
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("probe poll failed", extra={"device_id": device_id})
            self._failures[device_id] = self._failures.get(device_id, 0) + 1
        finally:
            self._in_flight.discard(device_id)
            self._sem.release()
        if device_id in self._targets and device_id not in self._due:
            self._schedule(device_id, self._next_delay(self._targets[device_id].poll_interval,
                                                       self._failures.get(device_id, 0)))
            self._wake.set()

    def _next_delay(self, interval: float, failures: int) -> float:
        base = interval if failures <= 1 else min(self.backoff_max, interval * 2 ** (failures - 1))
        return max(1.0, base * (1 + random.uniform(-self.jitter, self.jitter)))

    async def _roll_up(self) -> None:
        try:
            await self.service.roll_up_and_expire()
        except Exception:
            log.exception("probe roll-up failed")

    # --- self-monitoring (PROBE-6) -----------------------------------------------------------

    def stats(self) -> dict[str, float]:
        now = time.monotonic()
        overdue = [now - due for due in self._due.values() if due <= now]
        return {"probe_devices": len(self._targets), "probe_in_flight": len(self._in_flight),
                "probe_backlog": len(overdue), "probe_lag_seconds": round(max(overdue + [self._last_lag]), 3),
                "probe_polls_total": self._polls, "probe_connections": self.runner.open_connections}

    def metric_samples(self) -> list:
        """/metrics source: [(name, type, help, labels, value)] (PROBE-6)."""
        s = self.stats()
        return [
            ("outpost_probe_devices", "gauge", "Enabled devices the probe polls.", {}, s["probe_devices"]),
            ("outpost_probe_in_flight", "gauge", "Device polls running now.", {}, s["probe_in_flight"]),
            ("outpost_probe_backlog", "gauge", "Devices due for a poll that have not started yet.", {},
             s["probe_backlog"]),
            ("outpost_probe_lag_seconds", "gauge", "How late the most overdue poll is (or the last one started).", {},
             s["probe_lag_seconds"]),
            ("outpost_probe_polls_total", "counter", "Device polls completed since start.", {}, s["probe_polls_total"]),
            ("outpost_probe_connections", "gauge", "SSH connections held open to devices.", {},
             s["probe_connections"]),
        ]
