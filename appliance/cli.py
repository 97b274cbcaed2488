"""The `outpost` command line (PLAT-5). Errors go to stderr with a non-zero exit code.

Every subcommand that opens the data directory refuses to run as root unless
--allow-root is given (PLAT-3): files created by root would lock the service
user out of its own data. Such subcommands get one `CliContext` (cli_context.py),
built from the parsed arguments: config, data directory paths, the store, the
audit actor and the services, the same ones the server uses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path

import uvloop

from appliance import __version__, cli_admin, logs
from appliance import config as config_mod
from appliance.audit.events import Event
from appliance.cli_context import CliContext
from appliance.errors import OutpostError
from appliance.updates import commands as update_commands

log = logging.getLogger("outpost")
EXIT_ERROR = 1
MAINTENANCE_SECONDS = 300.0
TLS_WATCH_SECONDS = 2.0  # a CLI certificate change reaches new handshakes within this


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="TOML configuration file (see config.example.toml); default: built-in defaults")
    p.add_argument("--data-dir", metavar="DIR",
                   help="data directory (overrides [store] data_dir; default /var/lib/outpost)")
    p.add_argument("--allow-root", action="store_true", help="run even as root (development only; PLAT-3)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="outpost", description="Outpost: air-gapped operations appliance.")
    top.add_argument("--version", action="version", version=f"outpost {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the appliance (HTTPS UI and API)",
                       description="Run the appliance: HTTPS on [web] listen_host:listen_port (default 0.0.0.0:8443).")
    _common(p)
    p.add_argument("--listen", metavar="HOST:PORT", help="override [web] listen_host and listen_port")
    p.add_argument("--demo-data", action="store_true",
                   help="also start a few simulated SSH devices on loopback and add them to the inventory (demo only)")

    p = sub.add_parser("init", help="create the data directory, key, database and certificate, then exit",
                       description="Prepare a data directory without serving: key, encrypted database, local CA "
                                   "and setup code.")
    _common(p)

    p = sub.add_parser("check-config", help="validate a configuration file without starting",
                       description="Validate FILE; print the first problem with its key path and exit 1, "
                                   "or print 'ok'.")
    p.add_argument("file", type=Path, metavar="FILE")

    _audit_parsers(sub)
    _allowlist_parsers(sub)
    p = sub.add_parser("reset-admin", help="recover admin access: new temporary password, unlock, 2FA cleared (AUTH-5)",
                       description="Local recovery when no admin can sign in. Needs the data directory and its key "
                                   "file. Gives the admin (or --username) a new temporary password, printed once on "
                                   "this terminal and changed at first sign-in; unlocks and enables the account, "
                                   "removes its 2FA and ends its sessions and API keys. Creates the admin if none "
                                   "exists. Audited as system, cli:<your user name>.")
    _common(p)
    p.add_argument("--username", metavar="NAME", help="the account to recover (default: the first active admin, "
                                                      "else the first admin, else a new account named admin)")
    sub.add_parser("version", help="print the version", description="Print the version and exit.")
    update_commands.add_parsers(sub, _common)
    cli_admin.add_parsers(sub, _common)  # cert, backup, restore, rekey
    return top


def _audit_parsers(sub: argparse._SubParsersAction) -> None:
    audit = sub.add_parser("audit", help="verify or export the audit log", description="Audit log tools.")
    asub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    p = asub.add_parser("verify", help="check the hash chain; name the first broken record",
                        description="Recompute the audit hash chain. Exit 0 if intact, 1 naming the first broken "
                                    "record.")
    _common(p)
    p = asub.add_parser("export", help="export audit records as CSV or JSON lines",
                        description="Write audit records (oldest first) as CSV or JSON lines. The export is itself "
                                    "audited.")
    _common(p)
    p.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    p.add_argument("--output", "-o", metavar="FILE", default="-", help="output file (default: standard output)")
    for name in ("since", "until"):
        p.add_argument(f"--{name}", metavar="TIME", help="ISO time, UTC unless an offset is given")
    for name in ("actor", "action", "outcome", "target"):
        p.add_argument(f"--{name}", default="", help=f"filter on {name}")


def _allowlist_parsers(sub: argparse._SubParsersAction) -> None:
    allow = sub.add_parser("allowlist", help="show or clear the IP allow list (ACL-3)",
                           description="The IP allow list limits which addresses reach the appliance. Run locally "
                                       "if a list locks everyone out; a running server picks the change up within "
                                       "seconds.")
    lsub = allow.add_subparsers(dest="allowlist_command", required=True, metavar="ACTION")
    p = lsub.add_parser("show", help="print the allowed networks, one per line (empty list: every address)",
                        description="Print the allowed networks, one per line; says so when the list is empty.")
    _common(p)
    p = lsub.add_parser("reset", help="clear the list so every address is allowed again (audited)",
                        description="Clear the IP allow list (audited as system, cli:<your user name>). Every address "
                                    "may connect again.")
    _common(p)


def _banner(services, code: str | None) -> None:
    info = services.tls.info()
    lines = ["", f"Outpost {__version__}", f"  data directory:            {services.data_dir}",
             f"  local CA (SHA-256):        {info.ca_fingerprint}",
             f"  server cert (SHA-256):     {info.leaf_fingerprint}",
             f"  CA certificate file:       {services.tls.ca_pem_path}"]
    if code:
        shown = code if sys.stderr.isatty() else f"(not shown on a non-terminal; read {services.setup_code_file})"
        lines += [f"  ONE-TIME SETUP CODE:       {shown}",
                  f"  valid {services.config.auth.setup_code_hours} h, single use; "
                  f"also in {services.setup_code_file} (0600)"]
    print("\n".join(lines) + "\n", file=sys.stderr, flush=True)
    log.info("tls certificate",
             extra={"ca_fingerprint": info.ca_fingerprint, "leaf_fingerprint": info.leaf_fingerprint})


def cmd_init(ctx: CliContext) -> int:
    logs.configure(ctx.config.log.level)
    services = ctx.build_services()
    try:
        _banner(services, services.auth.setup.ensure_setup_code(services.setup_code_file))
    finally:
        services.close()
    return 0


async def _maintenance(services) -> None:
    """Periodic housekeeping: expired sessions, audit retention, certificate renewal."""
    while True:
        await asyncio.sleep(MAINTENANCE_SECONDS)
        try:
            await services.auth.sessions.purge_expired_sessions()
            await services.purge_audit()
            await asyncio.to_thread(services.tls.renew_if_due)  # audits a renewal itself
        except OutpostError as exc:
            log.error("maintenance failed", extra={"error": exc.code})


async def _watch_tls(services) -> None:
    """Pick up a certificate change made by `outpost cert ...` in another process within
    seconds: a few stat calls per tick on the loop, a reload (in a thread) only on change."""
    failed: tuple | None = None
    while True:
        await asyncio.sleep(TLS_WATCH_SECONDS)
        if not services.tls.changed_on_disk() or services.tls.files_signature() == failed:
            continue
        try:
            await asyncio.to_thread(services.tls.reload_if_changed)  # audits what it generates itself
            failed = None
        except OutpostError as exc:
            failed = services.tls.files_signature()  # logged once per change, the old chain keeps serving
            log.error("certificate files changed but cannot be loaded",
                      extra={"error": exc.code, "reason": exc.message})


async def _serve(services, host: str, port: int, demo_data: bool = False) -> None:
    from appliance.web import create_asgi
    from appliance.web.connlimits import Limits
    from appliance.web.server import serve

    app = create_asgi(services)
    housekeeping = asyncio.create_task(_maintenance(services))
    tls_watch = asyncio.create_task(_watch_tls(services))
    backups = asyncio.create_task(services.backups.scheduler())  # returns at once unless [backup] directory is set
    fleet = None
    if demo_data:
        from appliance.demo.seed import start_demo

        fleet = await start_demo(services)
    services.probe_scheduler.start()  # the SSH probe runs only while serving
    try:
        web = services.config.web
        await serve(app, host=host, port=port, ssl_context=services.tls.ssl_context(),
                    on_started=lambda: log.info("listening", extra={"url": f"https://{host}:{port}"}),
                    limits=Limits.from_config(web), allow=services.allowlist.allows,
                    trusted_proxies=web.trusted_proxies)
    finally:
        housekeeping.cancel()
        backups.cancel()
        tls_watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await housekeeping
        with contextlib.suppress(asyncio.CancelledError):
            await tls_watch
        with contextlib.suppress(asyncio.CancelledError):
            await backups
        await services.probe_scheduler.stop()
        if fleet is not None:
            await fleet.close()


def cmd_serve(ctx: CliContext) -> int:
    from appliance.web.connlimits import raise_nofile_limit

    args, cfg = ctx.args, ctx.config
    logs.configure(cfg.log.level)
    # Connections are files: systemd's soft default (1024) is far below what [web] max_connections allows.
    soft, hard = raise_nofile_limit()
    log.info("open file limit", extra={"soft": soft, "hard": hard})
    host, port = cfg.web.listen_host, cfg.web.listen_port
    if args.listen:
        host, _, port_text = args.listen.rpartition(":")
        if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise OutpostError(f"--listen wants HOST:PORT, got {args.listen!r}")
        host, port = host.strip("[]"), int(port_text)
    services = ctx.build_services()
    try:
        _banner(services, services.auth.setup.ensure_setup_code(services.setup_code_file))
        services.record_system_events([Event.SYSTEM_START], {"version": __version__})
        uvloop.run(_serve(services, host, port, demo_data=args.demo_data))  # the fast loop, asserted by web.server
        services.record_system_events([Event.SYSTEM_STOP])
    finally:
        services.close()
    return 0


def cmd_check_config(args) -> int:
    config_mod.load(args.file)
    print("ok")
    return 0


def cmd_audit_verify(ctx: CliContext) -> int:
    from appliance.audit import log as audit

    db = ctx.store()
    try:
        report = db.read_sync(audit.verify_chain)
        # The outcome goes into the log it describes; the next verification covers this record too.
        recorder, who = ctx.audit(), ctx.actor
        if report.ok:
            recorder.record_alone_sync(Event.AUDIT_VERIFY, actor=who, details={"checked": report.checked})
        else:
            recorder.record_refusal_sync(Event.AUDIT_VERIFY, actor=who, outcome="failure",
                                         details={"checked": report.checked, "first_bad": report.first_bad,
                                                  "reason": report.reason[:200]})
    finally:
        db.close()
    if report.ok:
        print(f"ok: {report.checked} records verified")
        return 0
    print(f"audit chain broken at record {report.first_bad}: {report.reason} "
          f"({report.checked} records verified before it)", file=sys.stderr)
    return EXIT_ERROR


def cmd_audit_export(ctx: CliContext) -> int:
    from appliance.audit import filters

    args = ctx.args
    flt, raw, errors = filters.parse(vars(args))
    if errors:
        raise OutpostError("; ".join(f"--{k}: {v}" for k, v in errors.items()))
    db = ctx.store()
    # A file output is a new 0600 file put in place when complete (finding 16).
    output = (cli_admin.open_private_output(Path(args.output)) if args.output != "-"
              else contextlib.nullcontext(sys.stdout.buffer))
    try:
        with output as out:
            export = ctx.audit().export_sync(ctx.actor, flt, args.format, via="cli", shown=raw)
            for chunk in export.chunks():
                out.write(chunk)
    except OSError as exc:
        raise OutpostError(f"cannot write {args.output}: {exc.strerror}") from None
    finally:
        db.close()
    return 0


def cmd_update(ctx: CliContext) -> int:
    """update verify|apply|status|rollback and run-slot (appliance/updates/commands.py): the
    database is opened per audit record (ctx.connect), never held across a snapshot restore."""
    return update_commands.run(ctx.args, ctx.config, ctx.connect, ctx.actor)


def cmd_allowlist(ctx: CliContext) -> int:
    """allowlist show|reset: read or clear the IP allow list in the local database."""
    from appliance.access import allowlist

    if ctx.args.allowlist_command == "show":
        networks = allowlist.show(ctx.store())
        print("\n".join(networks) if networks else "(empty: every address is allowed)")
        return 0
    before = allowlist.reset(ctx.store(), ctx.actor, ctx.clock.now())
    print(f"IP allow list cleared ({len(before)} entries removed); every address may connect again.")
    return 0


def cmd_reset_admin(ctx: CliContext) -> int:
    """reset-admin: local recovery of admin access (AUTH-5); the password goes to this terminal only."""
    username, password = ctx.auth().accounts.reset_admin_sync(ctx.actor, ctx.args.username)
    print(f"Admin account: {username}\nTemporary password (shown once; change it at first sign-in): {password}\n"
          "The account is unlocked and enabled; its two-factor sign-in, sessions and API keys were removed.")
    return 0


def cmd_version(_args: argparse.Namespace) -> int:
    print(f"outpost {__version__}")
    return 0


# Commands that need no data directory take the parsed arguments; the others a CliContext.
_WITHOUT_CONTEXT = {"check-config": cmd_check_config, "version": cmd_version}
_WITH_CONTEXT = {
    "serve": cmd_serve, "init": cmd_init, "update": cmd_update, "run-slot": cmd_update, "allowlist": cmd_allowlist,
    "reset-admin": cmd_reset_admin,
    "audit": lambda ctx: {"verify": cmd_audit_verify, "export": cmd_audit_export}[ctx.args.audit_command](ctx),
    **dict.fromkeys(("cert", "backup", "restore", "rekey"), cli_admin.run),
}


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in _WITHOUT_CONTEXT:
        return _WITHOUT_CONTEXT[args.command](args)
    with CliContext.from_args(args) as ctx:
        return _WITH_CONTEXT[args.command](ctx)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return _dispatch(args)
    except OutpostError as exc:
        print(f"outpost: error: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
