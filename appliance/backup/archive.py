"""What a backup holds: the tar stream inside the sealed file, written and read.

The plaintext is a tar stream (regular files and directories only) of:
- `outpost.db`: a consistent snapshot (SQLite backup API, still SQLCipher-encrypted with
  the database key, taken while the server runs);
- `keys/` (db.key, vault.key, ...): without the database key the snapshot is useless, so
  it must travel with it; the backup file as a whole is sealed under the backup
  passphrase. With key_source "passphrase" db.key is the wrapped key, so restoring also
  needs that store passphrase;
- `tls/` (local CA, server and customer certificates, keys encrypted under a password
  derived from the database key);
- `recordings/` if present (session recordings, already encrypted);
- `config.toml`: the configuration file in use, if any (restored as config-from-backup.toml
  in the data directory; the operator decides whether to use it).
Not included: the one-time setup code, pre-migration snapshots, temporary files.

Invariants (what must never happen):
- A symbolic or hard link, a device file, a FIFO, an absolute path or `..` comes out of
  a backup: `extract` refuses the whole file.
- A backup is "verified" before every chunk to the final one was read and checked.
"""

from __future__ import annotations

import errno
import secrets
import shutil
import tarfile
from pathlib import Path

from appliance import paths
from appliance.backup import format as fmt
from appliance.backup.errors import BackupDiskFullError, BackupFormatError
from appliance.crypto import kdf
from appliance.store.connection import Database
from appliance.store.errors import DiskFullError

INCLUDED_DIRS = (paths.KEYS_DIR, paths.TLS_DIR, paths.RECORDINGS_DIR)
DB_FILE = paths.DB_NAME
CONFIG_NAME = "config.toml"  # its name inside the backup


def create(db: Database, data_dir: Path, out_path: Path, passphrase: bytes, *, config_path: Path | None,
           app_version: str, params: kdf.KdfParams | None = None) -> int:
    """Back up a live data directory (snapshot of `db`, keys, certificates, config) into `out_path`."""
    data_dir = Path(data_dir)
    work = data_dir / f".backup-{secrets.token_hex(6)}"
    work.mkdir(mode=0o700)
    try:
        snapshot = work / DB_FILE
        try:
            db.snapshot(snapshot)
        except (OSError, DiskFullError) as exc:
            if isinstance(exc, DiskFullError) or exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise BackupDiskFullError("not enough disk space in the data directory to snapshot the database;"
                                          " nothing was written") from None
            raise

        def add(tar: tarfile.TarFile) -> None:
            tar.add(snapshot, DB_FILE, recursive=False)
            for name in INCLUDED_DIRS:
                root = data_dir / name
                if root.is_dir():
                    _add_tree(tar, root, name)
            if config_path is not None and Path(config_path).is_file():
                tar.add(Path(config_path), CONFIG_NAME, recursive=False)

        return fmt.write_backup(out_path, passphrase, add, app_version=app_version, params=params)
    finally:
        remove_tree(work)


def _add_tree(tar: tarfile.TarFile, root: Path, arcname: str) -> None:
    tar.add(root, arcname, recursive=False)
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not (path.is_file() or path.is_dir()) or path.name.endswith(".tmp"):
            continue  # only regular files and directories travel
        tar.add(path, f"{arcname}/{path.relative_to(root).as_posix()}", recursive=False)


def extract(backup: Path, passphrase: bytes, dest: Path) -> fmt.Header:
    """Verify the whole backup while extracting it into the empty directory `dest` (0700)."""
    with open(backup, "rb") as f:
        header, _ = fmt.read_header(f)
        f.seek(0)
        chunks = fmt.open_chunks(f, passphrase)
        try:
            with tarfile.open(fileobj=fmt.open_plaintext(chunks), mode="r|") as tar:
                for member in tar:
                    _check_member(member)
                    tar.extract(member, dest, filter="data")
            # Drain to the final chunk: tar's end marker may come before the sealed end.
            for _ in chunks:
                pass
        except tarfile.TarError as exc:
            raise BackupFormatError(f"the backup's content is damaged ({exc})") from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise BackupDiskFullError("not enough disk space to unpack the backup for verification") from None
            # e.g. a file where its own content needs a directory: refused like any other damage
            raise BackupFormatError("the backup's content is damaged: it cannot be unpacked"
                                    f" ({exc.strerror})") from None
    return header


def _check_member(member: tarfile.TarInfo) -> None:
    if not (member.isfile() or member.isdir()):
        raise BackupFormatError(f"the backup holds {_kind(member)}, which is forbidden: {member.name!r}")
    parts = member.name.split("/")
    if member.name.startswith("/") or ".." in parts or "\\" in member.name:
        raise BackupFormatError(f"the backup holds an entry with a forbidden path: {member.name!r}")


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.ischr() or member.isblk():
        return "a device file"
    if member.isfifo():
        return "a FIFO"
    return "an entry of an unknown kind"


def check_layout(staged: Path) -> None:
    """An extracted backup holds at least the database and its key."""
    layout = paths.DataDir(staged)
    if not layout.db.is_file():
        raise BackupFormatError("the backup holds no database")
    if not layout.db_key.is_file():
        raise BackupFormatError("the backup holds no database key")


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
