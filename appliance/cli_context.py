"""`CliContext`: what an `outpost` subcommand works with, built once from its parsed arguments.

One place for: the validated configuration (with --data-dir applied), the data directory's
paths (`DataDir`), the refusal to run as root (PLAT-3), the store passphrase source, the
audit actor, the encrypted store (opened when a command first needs it) and the services
built on it, which are the ones the server builds (`app.account_services`, `app.tls_manager`,
`BackupService`, `updates.service.make_updater`, `AuditService`). Commands stay thin:
parse, call a service, print.

The store passphrase (STORE-2, [store] key_source = "passphrase") comes from, in order:
1. the systemd credential `outpost-passphrase` (`LoadCredential=outpost-passphrase:/path`
   in the unit; systemd sets $CREDENTIALS_DIRECTORY): the only environment variable
   Outpost reads, and only here;
2. a console prompt (getpass) when standard input is a terminal.
Otherwise the command stops with a message saying how to provide it.

Invariants (what must never happen):
- A CLI audit record names anyone but the real uid (`system`, `cli:<name from the password
  database>`, source `local`): never $USER or $LOGNAME, which anyone can set.
- A command that works on an existing database creates one (and with it a new key next to
  an old database): `store()` refuses when the database file is missing.
- A command that replaces the database (restore, rekey) runs while the directory looks in
  use, unless --force says the server crashed.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from appliance import config as config_mod
from appliance.audit.events import Event
from appliance.audit.models import Actor, Outcome
from appliance.clock import Clock, SystemClock
from appliance.crypto import keyfile
from appliance.errors import OutpostError
from appliance.paths import DataDir

if TYPE_CHECKING:
    from appliance.app import Services
    from appliance.audit.service import AuditService
    from appliance.auth.service import AuthService
    from appliance.backup.service import BackupService
    from appliance.store.connection import Database
    from appliance.tls.manager import TLSManager

CREDENTIAL = "outpost-passphrase"
Passphrase = Callable[[], bytes]


def local_user() -> str:
    """The real uid's name from the password database; a uid without an entry is "uid<N>"."""
    import pwd

    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


def local_actor() -> Actor:
    """The audit actor of every command run on this machine: system, cli:<user>, source local."""
    return Actor(type="system", name=f"cli:{local_user()}", source="local")


def store_passphrase(prompt: str = "Outpost database passphrase: ") -> Passphrase:
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


class CliContext:
    """Built by `from_args` once per command; `close()` (or `with`) releases what was opened."""

    def __init__(self, args: argparse.Namespace, config: config_mod.Config, *, clock: Clock | None = None) -> None:
        self.args = args
        self.config = config
        self.paths = DataDir(Path(config.store.data_dir).absolute())
        self.clock: Clock = clock or SystemClock()
        self.actor = local_actor()
        self.passphrase = store_passphrase()
        self._db: Database | None = None
        self._db_key = b""
        self._closers: list[Callable[[], None]] = []

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> CliContext:
        """Load and validate the configuration; refuse root without --allow-root (PLAT-3)."""
        config = config_mod.with_data_dir(config_mod.load(args.config), args.data_dir)
        if hasattr(os, "geteuid") and os.geteuid() == 0 and not args.allow_root:
            raise OutpostError("refusing to run as root; run as the outpost service user "
                               "(or pass --allow-root for development)")
        return cls(args, config)

    def __enter__(self) -> CliContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()
        if self._db is not None:
            self._db.close()
            self._db = None

    # ---- the store ----------------------------------------------------------------------

    def require_database(self) -> None:
        if not self.paths.db.exists():
            raise OutpostError(f"no Outpost database in {self.paths.root}")

    def ensure_stopped(self) -> None:
        """Refuse to replace a database that looks open (its -shm file exists), unless --force."""
        if self.paths.db_shm.exists() and not getattr(self.args, "force", False):
            raise OutpostError(f"{self.paths.root} looks in use ({self.paths.db_shm.name} exists): stop the server "
                               "first; if it crashed, pass --force")

    def key_source(self, paths: DataDir | None = None) -> str:
        """The source the key file is actually in ("file" or "passphrase"), whatever the config says."""
        return keyfile.source_of((paths or self.paths).db_key)

    def connect(self, *, key_source: str | None = None, passphrase: Passphrase | None = None,
                readers: int | None = None) -> Database:
        """A new connection to the existing database (the caller closes it). Defaults: the
        configured key source and reader count, and this context's passphrase source."""
        from appliance import app

        self.require_database()
        db, self._db_key = app.open_database(self.paths.root, readers or self.config.store.readers,
                                             key_source=key_source or self.config.store.key_source,
                                             passphrase=passphrase or self.passphrase)
        return db

    def store(self, *, key_source: str | None = None, passphrase: Passphrase | None = None) -> Database:
        """The existing database, opened once for this command (the arguments apply to that
        first opening: restore and rekey open with the key source the key file is in)."""
        if self._db is None:
            self._db = self.connect(key_source=key_source, passphrase=passphrase)
        return self._db

    # ---- services (the ones the server uses) ------------------------------------------------

    def audit(self) -> AuditService:
        from appliance.audit.service import AuditService

        return AuditService(self.store(), self.clock)

    def record(self, event: Event, *, outcome: Outcome = "success", target: str = "",
               details: dict | None = None) -> None:
        """Audit what this command did (as this context's actor), in a transaction of its own."""
        self.audit().record_alone_sync(event, actor=self.actor, outcome=outcome, target=target, details=details)

    def auth(self) -> AuthService:
        """Accounts, wired to API keys as in the server (a password reset revokes the user's keys)."""
        from appliance import app
        from appliance.crypto.passwords import PasswordHasher

        auth_cfg = self.config.auth
        hasher = PasswordHasher(time_cost=auth_cfg.argon2_time_cost, memory_kib=auth_cfg.argon2_memory_kib,
                                parallelism=auth_cfg.argon2_parallelism, concurrency=1)
        self._closers.append(hasher.close)
        db = self.store()
        auth, _ = app.account_services(db, self.config, self.paths, self.clock, hasher,
                                       vault_key=app.load_or_create_key(self.paths.vault_key))
        return auth

    def tls(self) -> TLSManager:
        from appliance import app

        audit = self.audit()  # opens the store: the key password derives from the database key
        return app.tls_manager(self.config, self.paths, self._db_key, self.clock, audit.record_alone_sync)

    def backups(self) -> BackupService:
        from appliance import __version__
        from appliance.backup.service import BackupService

        return BackupService(self.store(), self.paths.root, self.config.backup, self.clock,
                             config_path=self.args.config, app_version=__version__)

    def build_services(self) -> Services:
        """Everything `serve` and `init` run on (creates the data directory and store if new)."""
        from appliance import app

        return app.build(self.config, self.clock, passphrase=self.passphrase, config_path=self.args.config)
