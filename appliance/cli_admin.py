"""`outpost cert`, `backup`, `restore` and `rekey` (wired by cli.py), and the store passphrase source.

The store passphrase (STORE-2, [store] key_source = "passphrase") comes from, in order:
1. the systemd credential `outpost-passphrase` (`LoadCredential=outpost-passphrase:/path`
   in the unit; systemd sets $CREDENTIALS_DIRECTORY). This is the ONLY environment
   variable Outpost reads, and only here (the CLI's audit actor is the real uid's name
   from the password database, never $USER);
2. a console prompt (getpass) when standard input is a terminal.
Otherwise start-up stops with a message saying how to provide it. Backup and rekey
passphrases for scripted use come from files given on the command line (0600).
"""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable

from appliance import __version__
from appliance.crypto import kdf
from appliance.errors import OutpostError

CREDENTIAL = "outpost-passphrase"


def store_passphrase(prompt: str = "Outpost database passphrase: ") -> Callable[[], bytes]:
    """A provider asked only when a wrapped key must be opened; asks at most once."""
    cache: list[bytes] = []

    def get() -> bytes:
        if cache:
            return cache[0]
        creds = os.environ.get("CREDENTIALS_DIRECTORY", "")
        path = Path(creds) / CREDENTIAL if creds else None
        if path is not None and path.is_file():
            value = path.read_bytes().rstrip(b"\r\n")
        elif sys.stdin is not None and sys.stdin.isatty():
            value = getpass.getpass(prompt).encode()
        else:
            raise OutpostError("the database key is protected by a passphrase: start Outpost on a console to type "
                               f"it, or give it as the systemd credential {CREDENTIAL} (LoadCredential=)")
        if not value:
            raise OutpostError("the database passphrase is empty")
        cache.append(value)
        return value

    return get


def _file_passphrase(path: Path) -> Callable[[], bytes]:
    from appliance.system.backup import read_passphrase_file

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
    p.add_argument("--key-source", choices=("file", "passphrase"), help="new key source (default: keep the current one)")
    p.add_argument("--passphrase-file", type=Path, metavar="FILE",
                   help="current store passphrase, from a file (default: credential or console)")
    p.add_argument("--new-passphrase-file", type=Path, metavar="FILE",
                   help="new store passphrase, from a file (default: asked twice on the console)")
    p.add_argument("--force", action="store_true", help="rekey even if the data directory looks in use")


def local_user() -> str:
    """The real uid's name from the password database, for audit records of CLI commands.

    Never $USER or $LOGNAME: anyone can set those (to another name, or to a spreadsheet
    formula). A uid with no passwd entry is recorded as "uid<N>".
    """
    import pwd

    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


def local_actor():
    """The audit actor of a command run on this machine: system/cli:<user>, source local."""
    from appliance.audit.models import Actor

    return Actor(type="system", name=f"cli:{local_user()}", source="local")


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


def _record(db, action: str, *, outcome: str = "success", target: str = "", details: dict | None = None) -> None:
    from appliance.audit import log as audit

    db.write_sync(lambda conn: audit.record(conn, ts=time.time(), action=action, actor=local_actor(), outcome=outcome,
                                            target=target, details=details or {}))


def _open(args, load):
    from appliance import app

    cfg = load(args)
    data_dir = Path(cfg.store.data_dir)
    if not (data_dir / app.DB_FILE).exists():
        raise OutpostError(f"no Outpost database in {data_dir.absolute()}")
    db, key = app.open_database(data_dir, cfg.store.readers, key_source=cfg.store.key_source,
                                passphrase=store_passphrase())
    return cfg, data_dir, db, key


def cmd_cert(args, load) -> int:
    from appliance.clock import SystemClock
    from appliance.system import dbkey
    from appliance.tls import TLSManager, importer

    cfg, data_dir, db, key = _open(args, load)
    try:
        tls = TLSManager(data_dir / "tls", cfg.tls, cfg.web.hostname, SystemClock(), key_password=dbkey.tls_password(key))
        tls.ensure()
        if args.cert_command == "show":
            _print_info(tls.info())
            return 0
        if args.cert_command == "import":
            hostname = importer.configured_hostname(cfg.web.hostname, socket.gethostname())
            try:
                bundle = _read_bundle(args, hostname)
            except OutpostError as exc:
                _record(db, "tls.cert.import.refused", outcome="failure", details={"reason": exc.message[:300]})
                raise
            events = tls.install_customer(bundle)
            for warning in bundle.warnings:
                print(f"warning: {warning}", file=sys.stderr)
            if not events:
                _print_info(tls.info())
                print("This certificate is already in use; nothing changed (rollback still restores the one "
                      "before it).", file=sys.stderr)
                return 0
        elif args.cert_command == "rollback":
            events = tls.rollback()
        else:
            events = tls.regenerate()
            events = ["tls.cert.regenerate", *[e for e in events if e != "tls.cert.renew"]]
        info = tls.info()
        for event in dict.fromkeys(events):
            _record(db, event, target=info.leaf_subject, details={"fingerprint": info.leaf_fingerprint, "via": "cli"})
        _print_info(info)
        print("A running server switches within a few seconds.", file=sys.stderr)
        return 0
    finally:
        db.close()


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
    if days < 30:
        print(f"warning: the certificate expires in {days:.0f} days", file=sys.stderr)


