"""One poll of one device over a reused SSH connection, and on-demand runs.

The runner owns the live connections (one per device). A connection is reused
while it is alive and the device's endpoint, pin and credential are unchanged;
any failure drops it, and the scheduler decides when to try again (backoff).
Host keys: first contact pins the presented key (mode "tofu" or "preset", audited
by DeviceService); a mismatch is recorded and the device is not logged into.
"""

from __future__ import annotations

import asyncio
import time

from appliance.audit.models import Actor
from appliance.clock import Clock
from appliance.probe import metrics, patterns
from appliance.probe.models import CheckOutcome, PollResult, Status
from appliance.ssh import keys
from appliance.ssh.connect import Credential, Endpoint, Policy, Session, open_session, tcp_check
from appliance.ssh.errors import (
    AuthFailedError,
    BindingPendingError,
    CommandError,
    HostKeyMismatchError,
    InvalidKeyError,
    SSHError,
    TargetRefusedError,
    UnreachableError,
)

PENDING = ("The credential binding awaits an admin's approval: reachability only, nothing secret is sent "
           "to this address until an admin approves it.")


def _identity(target) -> tuple:
    """What, if changed, makes a held connection stale (the pin is compared separately)."""
    cred = target.credential
    return (target.address, target.port, target.legacy_algorithms,
            (cred.username, cred.password, cred.private_key, cred.passphrase) if cred else None)


def _status_of(exc: SSHError) -> Status:
    """The device status a failed poll reports."""
    if isinstance(exc, HostKeyMismatchError):
        return "host key changed"
    if isinstance(exc, AuthFailedError):
        return "auth failed"
    if isinstance(exc, UnreachableError):
        return "unreachable"
    return "down"


def _run_status(exc: SSHError) -> str:
    """The status an on-demand test or command reports: a poll's, or "awaiting approval" (never a poll's)."""
    if isinstance(exc, BindingPendingError):
        return "awaiting approval"  # on-demand runs only: polls of such devices never try to log in
    return _status_of(exc)


