"""The `outpost` command line (PLAT-5). Errors go to stderr with a non-zero exit code.

Every subcommand that opens the data directory refuses to run as root unless
--allow-root is given (PLAT-3): files created by root would lock the service
user out of its own data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path

import uvloop

from appliance import __version__, config as config_mod, logs
from appliance.errors import OutpostError
from appliance.updates import commands as update_commands
from appliance import cli_admin

log = logging.getLogger("outpost")
EXIT_ERROR = 1
EXIT_USAGE = 2
MAINTENANCE_SECONDS = 300.0
TLS_WATCH_SECONDS = 2.0  # a CLI certificate change reaches new handshakes within this


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file (see config.example.toml); default: built-in defaults")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (overrides [store] data_dir; default /var/lib/outpost)")
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
                       description="Prepare a data directory without serving: key, encrypted database, local CA and setup code.")
    _common(p)

    p = sub.add_parser("check-config", help="validate a configuration file without starting",
                       description="Validate FILE; print the first problem with its key path and exit 1, or print 'ok'.")
    p.add_argument("file", type=Path, metavar="FILE")

    audit = sub.add_parser("audit", help="verify or export the audit log", description="Audit log tools.")
    asub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    p = asub.add_parser("verify", help="check the hash chain; name the first broken record",
                        description="Recompute the audit hash chain. Exit 0 if intact, 1 naming the first broken record.")
    _common(p)
    p = asub.add_parser("export", help="export audit records as CSV or JSON lines",
                        description="Write audit records (oldest first) as CSV or JSON lines. The export is itself audited.")
    _common(p)
    p.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    p.add_argument("--output", "-o", metavar="FILE", default="-", help="output file (default: standard output)")
    for name in ("since", "until"):
        p.add_argument(f"--{name}", metavar="TIME", help="ISO time, UTC unless an offset is given")
    for name in ("actor", "action", "outcome", "target"):
        p.add_argument(f"--{name}", default="", help=f"filter on {name}")

    allow = sub.add_parser("allowlist", help="show or clear the IP allow list (ACL-3)",
                           description="The IP allow list limits which addresses reach the appliance. Run locally "
                                       "if a list locks everyone out; a running server picks the change up within seconds.")
    lsub = allow.add_subparsers(dest="allowlist_command", required=True, metavar="ACTION")
    p = lsub.add_parser("show", help="print the allowed networks, one per line (empty list: every address)",
                        description="Print the allowed networks, one per line; says so when the list is empty.")
    _common(p)
    p = lsub.add_parser("reset", help="clear the list so every address is allowed again (audited)",
                        description="Clear the IP allow list (audited as system/cli). Every address may connect again.")
    _common(p)

    p = sub.add_parser("reset-admin", help="recover admin access: new temporary password, unlock, 2FA cleared (AUTH-5)",
                       description="Local recovery when no admin can sign in. Needs the data directory and its key "
                                   "file. Gives the admin (or --username) a new temporary password, printed once on "
                                   "this terminal and changed at first sign-in; unlocks and enables the account, "
                                   "removes its 2FA and ends its sessions. Creates the admin if none exists. "
                                   "Audited as system/cli.")
    _common(p)
    p.add_argument("--username", metavar="NAME", help="the account to recover (default: the first active admin, "
                                                      "else the first admin, else a new account named admin)")
    sub.add_parser("version", help="print the version", description="Print the version and exit.")
    update_commands.add_parsers(sub, _common)
    cli_admin.add_parsers(sub, _common)  # cert, backup, restore, rekey
    return top


def _load(args) -> config_mod.Config:
    cfg = config_mod.with_data_dir(config_mod.load(args.config), args.data_dir)
    if hasattr(os, "geteuid") and os.geteuid() == 0 and not args.allow_root:
        raise OutpostError("refusing to run as root; run as the outpost service user (or pass --allow-root for development)")
    return cfg


def _banner(services, code: str | None) -> None:
    info = services.tls.info()
    lines = ["", f"Outpost {__version__}", f"  data directory:            {services.data_dir}",
             f"  local CA (SHA-256):        {info.ca_fingerprint}",
             f"  server cert (SHA-256):     {info.leaf_fingerprint}",
             f"  CA certificate file:       {services.tls.ca_pem_path}"]
    if code:
        shown = code if sys.stderr.isatty() else f"(not shown on a non-terminal; read {services.setup_code_file})"
        lines += [f"  ONE-TIME SETUP CODE:       {shown}",
                  f"  valid {services.config.auth.setup_code_hours} h, single use; also in {services.setup_code_file} (0600)"]
    print("\n".join(lines) + "\n", file=sys.stderr, flush=True)
    log.info("tls certificate", extra={"ca_fingerprint": info.ca_fingerprint, "leaf_fingerprint": info.leaf_fingerprint})


def cmd_init(args) -> int:
    from appliance import app

    cfg = _load(args)
    logs.configure(cfg.log.level)
    services = app.build(cfg, passphrase=cli_admin.store_passphrase(), config_path=args.config)
    try:
        _banner(services, services.auth.ensure_setup_code(services.setup_code_file))
    finally:
        services.close()
    return 0


async def _maintenance(services) -> None:
    """Periodic housekeeping: expired sessions, audit retention, certificate renewal."""
    while True:
        await asyncio.sleep(MAINTENANCE_SECONDS)
        try:
            await services.auth.purge_expired_sessions()
            await services.purge_audit()
            events = await asyncio.to_thread(services.tls.renew_if_due)
            if events:
                await asyncio.to_thread(services.record_system_events, events)
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
            events = await asyncio.to_thread(services.tls.reload_if_changed)
            failed = None
            if events:
                await asyncio.to_thread(services.record_system_events, events)
        except OutpostError as exc:
            failed = services.tls.files_signature()  # logged once per change, the old chain keeps serving
            log.error("certificate files changed but cannot be loaded", extra={"error": exc.code, "reason": exc.message})


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
                    limits=Limits.from_config(web), allow=services.allowlist.allows, trusted_proxies=web.trusted_proxies)
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


def cmd_serve(args) -> int:
    from appliance import app
    from appliance.web.connlimits import raise_nofile_limit

    cfg = _load(args)
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
    services = app.build(cfg, passphrase=cli_admin.store_passphrase(), config_path=args.config)
    try:
        _banner(services, services.auth.ensure_setup_code(services.setup_code_file))
        services.record_system_events(["system.start"], {"version": __version__})
        uvloop.run(_serve(services, host, port, demo_data=args.demo_data))  # the fast loop, asserted by web.server
        services.record_system_events(["system.stop"])
    finally:
        services.close()
    return 0


def cmd_check_config(args) -> int:
    config_mod.load(args.file)
    print("ok")
    return 0


def _open_store(args):
    from appliance import app

    cfg = _load(args)
    data_dir = Path(cfg.store.data_dir)
    if not (data_dir / app.DB_FILE).exists():
        raise OutpostError(f"no Outpost database in {data_dir.absolute()}")
    db, _ = app.open_database(data_dir, cfg.store.readers, key_source=cfg.store.key_source,
                              passphrase=cli_admin.store_passphrase())
    return db


def cmd_audit_verify(args) -> int:
    from appliance.audit import log as audit

    db = _open_store(args)
    try:
        report = db.read_sync(audit.verify_chain)
    finally:
        db.close()
    if report.ok:
        print(f"ok: {report.checked} records verified")
        return 0
    print(f"audit chain broken at record {report.first_bad}: {report.reason} ({report.checked} records verified before it)",
          file=sys.stderr)
    return EXIT_ERROR


def cmd_audit_export(args) -> int:
    import time

    from appliance.audit import export
    from appliance.audit import log as audit
    from appliance.audit import filters

    flt, _, errors = filters.parse(vars(args))
    if errors:
        raise OutpostError("; ".join(f"--{k}: {v}" for k, v in errors.items()))
    db = _open_store(args)
    chunks = export.csv_chunks if args.format == "csv" else export.jsonl_chunks
    # A file output is a new 0600 file put in place when complete (finding 16).
    output = (cli_admin.open_private_output(Path(args.output)) if args.output != "-"
              else contextlib.nullcontext(sys.stdout.buffer))
    try:
        with output as out:
            db.write_sync(lambda conn: audit.record(conn, ts=time.time(), action="audit.export",
                                                    actor=cli_admin.local_actor(),
                                                    details={"format": args.format, "via": "cli"}))
            with db.reader() as conn:
                for chunk in chunks(conn, flt):
                    out.write(chunk)
    except OSError as exc:
        raise OutpostError(f"cannot write {args.output}: {exc.strerror}") from None
    finally:
        db.close()
    return 0


def cmd_update(args) -> int:
    """update verify|apply|status|rollback and run-slot (appliance/updates/commands.py)."""
    return update_commands.run(args, _load, _open_store, f"cli:{cli_admin.local_user()}")


def cmd_allowlist(args) -> int:
    """allowlist show|reset: read or clear the IP allow list in the local database."""
    import time

    from appliance.access import allowlist

    db = _open_store(args)
    try:
        if args.allowlist_command == "show":
            networks = allowlist.show(db)
            print("\n".join(networks) if networks else "(empty: every address is allowed)")
            return 0
        before = allowlist.reset(db, cli_admin.local_actor(), time.time())
        print(f"IP allow list cleared ({len(before)} entries removed); every address may connect again.")
        return 0
    finally:
        db.close()


def cmd_reset_admin(args) -> int:
    """reset-admin: local recovery of admin access (AUTH-5); the password goes to this terminal only."""
    from appliance import app
    from appliance.auth.service import AuthService
    from appliance.clock import SystemClock
    from appliance.crypto.passwords import PasswordHasher

    cfg = _load(args)
    db = _open_store(args)
    hasher = PasswordHasher(time_cost=cfg.auth.argon2_time_cost, memory_kib=cfg.auth.argon2_memory_kib,
                            parallelism=cfg.auth.argon2_parallelism, concurrency=1)
    try:
        vault_key = app.load_or_create_key(Path(cfg.store.data_dir) / app.VAULT_KEY_FILE)
        auth = AuthService(db, cfg.auth, SystemClock(), hasher, vault_key=vault_key)
        username, password = auth.reset_admin_sync(args.username)
    finally:
        hasher.close()
        db.close()
    print(f"Admin account: {username}\nTemporary password (shown once; change it at first sign-in): {password}\n"
          "The account is unlocked and enabled; its two-factor sign-in and sessions were removed.")
    return 0


def cmd_version(_args) -> int:
    print(f"outpost {__version__}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler = {"serve": cmd_serve, "init": cmd_init, "check-config": cmd_check_config, "version": cmd_version,
               "audit": lambda a: {"verify": cmd_audit_verify, "export": cmd_audit_export}[a.audit_command](a),
               "update": cmd_update, "run-slot": cmd_update, "allowlist": cmd_allowlist, "reset-admin": cmd_reset_admin,
               **dict.fromkeys(("cert", "backup", "restore", "rekey"), lambda a: cli_admin.run(a, _load))}[args.command]
    try:
        return handler(args)
    except OutpostError as exc:
        print(f"outpost: error: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
