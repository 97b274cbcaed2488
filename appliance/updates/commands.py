"""`outpost update verify|apply|status|rollback` and `outpost run-slot` (wired by cli.py).

The CLI hands in its config, how to open the database and its audit actor (cli_context.py),
so this module stays inside the updates capability. Audit records are written by opening
the database for each record: the launcher may restore a snapshot over the file while
an `update apply` waits, and a long-open connection would write into the replaced file.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.audit.events import Event
from appliance.audit.models import Actor, Outcome
from appliance.config import Config
from appliance.errors import OutpostError
from appliance.updates import launcher, roots
from appliance.updates.apply import AuditFn
from appliance.updates.service import make_updater

if TYPE_CHECKING:
    from appliance.store.connection import Database

EXIT_ERROR = 1
LAUNCHER = Actor(type="system", name="launcher", source="local")  # run-slot's records: the launcher acts alone


def add_parsers(sub, common: Callable[[argparse.ArgumentParser], None]) -> None:
    upd = sub.add_parser("update", help="verify, apply or roll back a signed update bundle (USB)",
                         description="Signed updates (UPD-1..3). The bundle is copied to staging, verified there, "
                                     "installed into the inactive slot, switched to atomically and health-gated.")
    usub = upd.add_subparsers(dest="update_command", required=True, metavar="ACTION")
    p = usub.add_parser("verify", help="copy FILE to staging and verify it; change nothing",
                        description="Copy FILE to staging, verify signatures, versions, sizes and hashes; print the "
                                    "result and remove the staged copy. Exit 1 with the reason if refused.")
    common(p)
    p.add_argument("file", type=Path, metavar="FILE")
    p = usub.add_parser("apply", help="verify FILE, install it into the inactive slot and switch to it",
                        description="Stage and verify FILE, install it into the inactive slot, snapshot the database, "
                                    "switch atomically and ask the launcher to restart; the launcher's health gate "
                                    "rolls back automatically if the new version does not come up.")
    common(p)
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the health gate result")
    p = usub.add_parser("status", help="installed, previous and pending versions", description="Show update state.")
    common(p)
    p = usub.add_parser("rollback", help="return to the previous slot and its database snapshot",
                        description="Switch back to the previous slot and restore the database snapshot taken "
                                    "before the update (done by the launcher, or here if none runs).")
    common(p)
    p = sub.add_parser("run-slot", help="run the current slot under the update launcher (health gate, rollback)",
                       description="Start <install_root>/current/outpost serve with the same options, restart it on "
                                   "SIGHUP (sent by update apply) and run the health gate after a switch.")
    common(p)
    p.add_argument("--listen", metavar="HOST:PORT", help="passed on to serve")


def _auditor(open_db: Callable[[], Database], actor: Actor) -> AuditFn:
    """Records each step through a connection opened for that record (see the module docstring)."""
    from appliance.audit.service import AuditService
    from appliance.clock import SystemClock

    def record(event: Event, outcome: Outcome, details: dict) -> None:
        db = open_db()
        try:
            AuditService(db, SystemClock()).record_alone_sync(event, actor=actor, outcome=outcome, details=details)
        finally:
            db.close()
    return record


def _print_status(st) -> None:
    print(f"installed: {st.installed} (slot {st.installed_slot or '-'})")
    print(f"previous:  {st.previous or '-'}")
    print(f"pending:   {st.pending or '-'}{' (' + st.phase + ')' if st.pending else ''}")
    if st.last_result:
        print(f"last:      {st.last_result}{': ' + st.last_reason if st.last_reason else ''}")


def run(args: argparse.Namespace, cfg: Config, open_db: Callable[[], Database], actor: Actor) -> int:
    """`open_db()`: a new connection to the existing database; `actor`: the CLI's (cli:<real uid's name>)."""
    say = lambda s: print(s, flush=True)  # noqa: E731 (steps are printed as they start)
    if args.command == "run-slot":
        return _run_slot(args, cfg, open_db, say)
    data_dir = Path(cfg.store.data_dir).absolute()
    updater = make_updater(cfg.updates, data_dir, roots.builtin(), _auditor(open_db, actor), say=say)
    if args.update_command == "status":
        _print_status(updater.status())
        return 0
    if args.update_command == "verify":
        v = updater.verify_only(args.file)
        print(f"ok: {args.file} is outpost {v.manifest.version}, signed by {', '.join(v.manifest.key_ids)}; "
              f"it upgrades from {v.manifest.min_version} or later")
        return 0
    if args.update_command == "rollback":
        st = updater.request_rollback()
        if not updater.signal_launcher():
            launcher.finish_rollback(updater.layout, data_dir, updater.audit)
        else:
            updater.wait_idle()
        _print_status(updater.status())
        return 0
    data_db = lambda dest: _snapshot(open_db(), dest)  # noqa: E731
    st = updater.apply(args.file, data_db, wait=not args.no_wait)
    _print_status(st)
    if st.last_result == "rolled back":
        updater.audit(Event.UPDATE_HEALTH, "failure", {"version": st.pending or "", "reason": st.last_reason[:200]})
        print(f"outpost: error: the update was rolled back: {st.last_reason}", file=sys.stderr)
        return EXIT_ERROR
    if st.last_result.startswith("installed"):
        # OutpostError: the new version may have migrated past this program's schema; its gate result is in state.json
        with contextlib.suppress(OutpostError):
            updater.audit(Event.UPDATE_HEALTH, "success", {"version": st.installed})
    return 0


def _snapshot(db: Database, dest: Path) -> None:
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        db.snapshot(dest)
    finally:
        db.close()


def _run_slot(args: argparse.Namespace, cfg: Config, open_db: Callable[[], Database],
              say: Callable[[str], None]) -> int:
    serve_args = ["--data-dir", str(Path(cfg.store.data_dir).absolute())]
    if args.config:
        serve_args += ["--config", str(Path(args.config).absolute())]
    host, port = cfg.web.listen_host, cfg.web.listen_port
    if args.listen:
        serve_args += ["--listen", args.listen]
        host, _, port_text = args.listen.rpartition(":")
        host, port = host.strip("[]"), int(port_text)
    if args.allow_root:
        serve_args.append("--allow-root")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"

    def audit(action, outcome, details):
        try:
            _auditor(open_db, LAUNCHER)(action, outcome, details)
        except OutpostError as exc:
            say(f"audit record {action.action} not written: {exc.message}")

    from appliance.updates import slots
    return launcher.Launcher(slots.Layout(Path(cfg.updates.install_root)), data_dir=Path(cfg.store.data_dir).absolute(),
                             serve_args=serve_args, host=host, port=port,
                             health_timeout=cfg.updates.health_timeout_seconds, audit=audit, say=say).run()
