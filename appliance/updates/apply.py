"""Apply, status and rollback (UPD-3), driven by the CLI or the UI; the launcher restarts.

Steps, each printed and audited: stage -> verify -> install (inactive slot) -> snapshot
(database) -> switch (atomic symlink) -> restart (SIGHUP to the launcher) -> health
(the launcher's gate; on failure it switches back and restores the snapshot itself).

Invariants (what must never happen):
- Killed at any step, the install root has no `current`-less or half-written state: until
  `switch`, `current` still names the old complete slot; from `switch` on it names the
  new complete slot and state.json says a health gate is owed (the launcher runs it on
  its next start).
- A refused bundle leaves anything behind: staging is emptied, no slot is touched.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from appliance import __version__
from appliance.audit.events import Event
from appliance.audit.models import Outcome
from appliance.errors import OutpostError
from appliance.updates import slots, staging, verify
from appliance.updates.roots import TrustStore

AuditFn = Callable[[Event, Outcome, dict], None]   # (event, outcome, details)


class UpdateError(OutpostError):
    code = "update_failed"


class Status(msgspec.Struct, frozen=True, kw_only=True):
    installed: str
    installed_slot: str
    previous: str
    pending: str
    phase: str
    last_result: str
    last_reason: str


class Updater:
    def __init__(self, *, install_root: Path, staging_dir: Path, trust: TrustStore, max_bundle_bytes: int,
                 health_timeout: float, audit: AuditFn, clock: Callable[[], float] = time.time,
                 say: Callable[[str], None] = lambda s: None) -> None:
        self.layout = slots.Layout(install_root)
        self.staging_dir = Path(staging_dir)
        self.trust = trust
        self.max_bundle_bytes = max_bundle_bytes
        self.health_timeout = health_timeout
        self.audit = audit
        self.clock = clock
        self.say = say

    # --- versions -------------------------------------------------------------------------
    def version_of(self, slot: str | None) -> str:
        if not slot:
            return ""
        try:
            return verify.read_release(self.layout.slot_dir(slot) / slots.RELEASE, self.trust).version
        except (OSError, OutpostError):
            return ""

    def installed_version(self) -> str:
        return self.version_of(self.layout.current()) or __version__

    def status(self) -> Status:
        st = self.layout.state()
        return Status(installed=self.installed_version(), installed_slot=self.layout.current() or "",
                      previous=self.version_of(self.layout.previous()),
                      pending=st.version if st.phase != "idle" else "", phase=st.phase,
                      last_result=st.result, last_reason=st.reason)

    # --- verify ---------------------------------------------------------------------------
    def _step(self, name: str) -> None:
        self.say(f"step: {name}")

    def stage_and_verify(self, source: Path) -> tuple[staging.Staged, verify.Verified]:
        """Copy to staging, verify the copy; on refusal staging is emptied and the reason audited."""
        try:
            self._step("stage")
            staged = staging.stage(Path(source), self.staging_dir, max_bytes=self.max_bundle_bytes)
            self._step("verify")
            verified = verify.verify_file(staged.path, self.trust, installed_version=self.installed_version(),
                                          now=self.clock())
        except OutpostError as exc:
            staging.clean(self.staging_dir)
            self.audit(Event.UPDATE_VERIFY, "failure", {"file": Path(source).name, "reason": exc.message[:300]})
            raise
        self.audit(Event.UPDATE_VERIFY, "success", {"file": Path(source).name, "version": verified.manifest.version,
                                                "sha256": staged.sha256})
        return staged, verified

    def verify_only(self, source: Path) -> verify.Verified:
        _, verified = self.stage_and_verify(source)
        staging.clean(self.staging_dir)
        return verified

    # --- apply ----------------------------------------------------------------------------
    def apply(self, source: Path, snapshot: Callable[[Path], None], wait: bool = True) -> Status:
        st = self.layout.state()
        if st.phase == "installing":  # an apply died before its switch: `current` is untouched
            self.layout.save(slots.State(result="interrupted", reason=f"installing {st.version} was interrupted"))
            st = self.layout.state()
        if st.phase != "idle":
            raise UpdateError(f"an update to {st.version} is in progress ({st.phase}); wait or run 'update rollback'")
        staged, verified = self.stage_and_verify(source)
        version = verified.manifest.version
        old = self.layout.current() or ""
        target = self.layout.inactive()
        try:
            self._step("install")
            self.layout.cleanup_temporaries()
            self.layout.save(slots.State(phase="installing", version=version, target=target, from_slot=old))
            entries: list[tuple[str, bytes | None, bool, int, int]] = []
            offset = verified.payload_offset
            for f in verified.manifest.files:
                entries.append((f.path, None, f.executable, offset, f.size))
                offset += f.size
            self.layout.install(target, entries, staged.path, verified.header)
            self.audit(Event.UPDATE_INSTALL, "success", {"version": version, "slot": target})
            self._step("snapshot")
            snap = self.staging_dir.parent / f"snapshot-before-{version}.db"
            snapshot(snap)
            self.audit(Event.UPDATE_SNAPSHOT, "success", {"version": version, "file": snap.name})
        except OSError as exc:  # disk full, permissions: a plain error, nothing switched
            self.layout.save(slots.State(result="failed", reason=f"installing {version} failed; nothing was switched"))
            self.audit(Event.UPDATE_INSTALL, "failure",
                       {"version": version, "reason": exc.strerror or type(exc).__name__})
            raise UpdateError(f"installing {version} failed ({exc.strerror or exc}); "
                              "the installed version is unchanged") from None
        except BaseException:
            self.layout.save(slots.State(result="failed", reason=f"installing {version} failed; nothing was switched"))
            raise
        finally:
            staging.clean(self.staging_dir)
        self._step("switch")
        self.layout.save(slots.State(phase="switched", version=version, target=target, from_slot=old,
                                     snapshot=str(snap)))
        self.layout.switch(target)
        self.audit(Event.UPDATE_SWITCH, "success", {"version": version, "from": old, "to": target})
        self._step("restart")
        if not self.signal_launcher():
            self.say("no launcher is running: restart the service to start the new version (the health gate runs then)")
            return self.status()
        if wait:
            self._step("health")
            return self.wait_idle()
        return self.status()

    def signal_launcher(self) -> bool:
        try:
            pid = int(self.layout.pid_file.read_text().strip())
            os.kill(pid, signal.SIGHUP)
            return True
        except (OSError, ValueError):
            return False

    def wait_idle(self) -> Status:
        deadline = time.monotonic() + self.health_timeout + 60
        while time.monotonic() < deadline:
            if self.layout.state().phase == "idle":
                return self.status()
            time.sleep(0.2)
        raise UpdateError("the launcher did not report the health gate result in time; see 'update status'")

    # --- rollback -------------------------------------------------------------------------
    def request_rollback(self) -> Status:
        """Back to the previous slot (and the database snapshot taken before the update)."""
        prev = self.layout.previous()
        if not prev or not (self.layout.slot_dir(prev) / slots.PROGRAM).exists():
            raise UpdateError("there is no previous version to roll back to")
        st = self.layout.state()
        snap = st.snapshot if st.snapshot and Path(st.snapshot).exists() else ""
        self.layout.save(slots.State(phase="rolling_back", version=self.version_of(prev), target=prev,
                                     from_slot=self.layout.current() or "", snapshot=snap,
                                     reason="requested by an admin"))
        self.audit(Event.UPDATE_ROLLBACK, "success", {"to": prev, "version": self.version_of(prev), "requested": True})
        return self.status()
