"""`outpost cert`, `backup`, `restore` and `rekey` (wired by cli.py), each given the command's
`CliContext` (cli_context.py: config, paths, store, audit actor, services).

Backup and rekey passphrases for scripted use come from files given on the command line
(0600); the store passphrase source is described in cli_context.py.
"""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from appliance.audit.events import Event
from appliance.cli_context import CliContext, store_passphrase
from appliance.crypto import kdf
from appliance.errors import OutpostError
from appliance.paths import DataDir
from appliance.tls import EXPIRY_WARNING_DAYS


def _file_passphrase(path: Path) -> Callable[[], bytes]:
    from appliance.backup.passphrase import read_passphrase_file

    return lambda: read_passphrase_file(path)


def _checked(provider: Callable[[], bytes]) -> Callable[[], bytes]:
    """A new store passphrase must meet the same minimum as a backup's (crypto/kdf.py)."""
    def get() -> bytes:
        value = provider()
        kdf.check_new_passphrase(value, "database passphrase")
        return value
    return get


def _new_passphrase_prompt() -> Callable[[], bytes]:
    def get() -> bytes:
        if not sys.stdin.isatty():
            raise OutpostError("give the new passphrase with --new-passphrase-file FILE (no terminal to ask on)")
        first = getpass.getpass("New database passphrase: ").encode()
        if first != getpass.getpass("Repeat the new passphrase: ").encode():
            raise OutpostError("the two passphrases differ; nothing was changed")
        kdf.check_new_passphrase(first, "database passphrase")
        return first
    return get


def add_parsers(sub, common: Callable[[argparse.ArgumentParser], None]) -> None:
    cert = sub.add_parser("cert", help="show, import, regenerate or roll back the HTTPS certificate",
                          description="Customer certificates (TLS-2). A running server picks up a change made here "
                                      "within a few seconds; the web UI switches at once.")
    csub = cert.add_subparsers(dest="cert_command", required=True, metavar="ACTION")
    p = csub.add_parser("show", help="print the certificate in use, its expiry and what rollback would restore")
    common(p)
    p = csub.add_parser("import", help="validate and serve a customer certificate (PEM chain + key, or PKCS#12)",
                        description="Validate and install a certificate: --cert FILE (PEM: server certificate, "
                                    "intermediates and root, in any order; may also hold the key) with --key FILE, or "
                                    "--p12 FILE. Passwords come from --password-file (first line). The chain must be "
                                    "complete up to a self-signed root; the names must cover [web] hostname (or the "
                                    "machine's hostname); RSA >= 2048 bits or EC P-256/P-384.")
    common(p)
    p.add_argument("--cert", type=Path, metavar="FILE", help="PEM certificate chain")
    p.add_argument("--key", type=Path, metavar="FILE", help="PEM private key (optionally encrypted)")
    p.add_argument("--p12", type=Path, metavar="FILE", help="PKCS#12 (.p12/.pfx) with key and chain")
    p.add_argument("--password-file", type=Path, metavar="FILE", help="file holding the key or PKCS#12 password")
    p = csub.add_parser("regenerate", help="serve a freshly generated local certificate again")
    common(p)
    p = csub.add_parser("rollback", help="go back to the previously served certificate")
    common(p)

    p = sub.add_parser("backup", help="write an encrypted backup file",
                       description="Write ONE encrypted file (argon2id + AES-256-GCM) holding a consistent database "
                                   "snapshot, the keys, certificates and the configuration file. Safe while the "
                                   "server runs.")
    common(p)
    p.add_argument("--output", "-o", type=Path, metavar="FILE", required=True, help="backup file to write")
    p.add_argument("--passphrase-file", type=Path, metavar="FILE", required=True,
                   help="file (0600) holding the backup passphrase")

    p = sub.add_parser("restore", help="verify a backup completely, then replace the data directory with it",
                       description="Stop the server first. Decrypts and checks the whole backup into a staging "
                                   "directory, then swaps it in atomically; the current data is kept until the swap "
                                   "succeeded. Nothing changes if anything is wrong.")
    common(p)
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--passphrase-file", type=Path, metavar="FILE", required=True,
                   help="file (0600) holding the backup passphrase")
    p.add_argument("--force", action="store_true", help="restore even if the data directory looks in use")

    p = sub.add_parser("rekey", help="rotate the database key (crash-safe); optionally change its source",
                       description="Stop the server first. Re-encrypts the database under a new random key; "
                                   "converts between key sources with --key-source. Pre-migration snapshots "
                                   "(encrypted with the old key) are deleted.")
    common(p)
    p.add_argument("--key-source", choices=("file", "passphrase"),
                   help="new key source (default: keep the current one)")
    p.add_argument("--passphrase-file", type=Path, metavar="FILE",
                   help="current store passphrase, from a file (default: credential or console)")
    p.add_argument("--new-passphrase-file", type=Path, metavar="FILE",
                   help="new store passphrase, from a file (default: asked twice on the console)")
    p.add_argument("--force", action="store_true", help="rekey even if the data directory looks in use")


def open_private_output(path: Path):
    """A context manager writing `path` atomically as a new 0600 file (whatever the umask,
    and also when it replaces an existing, more open file): exports and backups hold data
    only their owner may read."""
    import stat

    from appliance.store.atomic import private_writer

    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = stat.S_IFREG
    except OSError as exc:
        raise OutpostError(f"cannot write {path}: {exc.strerror}") from None
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):  # a link is replaced, never followed
        raise OutpostError(f"{path} is not a regular file; give a file name (or - for standard output)")
    return private_writer(Path(path))


