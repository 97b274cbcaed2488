"""ProbeService: poll results -> state, events, samples, alerts; charts; on-demand runs.

Every status change is written with its event and audit record in one transaction.
Alerts: at most one open per device and kind; thresholds open and resolve them
automatically, operators acknowledge them (audited). Retention: raw samples 48 h,
5-minute roll-ups 30 days, hourly roll-ups 400 days (PROBE-4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from appliance.audit.events import Event
from appliance.audit.models import Actor, Outcome
from appliance.audit.service import AuditService
from appliance.clock import Clock
from appliance.config import ProbeConfig
from appliance.errors import NotFoundError, ValidationError
from appliance.probe import patterns, queries
from appliance.probe.models import (
    BAD_STATUSES,
    RANGES,
    Alert,
    Check,
    DeviceStatus,
    PollResult,
    ProbeEvent,
    Series,
    Thresholds,
)
from appliance.ssh.connect import Policy
from appliance.ssh.targets import TargetPolicy

if TYPE_CHECKING:  # the store is handed in at run time; imported for the annotation only
    from appliance.store.connection import Connection, Database


def policy_from(config: ProbeConfig) -> Policy:
    """The SSH limits and the target policy the runner applies to every connection."""
    return Policy(connect_timeout=config.connect_timeout, auth_timeout=config.auth_timeout,
                  command_timeout=config.command_timeout, output_cap=config.output_cap_bytes,
                  rekey_bytes=config.rekey_bytes, rekey_seconds=config.rekey_seconds,
                  keepalive_seconds=config.keepalive_seconds,
                  targets=TargetPolicy(allowed_subnets=tuple(config.allowed_subnets),
                                       allow_loopback=config.allow_loopback))

MAX_COMMAND = 1000
MAX_CHECKS = 20  # per device: each one runs on every poll


class ProbeService:
    def __init__(self, db: Database, clock: Clock, config: ProbeConfig, runner=None, devices=None) -> None:
        self.db = db
        self.clock = clock
        self.audit = AuditService(db, clock)
        self.config = config
        self.thresholds = Thresholds(cpu=config.cpu_threshold, memory=config.memory_threshold,
                                     disk=config.disk_threshold)
        self.runner = runner
        self.devices = devices

    # --- poll results -----------------------------------------------------------------

    async def record(self, result: PollResult) -> None:
        """Store one poll: state, transition event (audited), sample, alerts, check results."""
        await self.db.write(lambda conn: self.record_in(conn, result))

    def record_in(self, conn: Connection, result: PollResult) -> None:
        previous = queries.get_status(conn, result.device_id)
        old = previous[0] if previous else "unknown"
        since = previous[1] if previous and old == result.status else result.ts
        queries.upsert_state(conn, result, since)
        reason_changed = previous is not None and previous[2] != result.message[:500]
        if result.refused and (old != result.status or reason_changed):
            # audited once per refusal reason, not on every poll
            self.audit.record(conn, Event.PROBE_TARGET_REFUSED, ts=result.ts, actor=Actor.system(), outcome="denied",
                         target=f"device:{result.device_id}", details={"reason": result.message[:300]})
        if old != result.status:
            queries.insert_event(conn, result.device_id, result.ts, old, result.status, result.message)
            self.audit.record(conn, Event.PROBE_STATUS_CHANGE, ts=result.ts, actor=Actor.system(),
                         outcome="success" if result.status == "up" else "failure", target=f"device:{result.device_id}",
                         details={"from": old, "to": result.status, "reason": result.message[:200]})
        if result.cpu is not None or result.memory is not None or result.latency_ms is not None:
            queries.insert_sample(conn, result)
        for check in result.checks:
            queries.update_check_result(conn, check.check_id, check.ok, check.message, result.ts)
        self._alerts(conn, result)

    def _alerts(self, conn: Connection, r: PollResult) -> None:
        t = self.thresholds
        up = r.status in ("up", "degraded")
        wanted = {
            "cpu": (up and r.cpu is not None and r.cpu > t.cpu, r.cpu, f"CPU {r.cpu or 0:.0f} % above {t.cpu:.0f} %"),
            "memory": (up and r.memory is not None and r.memory > t.memory, r.memory,
                       f"Memory {r.memory or 0:.0f} % above {t.memory:.0f} %"),
            "disk": (up and r.disk is not None and r.disk > t.disk, r.disk,
                     f"Disk {r.disk or 0:.0f} % above {t.disk:.0f} %"),
            "host_key": (r.status == "host key changed", None,
                         "Host key changed: login refused; review the new fingerprint and re-pin"),
            "status": (r.status in BAD_STATUSES, None, f"Device {r.status}: {r.message}"[:300]),
            "check": (any(not c.ok for c in r.checks), None,
                      "Custom check failed: " + ", ".join(c.message for c in r.checks if not c.ok)[:250]),
        }
        for kind, (active, value, message) in wanted.items():
            if kind == "check" and not r.checks and r.status not in ("up", "degraded"):
                continue  # no check ran this time (device down): keep its alert as it is
            if kind in ("cpu", "memory", "disk") and not up:
                continue  # no fresh figure: neither open nor resolve
            open_id = queries.get_open_alert(conn, r.device_id, kind)
            if open_id is None:
                if active:
                    alert_id = queries.insert_alert(conn, r.device_id, kind, message, value, r.ts)
                    self.audit.record(conn, Event.PROBE_ALERT_OPEN, ts=r.ts, actor=Actor.system(),
                                      target=f"device:{r.device_id}", details={"alert": alert_id, "kind": kind})
            elif active:
                queries.update_alert_value(conn, open_id, value)
            else:
                queries.resolve_alert(conn, open_id, r.ts)
                self.audit.record(conn, Event.PROBE_ALERT_RESOLVE, ts=r.ts, actor=Actor.system(),
                                  target=f"device:{r.device_id}", details={"alert": open_id, "kind": kind})

    # --- reading ------------------------------------------------------------------------

    async def fleet(self) -> list[DeviceStatus]:
        return await self.db.read(queries.list_fleet)

    async def device_status(self, device_id: int) -> DeviceStatus | None:
        return await self.db.read(lambda conn: queries.get_device_status(conn, device_id))

    async def statuses(self, device_ids: list[int]) -> dict[int, dict]:
        """For the device list: status, latency and last poll time per device id."""
        wanted = set(device_ids)
        return {s.device_id: {"status": s.status, "latency_ms": s.latency_ms, "checked_at": s.polled_at}
                for s in await self.fleet() if s.device_id in wanted}

    async def events(self, device_id: int, limit: int = 50) -> list[ProbeEvent]:
        return await self.db.read(lambda conn: queries.list_events(conn, device_id, limit))

    async def alerts(self, *, open_only: bool = True, device_id: int | None = None) -> list[Alert]:
        return await self.db.read(lambda conn: queries.list_alerts(conn, open_only=open_only, device_id=device_id))

    async def unacked_alerts(self) -> int:
        return await self.db.read(queries.count_unacked_alerts)

    async def acknowledge(self, alert_id: int, actor: Actor) -> Alert:
        """Acknowledge an alert (audited); acknowledging twice is refused with a clear error."""
        now = self.clock.now()

        def job(conn: Connection):
            alert = queries.get_alert(conn, alert_id)
            if alert is None:
                raise NotFoundError("No such alert.")
            if not queries.acknowledge_alert(conn, alert_id, now, actor.name):
                raise ValidationError("This alert was already acknowledged.",
                                      details={"alert": f"acknowledged by {alert.acked_by}"})
            self.audit.record(conn, Event.PROBE_ALERT_ACKNOWLEDGE, ts=now, actor=actor,
                         target=f"device:{alert.device_id}", details={"alert": alert_id, "kind": alert.kind})
            return queries.get_alert(conn, alert_id)

        return await self.db.write(job)

    async def series(self, device_id: int, range_name: str) -> Series:
        """Chart columns: 1h from raw samples, 1d from 5-minute roll-ups, 1m from hourly roll-ups."""
        if range_name not in RANGES:
            raise ValidationError("Unknown chart range.", details={"range": "choose 1h, 1d or 1m"})
        since = self.clock.now() - RANGES[range_name]
        width = {"1h": 0, "1d": 300, "1m": 3600}[range_name]
        if width:
            rows = await self.db.read(lambda conn: queries.list_rollups(conn, device_id, width, since))
        else:
            rows = await self.db.read(lambda conn: queries.list_raw(conn, device_id, since))
        cols: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [(), (), (), (), ()]
        return Series(range=range_name, width=width, ts=list(cols[0]), latency_ms=list(cols[1]), cpu=list(cols[2]),
                      memory=list(cols[3]), disk=list(cols[4]))

    # --- retention and roll-ups ----------------------------------------------------------

    async def roll_up_and_expire(self) -> dict[str, int]:
        """Recompute recent roll-ups (idempotent) and drop data past retention."""
        now = self.clock.now()

        def job(conn: Connection):
            done = {}
            for width, window in ((300, 2 * 3600), (3600, 3 * 3600)):
                start = (int(now - window) // width) * width
                done[f"rollup_{width}"] = queries.upsert_rollups(conn, width, start, now + width)
            cfg = self.config
            done["raw_deleted"] = queries.delete_samples_before(conn, now - cfg.raw_retention_hours * 3600)
            done["5m_deleted"] = queries.delete_rollups_before(conn, 300, now - cfg.rollup_5m_retention_days * 86400)
            done["1h_deleted"] = queries.delete_rollups_before(conn, 3600, now - cfg.rollup_1h_retention_days * 86400)
            done["events_deleted"] = queries.delete_events_before(conn, now - cfg.rollup_1h_retention_days * 86400)
            return done

        return await self.db.write(job)

    # --- custom checks -------------------------------------------------------------------

    async def checks(self, device_id: int) -> list[Check]:
        return await self.db.read(lambda conn: queries.list_checks(conn, device_id))

    async def add_check(self, device_id: int, *, name: str, command: str, expect_exit: int | None,
                        expect_regex: str | None, timeout: float, output_cap: int, actor: Actor) -> int:
        errors = {}
        name, command = name.strip(), command.strip()
        if not 1 <= len(name) <= 64:
            errors["name"] = "Give the check a name of 1 to 64 characters."
        if not 1 <= len(command) <= MAX_COMMAND or "\x00" in command:
            errors["command"] = f"Enter a command of 1 to {MAX_COMMAND} characters."
        if expect_regex and (reason := patterns.refusal(expect_regex)):
            errors["expect_regex"] = reason  # RE2 only: linear time, no backreferences or lookaround
        if expect_exit is None and not expect_regex:
            expect_exit = 0
        if not 1 <= timeout <= 300:
            errors["timeout"] = "Timeout must be 1 to 300 seconds."
        if not 1024 <= output_cap <= 1 << 20:
            errors["output_cap"] = "Output cap must be 1 KiB to 1 MiB."
        if errors:
            raise ValidationError("The check is not valid.", details=errors)
        now = self.clock.now()

        def job(conn: Connection):
            if queries.count_checks(conn, device_id) >= MAX_CHECKS:
                raise ValidationError("The check was not added.",
                                      details={"name": f"A device may have at most {MAX_CHECKS} checks."})
            if queries.check_name_taken(conn, device_id, name):
                raise ValidationError("The check was not added.",
                                      details={"name": "This device already has a check with this name."})
            check_id = queries.insert_check(conn, device_id, name, command, expect_exit, expect_regex or None,
                                            timeout, output_cap)
            # the full definition as entered (issue 11 #10): what will run on the device, never its output
            self.audit.record(conn, Event.PROBE_CHECK_CREATE, ts=now, actor=actor, target=f"device:{device_id}",
                         details={"check": name, "command": command, "expect_exit": expect_exit,
                                  "expect_regex": expect_regex or None, "timeout": timeout})
            return check_id

        return await self.db.write(job)

    async def delete_check(self, device_id: int, check_id: int, actor: Actor) -> None:
        now = self.clock.now()

        def job(conn: Connection):
            name = queries.delete_check(conn, device_id, check_id)
            if name is None:
                raise NotFoundError("No such check.")
            self.audit.record(conn, Event.PROBE_CHECK_DELETE, ts=now, actor=actor, target=f"device:{device_id}",
                         details={"check": name})

        await self.db.write(job)

    # --- on demand (PROBE-5) ---------------------------------------------------------------

    async def test_connectivity(self, device_id: int, actor: Actor) -> dict:
        """TCP + SSH login on a fresh connection; audited with the outcome only."""
        target = await self._target(device_id)
        report = await self.runner.test(target)
        outcome: Outcome = "denied" if report.get("refused") else "success" if report["ok"] else "failure"
        await self._audit(actor, Event.PROBE_CONNECTIVITY_TEST, device_id, outcome,
                          {"reason": report.get("refused") or None})
        return report

    async def run_command(self, device_id: int, command: str, actor: Actor) -> dict:
        """Run one command; its output goes back to the caller only, never into the audit.

        Fail closed (issue 11 #9): a "started" record holding the full command line is
        committed before anything is sent to the device, so a crash or kill mid-run still
        leaves it; the end is a second record with the exit status (same command line)."""
        command = command.strip()
        if not 1 <= len(command) <= MAX_COMMAND or "\x00" in command:
            raise ValidationError("The command is not valid.",
                                  details={"command": f"Enter a command of 1 to {MAX_COMMAND} characters."})
        target = await self._target(device_id)
        started = await self._audit(actor, Event.PROBE_COMMAND_START, device_id, "success", {"command": command})
        report = await self.runner.run_command(target, command)
        outcome: Outcome = "denied" if report.get("refused") else "success" if report["ok"] else "failure"
        await self._audit(actor, Event.PROBE_COMMAND_RUN, device_id, outcome,
                          {"command": command, "exit_status": report.get("exit_status"), "started_seq": started,
                           "error": report.get("error") or None})
        return report

    async def _target(self, device_id: int):
        target = await self.devices.get_probe_target(device_id)
        if target is None:
            raise NotFoundError("No such device.")
        return target

    async def _audit(self, actor: Actor, event: Event, device_id: int, outcome: Outcome, details: dict) -> int:
        """One committed audit record (record_alone returns after COMMIT); its seq."""
        return await self.audit.record_alone(event, actor=actor, outcome=outcome, target=f"device:{device_id}",
                                             details=details)
