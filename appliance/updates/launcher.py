"""`outpost run-slot`: start the current slot, run the health gate after a switch, roll back.

In production systemd supervises this process (ExecStart=<root>/current/outpost run-slot
...); it restarts the appliance from `current` on SIGHUP (sent by `update apply` after
the switch) and on a crash. After a switch it gives the new version [updates]
health_timeout_seconds to answer /healthz; if it does not, it stops it, switches back,
restores the database snapshot and starts the old version.

Invariants (what must never happen):
- The snapshot is restored while a server has the database open: the child is stopped
  (and waited for) first.
- A stale write-ahead log is applied to the restored file: -wal and -shm are removed
  before the snapshot is renamed into place; state stays `rolling_back` until done, so a
  crash in between is finished on the next start.
- A crash-looping child is restarted forever: at most MAX_QUICK_FAILURES in a row.
"""

from __future__ import annotations

import http.client
import os
import signal
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from appliance.audit.events import Event
from appliance.audit.models import Outcome
from appliance.paths import DataDir
from appliance.store.atomic import copy_atomic, fsync_dir
from appliance.updates import slots

MAX_QUICK_FAILURES = 5


def restore_snapshot(snapshot: Path, data_dir: Path) -> None:
    layout = DataDir(data_dir)
    for sidecar in layout.db_sidecars:
        sidecar.unlink(missing_ok=True)
    fsync_dir(data_dir)
    copy_atomic(snapshot, layout.db)


def finish_rollback(layout: slots.Layout, data_dir: Path, audit: Callable[[Event, Outcome, dict], None] | None) -> None:
    """Complete a rollback recorded in state.json (idempotent; the server must be stopped)."""
    st = layout.state()
    if st.phase != "rolling_back":
        return
    if st.target and layout.current() != st.target:
        layout.switch(st.target)
    if st.snapshot and Path(st.snapshot).exists():
        restore_snapshot(Path(st.snapshot), data_dir)
    layout.save(slots.State(result="rolled back", reason=st.reason))
    if audit:
        audit(Event.UPDATE_ROLLBACK_DONE, "success",
              {"to": st.target, "reason": st.reason[:200], "snapshot_restored": bool(st.snapshot)})


def healthy(host: str, port: int, ca_file: Path, deadline: float, child: subprocess.Popen) -> bool:
    """Poll https://host:port/healthz (verified against the local CA) until 200 or the deadline."""
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return False
        try:
            ctx = ssl.create_default_context(cafile=str(ca_file))
            conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=2)
            try:
                conn.request("GET", "/healthz", headers={"Host": "localhost"})
                if conn.getresponse().status == 200:
                    return True
            finally:
                conn.close()
        except (OSError, ssl.SSLError, http.client.HTTPException):
            pass
        time.sleep(0.2)
    return False


def _stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=5)


class Launcher:
    def __init__(self, layout: slots.Layout, *, data_dir: Path, serve_args: list[str], host: str, port: int,
                 health_timeout: float, audit: Callable[[Event, Outcome, dict], None],
                 say: Callable[[str], None] = lambda s: None) -> None:
        self.layout, self.data_dir, self.serve_args = layout, Path(data_dir), serve_args
        self.host, self.port, self.health_timeout = host, port, health_timeout
        self.audit, self.say = audit, say
        self.restart = self.stop = False

    def _on_signal(self, signum, _frame) -> None:
        if signum == signal.SIGHUP:
            self.restart = True
        else:
            self.stop = True

    def run(self) -> int:
        signal.signal(signal.SIGHUP, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.layout.pid_file.write_text(str(os.getpid()))
        failures = 0
        try:
            while not self.stop:
                finish_rollback(self.layout, self.data_dir, self.audit)
                program = self.layout.program()
                if program is None or not program.exists():
                    self.say("no installed slot to start")
                    return 1
                st = self.layout.state()
                started = time.monotonic()
                child = subprocess.Popen([str(program), "serve", *self.serve_args])
                self.say(f"started {program} (pid {child.pid})")
                if st.phase == "switched" and not self._gate(child, st):
                    continue
                self.restart = False
                while not (self.restart or self.stop) and child.poll() is None:
                    time.sleep(0.1)
                _stop(child)
                if not (self.restart or self.stop):
                    failures = failures + 1 if time.monotonic() - started < 30 else 1
                    if failures >= MAX_QUICK_FAILURES:
                        self.say("the appliance keeps exiting; giving up")
                        return 1
                    time.sleep(1)
        finally:
            self.layout.pid_file.unlink(missing_ok=True)
        return 0

    def _gate(self, child: subprocess.Popen, st: slots.State) -> bool:
        deadline = time.monotonic() + self.health_timeout
        ok = healthy(self.host, self.port, DataDir(self.data_dir).tls_ca_pem, deadline, child)
        if ok:
            self.layout.save(slots.State(result=f"installed {st.version}", snapshot=st.snapshot,
                                         from_slot=st.from_slot))
            self.say(f"health gate passed: {st.version}")
            return True
        exited = child.poll()
        _stop(child)
        reason = (f"version {st.version} exited with status {exited} before answering /healthz" if exited is not None
                  else f"version {st.version} did not answer /healthz within {self.health_timeout:.0f} s")
        self.say(f"health gate failed: {reason}; rolling back")
        if st.from_slot:
            self.layout.save(slots.State(phase="rolling_back", version=st.version, target=st.from_slot,
                                         from_slot=st.target, snapshot=st.snapshot, reason=reason))
        else:
            self.layout.save(slots.State(result="failed", reason=reason + "; there was no previous slot"))
        return False