def cmd_cert(ctx: CliContext) -> int:
    from appliance.tls import importer

    args = ctx.args
    tls = ctx.tls()
    tls.ensure()
    if args.cert_command == "show":
        _print_info(tls.info())
        return 0
    if args.cert_command == "import":
        hostname = importer.configured_hostname(ctx.config.web.hostname, socket.gethostname())
        try:
            bundle = _read_bundle(args, hostname)
        except OutpostError as exc:
            ctx.record(Event.TLS_CERT_IMPORT_REFUSED, outcome="failure", details={"reason": exc.message[:300]})
            raise
        events = tls.install_customer(bundle, actor=ctx.actor, via="cli")  # audits the change itself
        for warning in bundle.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if not events:
            _print_info(tls.info())
            print("This certificate is already in use; nothing changed (rollback still restores the one "
                  "before it).", file=sys.stderr)
            return 0
    elif args.cert_command == "rollback":
        tls.rollback(actor=ctx.actor, via="cli")
    else:
        tls.regenerate(actor=ctx.actor, via="cli")
    _print_info(tls.info())
    print("A running server switches within a few seconds.", file=sys.stderr)
    return 0


def _read_bundle(args, hostname: str):
    from appliance.tls import importer

    password = None
    if args.password_file:
        password = _read(args.password_file).splitlines()[0] if _read(args.password_file).strip() else b""
    if args.p12:
        if args.cert or args.key:
            raise OutpostError("give either --p12 or --cert/--key, not both")
        return importer.from_pkcs12(_read(args.p12), password, hostname=hostname, now=time.time())
    if not args.cert:
        raise OutpostError("give --cert FILE (and --key FILE) or --p12 FILE")
    return importer.from_pem(_read(args.cert), _read(args.key) if args.key else None, password,
                             hostname=hostname, now=time.time())


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise OutpostError(f"cannot read {path}: {exc.strerror}") from None


def _print_info(info) -> None:
    from datetime import UTC, datetime

    end = datetime.fromtimestamp(info.leaf_not_after, UTC)
    days = (info.leaf_not_after - time.time()) / 86400
    print(f"source:       {info.source}\nsubject:      {info.leaf_subject}\nissuer:       {info.leaf_issuer}\n"
          f"fingerprint:  {info.leaf_fingerprint}\nnames:        {', '.join(info.leaf_sans)}\n"
          f"expires:      {end:%Y-%m-%d %H:%M} UTC ({days:.0f} days)\n"
          f"rollback to:  {info.previous or '(nothing)'}\nlocal CA:     {info.ca_fingerprint}")
    if days < EXPIRY_WARNING_DAYS:
        print(f"warning: the certificate expires in {days:.0f} days", file=sys.stderr)


def cmd_backup(ctx: CliContext) -> int:
    from appliance.backup.passphrase import read_passphrase_file

    args = ctx.args
    passphrase = read_passphrase_file(args.passphrase_file)
    size = ctx.backups().create(args.output, passphrase, actor=ctx.actor, via="cli")
    print(f"ok: backup written to {args.output} ({size} bytes)")
    return 0


def cmd_restore(ctx: CliContext) -> int:
    from appliance import app
    from appliance.backup.passphrase import read_passphrase_file
    from appliance.backup.restore import restore

    args, data_dir = ctx.args, ctx.paths.root
    ctx.ensure_stopped()
    passphrase = read_passphrase_file(args.passphrase_file)
    store_pass = store_passphrase("Database passphrase of the backed-up appliance: ")

    def check_open(staged: Path) -> None:
        db, _ = app.open_database(staged, 1, key_source=ctx.key_source(DataDir(staged)), passphrase=store_pass)
        db.close()

    try:
        header = restore(args.file, data_dir, passphrase, check_open=check_open)
    except OutpostError as exc:  # every refusal comes before the swap
        raise OutpostError(f"{exc.message} (nothing was changed in {data_dir})") from None
    ctx.store(key_source=ctx.key_source(), passphrase=store_pass)
    ctx.record(Event.BACKUP_RESTORE, target=Path(args.file).name,
               details={"backup_created_at": header.created_at, "backup_version": header.app_version})
    print(f"ok: restored {args.file} into {data_dir} (backup of Outpost {header.app_version})")
    if ctx.paths.restored_config.exists():
        print(f"the configuration file from the backup is in {ctx.paths.restored_config}", file=sys.stderr)
    return 0


def cmd_rekey(ctx: CliContext) -> int:
    from appliance import app

    args = ctx.args
    ctx.require_database()
    ctx.ensure_stopped()
    current = ctx.key_source()
    new_source = args.key_source or current
    passphrase = _file_passphrase(args.passphrase_file) if args.passphrase_file else ctx.passphrase
    new_pass = (_checked(_file_passphrase(args.new_passphrase_file)) if args.new_passphrase_file
                else (passphrase if current == "passphrase" and not args.key_source else _new_passphrase_prompt()))
    new_pass_used = new_pass if new_source == "passphrase" else None
    facts = app.rekey_database(ctx.paths.root, passphrase=passphrase, new_source=new_source,
                               new_passphrase=new_pass_used)
    ctx.store(key_source=new_source, passphrase=new_pass_used)
    ctx.record(Event.STORE_REKEY, details=facts)
    print(f"ok: database key rotated (key source: {new_source}); {facts['snapshots_removed']} old snapshot(s) deleted")
    if new_source != ctx.config.store.key_source:
        print(f"set [store] key_source = \"{new_source}\" in the configuration before the next start", file=sys.stderr)
    return 0


def run(ctx: CliContext) -> int:
    return {"cert": cmd_cert, "backup": cmd_backup, "restore": cmd_restore, "rekey": cmd_rekey}[ctx.args.command](ctx)
