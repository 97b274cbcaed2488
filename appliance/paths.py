"""The data directory's layout: every file name under it, written once (`DataDir`).

    <data_dir>/                 0700, owned by the service user
      outpost.db                the SQLCipher database (+ -wal, -shm while open)
      outpost.db.pre-NNNN       pre-migration snapshot (store/migrate.py), under the same key
      keys/db.key               the database key (raw, or wrapped by a passphrase: STORE-2)
      keys/db.key.new           a rotation in progress (`outpost rekey`)
      keys/vault.key            seals TOTP seeds and device credentials (STORE-3)
      keys/apikey.key           HMAC pepper of API keys (ACL-2)
      tls/                      local CA, server and customer certificates (tls/files.py)
      recordings/               session recordings (already encrypted)
      setup-code                the one-time setup code (AUTH-1), 0600
      config-from-backup.toml   the configuration file a restore brought back
      updates/staging/          where bundles are verified, unless [updates] staging_dir says otherwise

Pure names: nothing here touches the disk. Code that needs a file under the data
directory asks a `DataDir` for it instead of joining strings, so a name is never typed
twice (a second spelling that drifts would make a file unreadable or leave it behind).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DB_NAME = "outpost.db"
DB_SNAPSHOT_GLOB = f"{DB_NAME}.pre-*"  # store/migrate.py names them <db>.pre-NNNN
KEYS_DIR = "keys"
TLS_DIR = "tls"
RECORDINGS_DIR = "recordings"
SETUP_CODE_NAME = "setup-code"
RESTORED_CONFIG_NAME = "config-from-backup.toml"
TLS_CA_PEM_NAME = "ca.pem"  # the CA certificate users download and trust (tls/files.py)


@dataclass(frozen=True)
class DataDir:
    """Paths under one data directory (`root`), as given: absolute only if `root` is."""

    root: Path

    def __init__(self, root: Path | str) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def db(self) -> Path:
        return self.root / DB_NAME

    @property
    def db_shm(self) -> Path:
        """Exists while some process has the database open (WAL shared memory)."""
        return self.root / f"{DB_NAME}-shm"

    @property
    def db_sidecars(self) -> tuple[Path, ...]:
        """SQLite's files beside the database: stale once the database is replaced."""
        return tuple(self.root / f"{DB_NAME}{suffix}" for suffix in ("-wal", "-shm", "-journal"))

    def db_snapshots(self) -> list[Path]:
        """Pre-migration snapshots, oldest version first."""
        return sorted(self.root.glob(DB_SNAPSHOT_GLOB))

    @property
    def keys(self) -> Path:
        return self.root / KEYS_DIR

    @property
    def db_key(self) -> Path:
        return self.keys / "db.key"

    @property
    def db_key_new(self) -> Path:
        return self.keys / "db.key.new"

    @property
    def vault_key(self) -> Path:
        return self.keys / "vault.key"

    @property
    def apikey_key(self) -> Path:
        return self.keys / "apikey.key"

    @property
    def tls(self) -> Path:
        return self.root / TLS_DIR

    @property
    def tls_ca_pem(self) -> Path:
        return self.tls / TLS_CA_PEM_NAME

    @property
    def recordings(self) -> Path:
        return self.root / RECORDINGS_DIR

    @property
    def setup_code(self) -> Path:
        return self.root / SETUP_CODE_NAME

    @property
    def restored_config(self) -> Path:
        return self.root / RESTORED_CONFIG_NAME

    @property
    def update_staging(self) -> Path:
        """The default staging directory of update bundles."""
        return self.root / "updates" / "staging"