class Runner:
    def __init__(self, policy: Policy, devices, clock: Clock) -> None:
        self.policy = policy
        self.devices = devices
        self.clock = clock
        self._sessions: dict[int, tuple[tuple, Session]] = {}
        self._previous: dict[int, metrics.Metrics] = {}

    @property
    def open_connections(self) -> int:
        return sum(1 for _, s in self._sessions.values() if s.alive)

    # --- connections ------------------------------------------------------------------

    async def _credential(self, target) -> Credential:
        secret = target.credential
        key = None
        if secret.private_key:
            # encrypted keys cost a KDF run: off the event loop
            key = await asyncio.to_thread(keys.load_private_key, secret.private_key, secret.passphrase)
        return Credential(username=secret.username, password=secret.password, private_key=key)

    async def _open(self, target) -> Session:
        endpoint = Endpoint(address=target.address, port=target.port, host_key=target.host_key,
                            preset_fingerprint=getattr(target, "preset_fingerprint", None),
                            legacy_algorithms=target.legacy_algorithms)
        credential = await self._credential(target)
        try:
            session = await open_session(endpoint, credential, self.policy)
        except HostKeyMismatchError as exc:
            await self.devices.record_host_key_mismatch(target.device_id, exc.presented)
            raise
        except AuthFailedError as exc:
            if target.host_key is None and exc.presented:
                await self._pin(target, exc.presented)  # first contact: the key is pinned even if login fails
            raise
        if target.host_key is None:
            try:
                await self._pin(target, session.host_key)
            except BaseException:
                session.close()
                raise
        return session

    async def _pin(self, target, key_line: str) -> None:
        mode = "preset" if getattr(target, "preset_fingerprint", None) else "tofu"
        await self.devices.pin_host_key(target.device_id, key_line, actor=Actor.system(), mode=mode)

    async def session_for(self, target) -> tuple[Session, bool]:
        """A live connection for this device: (session, reused?)."""
        ident = _identity(target)
        held = self._sessions.get(target.device_id)
        # a first-contact pin of the very key this connection proved keeps it usable
        if held and held[0] == ident and held[1].alive and \
                (target.host_key is None or keys.same_key(target.host_key, held[1].host_key)):
            return held[1], True
        self.drop(target.device_id)
        session = await self._open(target)
        self._sessions[target.device_id] = (ident, session)
        return session, False

    def forget(self, device_id: int) -> None:
        """The device is gone or disabled: close its connection and drop its CPU baseline."""
        self.drop(device_id)
        self._previous.pop(device_id, None)

    def drop(self, device_id: int) -> None:
        held = self._sessions.pop(device_id, None)
        if held:
            held[1].close()

    async def close(self) -> None:
        sessions = [s for _, s in self._sessions.values()]
        self._sessions.clear()
        await asyncio.gather(*(s.wait_closed() for s in sessions), return_exceptions=True)

    # --- polling --------------------------------------------------------------------------

    async def poll(self, target, checks=()) -> PollResult:
        """Poll one device; never raises for anything the device does."""
        now = self.clock.now()
        if target.host_key_status == "mismatch":
            return await self._reachability(target, now, "host key changed",
                                            "Host key changed; waiting for an operator to review and re-pin.")
        if target.credential is None:
            self.drop(target.device_id)  # e.g. a held connection from before the binding went pending
            message = PENDING if target.binding_pending else "No credential set: reachability only."
            return await self._reachability(target, now, None, message)
        try:
            session, reused = await self.session_for(target)
            result = await session.run(metrics.METRICS_COMMAND)
            outcomes = [await self._check(session, c) for c in checks]
        except (SSHError, InvalidKeyError) as exc:
            self.drop(target.device_id)
            return PollResult(device_id=target.device_id, ts=now, status=_status_of(exc), message=exc.message,
                              refused=isinstance(exc, TargetRefusedError))
        except Exception as exc:  # noqa: BLE001 - a device must never kill the scheduler
            self.drop(target.device_id)
            return PollResult(device_id=target.device_id, ts=now, status="down",
                              message=f"Unexpected failure ({type(exc).__name__}).")
        latency = session.tcp_ms if not reused else result.seconds * 1000
        return self._result(target.device_id, now, result, latency, outcomes)

    def _result(self, device_id: int, now: float, result, latency: float, outcomes) -> PollResult:
        parsed = metrics.parse(result.output)
        cpu = metrics.cpu_percent(self._previous.get(device_id), parsed)
        if parsed.cpu_total is not None:
            self._previous[device_id] = parsed
        problems = list(parsed.problems)
        if len(problems) == len(metrics.PARSERS) and not result.truncated:
            problems = ["logged in; no Linux metrics (not a Linux shell?)"]
            outcomes_failed = any(not o.ok for o in outcomes)
            return PollResult(device_id=device_id, ts=now, status="degraded" if outcomes_failed else "up",
                              message=problems[0], latency_ms=round(latency, 2), checks=outcomes)
        if result.truncated:
            problems.append("output truncated at the output cap")
        degraded = len(problems) > 0 or any(not o.ok for o in outcomes)
        message = "; ".join(problems) or ("custom check failed" if degraded else "")
        return PollResult(device_id=device_id, ts=now, status="degraded" if degraded else "up", message=message,
                          latency_ms=round(latency, 2), cpu=None if cpu is None else round(cpu, 1),
                          memory=_round(parsed.memory_percent), swap=_round(parsed.swap_percent),
                          disk=_round(parsed.disk_percent), load1=parsed.load1, uptime=parsed.uptime_seconds,
                          disks=[{"mount": d.mount, "percent": d.percent, "total_kb": d.total_kb}
                                 for d in parsed.disks],
                          checks=outcomes)

    async def _reachability(self, target, now: float, status: Status | None, message: str) -> PollResult:
        try:
            ms = await tcp_check(target.address, target.port, self.policy)
        except UnreachableError as exc:
            return PollResult(device_id=target.device_id, ts=now, status=status or "unreachable", message=exc.message,
                              refused=isinstance(exc, TargetRefusedError))
        return PollResult(device_id=target.device_id, ts=now, status=status or "up", message=message,
                          latency_ms=round(ms, 2))

    async def _check(self, session: Session, check) -> CheckOutcome:
        try:
            result = await session.run(check.command, timeout=check.timeout, cap=check.output_cap)
        except CommandError as exc:
            if not session.alive:
                raise
            return CheckOutcome(check_id=check.id, ok=False, message=f"{check.name}: {exc.message}")
        text = result.output.decode("utf-8", "replace")
        if check.expect_exit is not None and result.exit_status != check.expect_exit:
            return CheckOutcome(check_id=check.id, ok=False,
                                message=f"{check.name}: exit {result.exit_status}, expected {check.expect_exit}")
        if check.expect_regex:
            try:
                matched = await patterns.search(check.expect_regex, text)  # RE2, off the event loop
            except patterns.PatternError as exc:  # a pattern stored before RE2: say so, never fall back to re
                return CheckOutcome(check_id=check.id, ok=False, message=f"{check.name}: pattern refused: {exc}")
            if not matched:
                return CheckOutcome(check_id=check.id, ok=False, message=f"{check.name}: output did not match")
        return CheckOutcome(check_id=check.id, ok=True, message=f"{check.name}: ok")

    # --- on demand ----------------------------------------------------------------------------

    async def _fresh(self, target) -> Session:
        if target.host_key_status == "mismatch":
            raise HostKeyMismatchError(target.host_key or "")
        if target.binding_pending:
            raise BindingPendingError(PENDING)
        if target.credential is None:
            raise AuthFailedError("No credential is set for this device.")
        return await self._open(target)

    async def test(self, target) -> dict:
        """Connectivity test on a new connection (not the poller's): each step and its result."""
        steps: list[tuple[str, bool, str]] = []
        report: dict[str, object] = {"ok": False, "steps": steps}
        try:
            ms = await tcp_check(target.address, target.port, self.policy)
            steps.append(("TCP connect", True, f"{ms:.1f} ms"))
            started = time.monotonic()
            session = await self._fresh(target)
            steps.append(("SSH login", True, f"{(time.monotonic() - started) * 1000:.0f} ms, host key "
                                    f"{keys.fingerprint(session.host_key)}"))
            result = await session.run("echo outpost-ok", timeout=self.policy.command_timeout)
            await session.wait_closed()
            ok = b"outpost-ok" in result.output
            steps.append(("Run a command", ok, "ok" if ok else "unexpected output"))
            report["ok"] = ok
        except (SSHError, InvalidKeyError) as exc:
            steps.append((_run_status(exc), False, exc.message))
            if isinstance(exc, TargetRefusedError):
                report["refused"] = exc.message
        return report

    async def run_command(self, target, command: str) -> dict:
        """Run one command on a new connection; output (capped) returned, never stored."""
        try:
            session = await self._fresh(target)
            try:
                result = await session.run(command)
            finally:
                await session.wait_closed()
        except (SSHError, InvalidKeyError) as exc:
            return {"ok": False, "error": exc.message, "status": _run_status(exc), "output": "", "exit_status": None,
                    "truncated": False, "refused": exc.message if isinstance(exc, TargetRefusedError) else ""}
        return {"ok": result.exit_status == 0, "error": "", "output": result.output.decode("utf-8", "replace"),
                "exit_status": result.exit_status, "truncated": result.truncated,
                "seconds": round(result.seconds, 3)}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)
