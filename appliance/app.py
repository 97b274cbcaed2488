"""Composition root: `build(config)` opens the data directory and constructs services.

No Litestar here (the web shell wraps these services). Nothing is read from the
environment; the CLI passes the validated config in. Order matters and is fixed:
data dir -> key -> database (integrity check, migrations) -> TLS -> setup code.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import psutil

from appliance.audit import log as audit
from appliance.audit.models import Actor
from appliance.auth.service import AuthService
from appliance.clock import Clock, SystemClock
from appliance.config import Config
from appliance.crypto import keyfile, tokens
from appliance.crypto.passwords import PasswordHasher
from appliance.errors import OutpostError
from appliance.store.connection import Database
from appliance.system import health, licences
from appliance.tls.manager import TLSManager

DB_FILE = "outpost.db"
KEY_FILE = Path("keys") / "db.key"
VAULT_KEY_FILE = Path("keys") / "vault.key"
SETUP_CODE_FILE = "setup-code"


class DataDirError(OutpostError):
    code = "data_dir"


def prepare_data_dir(path: Path) -> Path:
    """Create the data directory with mode 0700 and check that it is writable."""
    path = Path(path).absolute()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except PermissionError:
        raise DataDirError(f"the data directory {path} is not writable by this user") from None
    except OSError as exc:
        raise DataDirError(f"the data directory {path} cannot be used: {exc.strerror}") from None
    return path


def open_database(data_dir: Path, readers: int) -> tuple[Database, bytes]:
    """Open (or create) the encrypted database; an existing database without its key is refused."""
    db_path, key_path = data_dir / DB_FILE, data_dir / KEY_FILE
    if key_path.exists() or db_path.exists():
        key = keyfile.load_key(key_path)
    else:
        key = keyfile.create_key(key_path)
    return Database.open(db_path, key, readers=readers), key


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


class Services:
    """Everything a running appliance needs, built once by `build()`."""

    def __init__(self, config: Config, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.started_at = clock.now()
        self.data_dir = prepare_data_dir(Path(config.store.data_dir))
        self.db, key = open_database(self.data_dir, config.store.readers)
        try:
            self._build_rest(key)
        except BaseException:
            self.db.close()
            raise

    def _build_rest(self, key: bytes) -> None:
        cfg = self.config
        self.vault_key = load_or_create_key(self.data_dir / VAULT_KEY_FILE)
        self.hasher = PasswordHasher(time_cost=cfg.auth.argon2_time_cost, memory_kib=cfg.auth.argon2_memory_kib,
                                     parallelism=cfg.auth.argon2_parallelism, concurrency=cfg.auth.hash_concurrency)
        self.auth = AuthService(self.db, cfg.auth, self.clock, self.hasher)
        self.tls = TLSManager(self.data_dir / "tls", cfg.tls, cfg.web.hostname, self.clock,
                              key_password=tokens.hkdf(key, "outpost tls private keys"))
        self.record_system_events(self.tls.ensure())
        self.setup_code_file = self.data_dir / SETUP_CODE_FILE
        names = local_names(cfg.web.hostname)
        self.allowed_hosts = names | {h.lower() for h in cfg.web.allowed_hosts} | {s.lower() for s in self.tls.info().leaf_sans}
        self.licences = licences.bundled()

    def record_system_events(self, actions: list[str], details: dict | None = None) -> None:
        """Audit things the appliance did by itself (certificate generation, start)."""
        if not actions:
            return
        now = self.clock.now()
        info = self.tls.info() if any(a.startswith("tls.") for a in actions) else None

        def job(conn):
            for action in actions:
                extra = {"fingerprint": info.leaf_fingerprint if "cert" in action else info.ca_fingerprint} if info else {}
                audit.record(conn, ts=now, action=action, actor=Actor.system(), details={**extra, **(details or {})})

        self.db.write_sync(job)

    def health(self) -> health.Health:
        info = self.tls.info()
        return health.collect(data_dir=self.data_dir, database_bytes=self.db.size_bytes(),
                              cert_not_after=info.leaf_not_after, cert_fingerprint=info.leaf_fingerprint,
                              started_at=self.started_at, now=self.clock.now())

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
        self.db.close()


def build(config: Config, clock: Clock | None = None) -> Services:
    return Services(config, clock or SystemClock())