def cmd_backup(args, load) -> int:
    from appliance.system import backup

    passphrase = backup.read_passphrase_file(args.passphrase_file)
    cfg, data_dir, db, _ = _open(args, load)
    try:
        service = backup.BackupService(db, data_dir, cfg.backup, _clock(), config_path=args.config,
                                       app_version=__version__)
        size = service.create(args.output, passphrase, actor=local_actor(), via="cli")
    finally:
        db.close()
    print(f"ok: backup written to {args.output} ({size} bytes)")
    return 0


def _clock():
    from appliance.clock import SystemClock

    return SystemClock()


def cmd_restore(args, load) -> int:
    from appliance import app
    from appliance.system import backup, dbkey

    cfg = load(args)
    data_dir = Path(cfg.store.data_dir).absolute()
    if (data_dir / f"{app.DB_FILE}-shm").exists() and not args.force:
        raise OutpostError(f"{data_dir} looks in use (outpost.db-shm exists): stop the server first; if it crashed, "
                           "pass --force")
    passphrase = backup.read_passphrase_file(args.passphrase_file)
    store_pass = store_passphrase("Database passphrase of the backed-up appliance: ")

    def check_open(staged: Path) -> None:
        from appliance.crypto import keyfile

        source = "passphrase" if keyfile.is_wrapped(staged / dbkey.KEY_FILE) else "file"
        db, _ = dbkey.unlock(staged, key_source=source, passphrase=store_pass, readers=1)
        db.close()

    try:
        header = backup.restore(args.file, data_dir, passphrase, check_open=check_open)
    except OutpostError as exc:  # every refusal comes before the swap
        raise OutpostError(f"{exc.message} (nothing was changed in {data_dir})") from None
    from appliance.crypto import keyfile

    source = "passphrase" if keyfile.is_wrapped(data_dir / dbkey.KEY_FILE) else "file"
    db, _ = dbkey.unlock(data_dir, key_source=source, passphrase=store_pass, readers=1)
    try:
        _record(db, "backup.restore", target=Path(args.file).name,
                details={"backup_created_at": header.created_at, "backup_version": header.app_version})
    finally:
        db.close()
    print(f"ok: restored {args.file} into {data_dir} (backup of Outpost {header.app_version})")
    if (data_dir / backup.RESTORED_CONFIG).exists():
        print(f"the configuration file from the backup is in {data_dir / backup.RESTORED_CONFIG}", file=sys.stderr)
    return 0


def cmd_rekey(args, load) -> int:
    from appliance.crypto import keyfile
    from appliance.system import dbkey

    cfg = load(args)
    data_dir = Path(cfg.store.data_dir)
    if not (data_dir / dbkey.DB_FILE).exists():
        raise OutpostError(f"no Outpost database in {data_dir.absolute()}")
    if (data_dir / f"{dbkey.DB_FILE}-shm").exists() and not args.force:
        raise OutpostError(f"{data_dir} looks in use (outpost.db-shm exists): stop the server first; if it crashed, "
                           "pass --force")
    current = "passphrase" if keyfile.is_wrapped(data_dir / dbkey.KEY_FILE) else "file"
    new_source = args.key_source or current
    passphrase = _file_passphrase(args.passphrase_file) if args.passphrase_file else store_passphrase()
    new_pass = (_checked(_file_passphrase(args.new_passphrase_file)) if args.new_passphrase_file
                else (passphrase if current == "passphrase" and not args.key_source else _new_passphrase_prompt()))
    facts = dbkey.rekey(data_dir, passphrase=passphrase, new_source=new_source,
                        new_passphrase=new_pass if new_source == "passphrase" else None)
    db, _ = dbkey.unlock(data_dir, key_source=new_source, passphrase=new_pass if new_source == "passphrase" else None,
                         readers=1)
    try:
        _record(db, "store.rekey", details=facts)
    finally:
        db.close()
    print(f"ok: database key rotated (key source: {new_source}); {facts['snapshots_removed']} old snapshot(s) deleted")
    if new_source != cfg.store.key_source:
        print(f"set [store] key_source = \"{new_source}\" in the configuration before the next start", file=sys.stderr)
    return 0


def run(args, load) -> int:
    return {"cert": cmd_cert, "backup": cmd_backup, "restore": cmd_restore, "rekey": cmd_rekey}[args.command](args, load)
