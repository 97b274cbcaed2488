"""Composition root: `build(config)` opens the data directory and constructs services.

No Litestar here (the web shell wraps these services). Nothing is read from the
environment; the CLI passes the validated config in. Order matters and is fixed:
data dir -> key -> database (integrity check, migrations) -> TLS -> setup code.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

import psutil

from appliance.access.allowlist import AllowList
from appliance.access.apikeys import ApiKeyService
from appliance.audit import log as audit
from appliance.audit.events import Event
from appliance.audit.models import Actor, Outcome
from appliance.audit.service import AuditService, record_migration
from appliance.auth import permissions
from appliance.auth.service import AuthService
from appliance.clock import Clock, SystemClock
from appliance.config import Config
from appliance.crypto import keyfile
from appliance.crypto.keypool import KeyPool
from appliance.crypto.passwords import PasswordHasher
from appliance.devices.service import DeviceService
from appliance.errors import OutpostError
from appliance.paths import DataDir
from appliance.probe.runner import Runner
from appliance.probe.scheduler import Scheduler
from appliance.probe.service import ProbeService, policy_from
from appliance.store import keys as db_keys
from appliance.store.connection import Connection, Database
from appliance.system import health, integrity, licences
from appliance.tls import rekey as tls_rekey
from appliance.tls.manager import TLSAudit, TLSManager
from appliance.updates import verify as update_verify
from appliance.updates.service import UpdateService


class DataDirError(OutpostError):
    code = "data_dir"


def prepare_data_dir(path: Path) -> Path:
    """Create the data directory with mode 0700 and check that it is writable."""
    path = Path(path).absolute()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        # A fresh random name, created with O_CREAT|O_EXCL|O_NOFOLLOW (mkstemp): a planted
        # symlink can never make us create, truncate or write its target.
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except PermissionError:
        raise DataDirError(f"the data directory {path} is not writable by this user") from None
    except OSError as exc:
        raise DataDirError(f"the data directory {path} cannot be used: {exc.strerror}") from None
    return path


# What is derived from the database key and re-encrypted when it changes (store/keys.py step 3).
DB_KEY_FOLLOWERS = (tls_rekey.follow_database_rekey,)


def open_database(data_dir: Path, readers: int, *, key_source: str = "file", passphrase=None,
                  new_passphrase=None) -> tuple[Database, bytes]:
    """Open (or create) the encrypted database; an existing database without its key is refused.

    key_source "passphrase": keys/db.key is wrapped; `passphrase()` supplies the passphrase.
    An interrupted `outpost rekey` is finished here (store/keys.py), its followers included.
    A schema upgrade is audited (store.migrate) in the migration's own transaction.
    """
    return db_keys.unlock(data_dir, key_source=key_source, passphrase=passphrase, readers=readers,
                          new_passphrase=new_passphrase, followers=DB_KEY_FOLLOWERS, on_migrate=record_migration)


def rekey_database(data_dir: Path, *, passphrase, new_source: str, new_passphrase) -> dict:
    """Rotate the database key (`outpost rekey`, server stopped); the TLS keys follow it."""
    return db_keys.rekey(data_dir, passphrase=passphrase, new_source=new_source, new_passphrase=new_passphrase,
                         followers=DB_KEY_FOLLOWERS, on_migrate=record_migration)


def load_or_create_key(path: Path) -> bytes:
    """A 256-bit key file under keys/ (0600), created on first use."""
    return keyfile.load_key(path) if path.exists() else keyfile.create_key(path)


def local_names(hostname: str) -> set[str]:
    """Every name and address this machine answers to (Host allow list)."""
    names = {"localhost", socket.gethostname().lower(), socket.getfqdn().lower()}
    if hostname:
        names.add(hostname.lower())
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family in (socket.AF_INET, socket.AF_INET6):
                names.add(addr.address.split("%")[0].lower())
    return names


def account_services(db: Database, cfg: Config, paths: DataDir, clock: Clock, hasher: PasswordHasher, *,
                     vault_key: bytes) -> tuple[AuthService, ApiKeyService]:
    """AuthService and ApiKeyService wired together, for the server and the CLI alike: a
    password reset or change revokes the user's API keys in the same transaction (AUTH-5;
    auth may not import access, so the link is made here). The API-key pepper lives outside
    the database."""
    apikeys = ApiKeyService(db, cfg.access, clock, load_or_create_key(paths.apikey_key), grantable=permissions.covers)
    auth = AuthService(db, cfg.auth, clock, hasher, vault_key=vault_key,
                       hostname=cfg.web.hostname or socket.gethostname(),
                       password_replaced=apikeys.revoke_user_keys)  # keys end with the password
    return auth, apikeys


def tls_manager(cfg: Config, paths: DataDir, db_key: bytes, clock: Clock, audit: TLSAudit) -> TLSManager:
    """The TLS manager of a data directory; its private keys' password derives from the database key.
    It records what it does through `audit` (e.g. `AuditService.record_alone_sync`)."""
    return TLSManager(paths.tls, cfg.tls, cfg.web.hostname, clock, key_password=tls_rekey.key_password(db_key),
                      audit=audit)


class Services:
    """Everything a running appliance needs, built once by `build()`."""

    def __init__(self, config: Config, clock: Clock, *, passphrase=None, config_path: Path | None = None) -> None:
        self.config = config
        self.clock = clock
        self.config_path = config_path
        self.started_at = clock.now()
        self.data_dir = prepare_data_dir(Path(config.store.data_dir))
        self.paths = DataDir(self.data_dir)
        self.db, key = open_database(self.data_dir, config.store.readers, key_source=config.store.key_source,
                                     passphrase=passphrase)
        try:
            self._build_rest(key)
        except BaseException:
            self.db.close()
            raise

    def _build_rest(self, key: bytes) -> None:
        cfg = self.config
        self.audit = AuditService(self.db, self.clock)  # every audit record goes through it (audit/service.py)
        self.vault_key = load_or_create_key(self.paths.vault_key)
        self.hasher = PasswordHasher(time_cost=cfg.auth.argon2_time_cost, memory_kib=cfg.auth.argon2_memory_kib,
                                     parallelism=cfg.auth.argon2_parallelism, concurrency=cfg.auth.hash_concurrency,
                                     max_wait_seconds=cfg.auth.hash_queue_seconds)
        # Accounts, sessions, TOTP (seeds sealed with the vault key), security policy (AUTH-1..8, ACL-1),
        # and API keys (ACL-2): wired together by account_services, as for the CLI.
        self.auth, self.apikeys = account_services(self.db, cfg, self.paths, self.clock, self.hasher,
                                                   vault_key=self.vault_key)
        self.tls = tls_manager(cfg, self.paths, key, self.clock, self.audit.record_alone_sync)
        self.tls.ensure()  # generates or renews what is due, and audits it
        from appliance import __version__
        from appliance.backup.service import BackupService
        self.backups = BackupService(self.db, self.data_dir, cfg.backup, self.clock, config_path=self.config_path,
                                     app_version=__version__)
        self.setup_code_file = self.paths.setup_code
        names = local_names(cfg.web.hostname)
        self.allowed_hosts = (names | {h.lower() for h in cfg.web.allowed_hosts}
                              | {s.lower() for s in self.tls.info().leaf_sans})
        self.licences = licences.bundled()
        # Inventory and the SSH credential vault (DEV-1..4); the probe subscribes to its changes.
        # Uploaded keys are parsed on their own bounded pool (issue 11, finding 8).
        self.key_pool = KeyPool(workers=1, queue=4)
        self.devices = DeviceService(self.db, self.vault_key, self.clock, self.key_pool)
        # The IP allow list (ACL-3).
        self.allowlist = AllowList(self.db, self.clock)
        # /metrics (PLAT-6): callables returning [(name, type, help, labels dict, value)]; append to add metrics.
        self.metric_sources: list = []
        self.metric_sources.append(lambda: [(
            "outpost_password_checks_refused_total", "counter",
            "Sign-in password checks refused at once because the hashing queue was full.", {}, self.hasher.refused)])
        # SSH probe (PROBE-1..6): built here, started only by `serve` (cli._serve) inside its event loop.
        self.probe_runner = Runner(policy_from(cfg.probe), self.devices, self.clock)
        self.probe = ProbeService(self.db, self.clock, cfg.probe, self.probe_runner, self.devices)
        self.probe_scheduler = Scheduler(self.probe, self.probe_runner, self.devices,
                                         max_concurrency=cfg.probe.max_concurrency,
                                         jitter=cfg.probe.jitter_percent / 100,
                                         backoff_max=cfg.probe.backoff_max_seconds)
        self.metric_sources.append(self.probe_scheduler.metric_samples)
        self.devices.status_provider = self.probe.statuses  # device list shows probe status
        # Signed updates and the integrity self-check (UPD-1..4); the check runs now and on demand.
        self.updates = UpdateService(self.db, cfg.updates, self.data_dir, self.clock)
        self.check_integrity()
        self.metric_sources.append(lambda: integrity.samples(self.integrity))

    def check_integrity(self, actor: Actor | None = None) -> integrity.Report:
        """UPD-4: hash the running executable against its slot's signed manifest. Audited on a
        mismatch always; every on-demand run (actor given) is audited with its result."""
        trust = self.updates.trust
        report = integrity.check(frozen=bool(getattr(sys, "frozen", False)), executable=Path(sys.executable),
                                 load_manifest=lambda p: update_verify.read_release(p, trust), now=self.clock.now())
        self.integrity = report
        details = {"status": report.status, "result": report.message[:200], "version": report.version}
        outcome: Outcome = "success" if report.status != integrity.MISMATCH else "failure"
        entries: list[tuple[Event, Outcome]] = [(Event.INTEGRITY_CHECK, outcome)] if actor else []
        if report.status == integrity.MISMATCH:
            entries.append((Event.INTEGRITY_MISMATCH, "failure"))
        if entries:
            now = self.clock.now()
            who = actor or Actor.system()
            self.db.write_sync(lambda conn: [self.audit.record(conn, e, ts=now, actor=who, outcome=o, details=details)
                                             for e, o in entries])
        return report

    def record_system_events(self, events: list[Event], details: dict | None = None) -> None:
        """Audit things the appliance did by itself (start, stop; TLSManager audits its own)."""
        if not events:
            return
        now = self.clock.now()

        def job(conn: Connection):
            for event in events:
                self.audit.record(conn, event, ts=now, actor=Actor.system(), details=dict(details or {}))

        self.db.write_sync(job)

    def health(self) -> health.Health:
        """Self-health, recomputed at most once a second (dashboards poll it; psutil and
        certificate parsing cost ~150 µs, which would dominate a busy JSON endpoint)."""
        now = self.clock.monotonic()
        cached = getattr(self, "_health_cache", None)
        if cached is not None and now - cached[0] < 1.0:
            return cached[1]
        info = self.tls.info()
        snapshot = health.collect(data_dir=self.data_dir, database_bytes=self.db.size_bytes(),
                                  cert_not_after=info.leaf_not_after, cert_fingerprint=info.leaf_fingerprint,
                                  started_at=self.started_at, now=self.clock.now())
        self._health_cache = (now, snapshot)
        return snapshot

    async def purge_audit(self) -> int:
        """Drop audit records past [audit] retention_days, leaving a verifiable checkpoint (AUDIT-3)."""
        now = self.clock.now()
        cutoff = now - self.config.audit.retention_days * 86400
        return await self.db.write(lambda conn: audit.purge_before(conn, cutoff=cutoff, ts=now))

    async def healthy(self) -> bool:
        try:
            return await self.db.read(lambda conn: conn.execute("SELECT 1").fetchone()[0] == 1)
        except OutpostError:
            return False

    def close(self) -> None:
        self.hasher.close()
        self.key_pool.close()
        self.db.close()


def build(config: Config, clock: Clock | None = None, *, passphrase=None, config_path: Path | None = None) -> Services:
    """`passphrase()` unlocks a passphrase-wrapped database key; `config_path` goes into backups."""
    return Services(config, clock or SystemClock(), passphrase=passphrase, config_path=config_path)
