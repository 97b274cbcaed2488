"""Encrypted single-file backups and verified, atomic restore (UPD-5).

File format (version 1), all integers big-endian:

    magic "OUTPOSTB" (8) | version (1) | header length (4) | header (JSON)
    then chunks: length of ciphertext (4) | AES-256-GCM ciphertext + tag

header = {"kdf": {time_cost, memory_kib, parallelism}, "salt": b64, "nonce_prefix": b64 (7 bytes),
          "chunk_size": int, "created_at": float, "app_version": str}.
The key is argon2id(passphrase, salt) (crypto/kdf.py). Chunk i (from 0) is sealed with
nonce = nonce_prefix | i (4 bytes) | final flag (1 byte) and associated data =
SHA-256(magic | version | header) | i (8 bytes) | final flag, so a changed header, a
reordered, dropped, duplicated or altered chunk, a truncation (no chunk flagged final)
and bytes after the final chunk are all detected. Memory stays constant: one chunk
(1 MiB) at a time.

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

Restore (server stopped): decrypt and extract the WHOLE file into a staging directory
next to the target, check every chunk, the tar structure and that the database opens
with its key; only then rename the current data directory aside, rename the staged one
into place, and delete the old one. Any failure before the renames leaves the target
untouched and removes the staging directory.

Invariants (what must never happen):
- A backup that does not fully verify changes anything in the target data directory.
- Plaintext of the backup reaches disk outside the 0700 staging directory, or a
  passphrase or key reaches a message or log.
- A partial backup file is left under its final name (temp file, fsync, rename).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import logging
import os
import secrets
import shutil
import struct
import tarfile
import time
from pathlib import Path
from typing import Callable, Iterator

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.crypto import kdf
from appliance.errors import OutpostError
from appliance.store import DiskFullError
from appliance.store.atomic import fsync_dir

MAGIC = b"OUTPOSTB"
VERSION = 1
CHUNK = 1 << 20
MAX_HEADER = 4096
SUFFIX = ".opbk"
INCLUDED_DIRS = ("keys", "tls", "recordings")
DB_FILE = "outpost.db"
CONFIG_NAME = "config.toml"
RESTORED_CONFIG = "config-from-backup.toml"
_LEN = struct.Struct(">I")
SCHEDULE_RETRY_SECONDS = 900.0  # after a failed scheduled backup
_log = logging.getLogger("outpost.backup")


class BackupError(OutpostError):
    """A backup cannot be written or a backup file cannot be restored; the message says why."""

    code = "backup_error"
    status = 400


class BackupFormatError(BackupError):
    """Not a backup, an unsupported version, damaged, truncated, or the wrong passphrase."""

    code = "backup_invalid"


class BackupDiskFullError(BackupError):
    code = "backup_disk_full"
    status = 507


class Header(msgspec.Struct, frozen=True, kw_only=True):
    kdf: kdf.KdfParams
    salt: str
    nonce_prefix: str
    chunk_size: int
    created_at: float
    app_version: str


# -- sealing -------------------------------------------------------------------------------

class _SealingWriter(io.RawIOBase):
    """A write-only stream that seals everything written to it, chunk by chunk, into `out`."""

    def __init__(self, out, key: bytes, header_bytes: bytes, prefix: bytes, chunk: int) -> None:
        self._out, self._aead, self._prefix, self._chunk = out, AESGCM(key), prefix, chunk
        self._digest = hashlib.sha256(header_bytes).digest()
        self._buf = bytearray()
        self._seq = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._buf += data
        while len(self._buf) > self._chunk:  # keep at least one byte back for the final chunk
            self._emit(bytes(self._buf[:self._chunk]), final=False)
            del self._buf[:self._chunk]
        return len(data)

    def finish(self) -> None:
        self._emit(bytes(self._buf), final=True)
        self._buf.clear()

    def _emit(self, plain: bytes, *, final: bool) -> None:
        nonce, aad = _nonce_aad(self._prefix, self._digest, self._seq, final)
        sealed = self._aead.encrypt(nonce, plain, aad)
        self._out.write(_LEN.pack(len(sealed)) + sealed)
        self._seq += 1


def _nonce_aad(prefix: bytes, digest: bytes, seq: int, final: bool) -> tuple[bytes, bytes]:
    if seq >= 2**32:
        raise BackupError("the backup is too large for this format")
    flag = b"\x01" if final else b"\x00"
    return prefix + struct.pack(">I", seq) + flag, digest + struct.pack(">Q", seq) + flag


def _header_bytes(header: Header) -> bytes:
    body = msgspec.json.encode(header)
    return MAGIC + bytes([VERSION]) + _LEN.pack(len(body)) + body


def write_backup(out_path: Path, passphrase: bytes, add_files: Callable[[tarfile.TarFile], None], *,
                 app_version: str, params: kdf.KdfParams | None = None, now: float | None = None) -> int:
    """Seal the tar stream produced by `add_files(tar)` into `out_path` atomically; return its size."""
    out_path = Path(out_path)
    params = params or kdf.KdfParams()
    salt = kdf.new_salt()
    header = Header(kdf=params, salt=_b64(salt), nonce_prefix=_b64(secrets.token_bytes(7)), chunk_size=CHUNK,
                    created_at=time.time() if now is None else now, app_version=app_version)
    head = _header_bytes(header)
    key = kdf.derive_key(passphrase, salt, params)
    tmp = out_path.with_name(f".{out_path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb", buffering=CHUNK) as out:
            out.write(head)
            sealer = _SealingWriter(out, key, head, _unb64(header.nonce_prefix), CHUNK)
            with tarfile.open(fileobj=sealer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                add_files(tar)
            sealer.finish()
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, out_path)
        fsync_dir(out_path.parent)
    except OSError as exc:
        _unlink(tmp)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise BackupDiskFullError(f"not enough disk space to write the backup in {out_path.parent};"
                                      " nothing was written") from None
        raise BackupError(f"cannot write the backup to {out_path}: {exc.strerror}") from None
    except BaseException:
        _unlink(tmp)
        raise
    return out_path.stat().st_size


# -- opening -------------------------------------------------------------------------------

def read_header(f) -> tuple[Header, bytes]:
    """Parse and check the header; BackupFormatError with the reason if it is not usable."""
    start = f.read(len(MAGIC) + 1 + _LEN.size)
    if len(start) < len(MAGIC) or start[:len(MAGIC)] != MAGIC:
        raise BackupFormatError("this is not an Outpost backup file (wrong magic bytes)")
    if len(start) < len(MAGIC) + 1 + _LEN.size:
        raise BackupFormatError("the backup file is truncated (incomplete header)")
    version = start[len(MAGIC)]
    if version != VERSION:
        raise BackupFormatError(f"the backup uses format version {version}; this appliance reads version {VERSION}")
    (length,) = _LEN.unpack(start[len(MAGIC) + 1:])
    if length > MAX_HEADER:
        raise BackupFormatError("the backup header is damaged (impossible length)")
    body = f.read(length)
    if len(body) != length:
        raise BackupFormatError("the backup file is truncated (incomplete header)")
    try:
        header = msgspec.json.decode(body, type=Header)
        _unb64(header.salt), _unb64(header.nonce_prefix)
        header.kdf.check()
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, kdf.KdfError):
        raise BackupFormatError("the backup header is damaged") from None
    if len(_unb64(header.nonce_prefix)) != 7 or not 1 <= header.chunk_size <= 16 * CHUNK:
        raise BackupFormatError("the backup header is damaged")
    return header, start + body


def open_chunks(f, passphrase: bytes) -> Iterator[bytes]:
    """Yield the plaintext chunks of an open backup file, verifying each; raise on any defect."""
    header, head = read_header(f)
    key = kdf.derive_key(passphrase, _unb64(header.salt), header.kdf)
    aead, prefix, digest = AESGCM(key), _unb64(header.nonce_prefix), hashlib.sha256(head).digest()
    seq = 0
    limit = header.chunk_size + 16
    while True:
        raw = f.read(_LEN.size)
        if len(raw) < _LEN.size:
            raise BackupFormatError("the backup file is truncated (it ends before its last chunk)"
                                    if not raw or seq else "the backup file is truncated")
        (length,) = _LEN.unpack(raw)
        if not 16 <= length <= limit:
            raise BackupFormatError(f"the backup file is damaged (chunk {seq} has an impossible length)")
        sealed = f.read(length)
        if len(sealed) != length:
            raise BackupFormatError("the backup file is truncated (it ends inside a chunk)")
        plain = None
        for final in (False, True):
            nonce, aad = _nonce_aad(prefix, digest, seq, final)
            try:
                plain = aead.decrypt(nonce, sealed, aad)
                break
            except InvalidTag:
                continue
        if plain is None:
            if seq == 0:
                raise BackupFormatError("the passphrase is wrong, or the backup's header or first chunk is damaged")
            raise BackupFormatError(f"the backup file is damaged or was altered (chunk {seq} does not verify)")
        yield plain
        seq += 1
        if final:
            if f.read(1):
                raise BackupFormatError("the backup file has extra bytes after its last chunk (damaged or altered)")
            return


class _ChunkReader(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._buf = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def extract(backup: Path, passphrase: bytes, dest: Path) -> Header:
    """Verify the whole backup while extracting it into the empty directory `dest` (0700)."""
    with open(backup, "rb") as f:
        header, _ = read_header(f)
        f.seek(0)
        chunks = open_chunks(f, passphrase)
        reader = io.BufferedReader(_ChunkReader(chunks), buffer_size=CHUNK)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                for member in tar:
                    if not (member.isfile() or member.isdir()):
                        raise BackupFormatError(f"the backup holds {_kind(member)}, which is forbidden: {member.name!r}")
                    parts = member.name.split("/")
                    if member.name.startswith("/") or ".." in parts or "\\" in member.name:
                        raise BackupFormatError(f"the backup holds an entry with a forbidden path: {member.name!r}")
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
            raise BackupFormatError(f"the backup's content is damaged: it cannot be unpacked ({exc.strerror})") from None
    return header


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


# -- helpers -------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# -- what goes in, and restore ------------------------------------------------------------

def create(db, data_dir: Path, out_path: Path, passphrase: bytes, *, config_path: Path | None,
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

        return write_backup(out_path, passphrase, add, app_version=app_version, params=params)
    finally:
        remove_tree(work)


def _add_tree(tar: tarfile.TarFile, root: Path, arcname: str) -> None:
    tar.add(root, arcname, recursive=False)
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not (path.is_file() or path.is_dir()) or path.name.endswith(".tmp"):
            continue  # only regular files and directories travel
        tar.add(path, f"{arcname}/{path.relative_to(root).as_posix()}", recursive=False)


def verify(backup: Path, passphrase: bytes, scratch_parent: Path) -> Header:
    """Decrypt and check a whole backup in a scratch directory, then delete the scratch copy."""
    scratch = Path(scratch_parent) / f".verify-{secrets.token_hex(6)}"
    scratch.mkdir(mode=0o700)
    try:
        header = extract(backup, passphrase, scratch)
        _check_layout(scratch)
        return header
    finally:
        remove_tree(scratch)


def _check_layout(staged: Path) -> None:
    if not (staged / DB_FILE).is_file():
        raise BackupFormatError("the backup holds no database")
    if not (staged / "keys" / "db.key").is_file():
        raise BackupFormatError("the backup holds no database key")


def restore(backup: Path, data_dir: Path, passphrase: bytes, *,
            check_open: Callable[[Path], None] | None = None) -> Header:
    """Replace `data_dir` with the backup's content, only after it verified completely.

    `check_open(staged_dir)` may open the staged database to prove the key opens it
    (raise to refuse). The current directory is renamed aside and deleted only after
    the staged one is in place; on any failure before that, nothing changed.
    """
    backup, data_dir = Path(backup), Path(data_dir).absolute()
    if not backup.is_file():
        raise BackupError(f"the backup file {backup} does not exist")
    parent = data_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    staged = parent / f".{data_dir.name}.restore-{secrets.token_hex(6)}"
    staged.mkdir(mode=0o700)
    try:
        header = extract(backup, passphrase, staged)
        _check_layout(staged)
        if (staged / CONFIG_NAME).exists():
            os.replace(staged / CONFIG_NAME, staged / RESTORED_CONFIG)
        for path in [staged, *staged.rglob("*")]:
            os.chmod(path, 0o700 if path.is_dir() else 0o600)
        if check_open is not None:
            check_open(staged)
        for leftover in staged.glob(f"{DB_FILE}.pre-*"):
            leftover.unlink()  # a check_open that migrated leaves a snapshot; it is not part of the backup
        if data_dir.is_dir():
            _link_other_entries(data_dir, staged)
        _sync_tree(staged)
    except BaseException:
        remove_tree(staged)
        raise
    old = parent / f".{data_dir.name}.old-{secrets.token_hex(6)}"
    had_old = data_dir.exists()
    if had_old:
        os.rename(data_dir, old)
    try:
        os.rename(staged, data_dir)
    except BaseException:
        if had_old:
            os.rename(old, data_dir)
        remove_tree(staged)
        raise
    fsync_dir(parent)
    if had_old:
        remove_tree(old)
    return header


def _link_other_entries(current: Path, staged: Path) -> None:
    """Carry over what a backup does not hold (e.g. installed update slots) by hard links.

    Links, not moves: the current directory stays complete until the swap.
    """
    replaced = {DB_FILE, f"{DB_FILE}-wal", f"{DB_FILE}-shm", *INCLUDED_DIRS, "setup-code", RESTORED_CONFIG}
    for entry in current.iterdir():
        if entry.name in replaced or entry.name.startswith(f"{DB_FILE}.pre-") or entry.name.startswith("."):
            continue
        target = staged / entry.name
        if entry.is_symlink() or target.exists():
            continue
        if entry.is_file():
            os.link(entry, target)
        elif entry.is_dir():
            shutil.copytree(entry, target, copy_function=os.link, symlinks=True)


def _sync_tree(root: Path) -> None:
    for path in [*root.rglob("*")]:
        if path.is_file():
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for path in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        fsync_dir(path)


# -- scheduled backups ---------------------------------------------------------------------

def scheduled_name(now: float) -> str:
    return "outpost-backup-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + SUFFIX


def list_backups(directory: Path) -> list[Path]:
    """Scheduled backup files in `directory`, oldest first (names sort by time)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(f"outpost-backup-*{SUFFIX}") if p.is_file())


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete the oldest scheduled backups beyond `keep`; return what was deleted."""
    files = list_backups(directory)
    doomed = files[:-keep] if keep > 0 else files
    for path in doomed:
        _unlink(path)
    return doomed


def due(directory: Path, interval_hours: int, now: float) -> bool:
    files = list_backups(directory)
    return not files or files[-1].stat().st_mtime + interval_hours * 3600 <= now


# -- the service the web UI, the CLI and the scheduler use --------------------------------

class BackupJob(msgspec.Struct, kw_only=True):
    """A backup started from the UI, followed by polling."""

    id: str
    state: str = "running"  # running | done | failed
    started_at: float = 0.0
    file: str = ""
    size: int = 0
    error: str = ""
    owner: str = ""  # the session that started it (web layer: only it may download the file)
    proved_at: float = 0.0  # when that session last proved who it is for this job (password + code)


class BackupService:
    """On-demand and scheduled backups of a running appliance, each audited (BAK codes)."""

    UI_DIR = "backups"
    UI_KEEP = 3

    def __init__(self, db, data_dir: Path, config, clock, *, config_path: Path | None, app_version: str) -> None:
        self._db, self._dir, self._config, self._clock = db, Path(data_dir), config, clock
        self._config_path, self._version = config_path, app_version
        self.jobs: dict[str, BackupJob] = {}

    def create(self, out_path: Path, passphrase: bytes, *, actor, via: str, params: kdf.KdfParams | None = None) -> int:
        """Write a backup (blocking: call from a thread); audited as backup.create or backup.failure."""
        from appliance.audit import log as audit

        try:
            kdf.check_new_passphrase(passphrase)  # the one minimum: CLI, UI and scheduler all come here
            size = create(self._db, self._dir, Path(out_path), passphrase, config_path=self._config_path,
                          app_version=self._version, params=params)
        except OutpostError as exc:
            self._db.write_sync(lambda conn: audit.record(conn, ts=self._clock.now(), action="backup.failure", actor=actor,
                                                          outcome="failure", target=Path(out_path).name,
                                                          details={"via": via, "reason": exc.code}))
            raise
        self._db.write_sync(lambda conn: audit.record(conn, ts=self._clock.now(), action="backup.create", actor=actor,
                                                      target=Path(out_path).name, details={"via": via, "bytes": size}))
        return size

    # UI jobs: the file goes to [backup] directory, or <data dir>/backups, for download.
    def output_dir(self) -> Path:
        directory = Path(self._config.directory) if self._config.directory else self._dir / self.UI_DIR
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return directory

    def start_job(self, passphrase: bytes, *, actor, owner: str = "", proved_at: float = 0.0,
                  params: kdf.KdfParams | None = None) -> BackupJob:
        import threading

        kdf.check_new_passphrase(passphrase)  # at once, so the form can say so (create() checks again)
        if any(j.state == "running" for j in self.jobs.values()):
            raise BackupError("a backup is already running; wait for it to finish")
        job = BackupJob(id=secrets.token_urlsafe(12), started_at=self._clock.now(), owner=owner, proved_at=proved_at)
        self.jobs = {k: v for k, v in self.jobs.items() if v.state == "running"} | {job.id: job}
        out = self.output_dir() / scheduled_name(self._clock.now())

        def run() -> None:
            try:
                job.size = self.create(out, passphrase, actor=actor, via="ui", params=params)
                job.file, job.state = out.name, "done"
                if not self._config.directory:
                    prune(self.output_dir(), self.UI_KEEP)
            except OutpostError as exc:
                job.error, job.state = exc.message, "failed"
            except Exception:  # noqa: BLE001 - reported to the user, never silently lost
                job.error, job.state = "the backup failed unexpectedly; see the appliance log", "failed"

        threading.Thread(target=run, name="outpost-backup", daemon=True).start()
        return job

    def download_path(self, job: BackupJob) -> Path | None:
        """The file a finished job wrote, or None (failed, running, or pruned since)."""
        if job.state != "done" or not job.file:
            return None
        path = self.output_dir() / job.file
        return path if path.is_file() else None

    async def scheduler(self) -> None:
        """Run forever: a backup into [backup] directory every interval_hours, keeping `keep`."""
        import asyncio

        from appliance.audit.models import Actor

        if not self._config.directory:
            return
        while True:
            directory = Path(self._config.directory)
            wait = 60.0
            try:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                if due(directory, self._config.interval_hours, self._clock.now()):
                    passphrase = read_passphrase_file(Path(self._config.passphrase_file))
                    out = directory / scheduled_name(self._clock.now())
                    await asyncio.to_thread(self.create, out, passphrase, actor=Actor.system(), via="schedule")
                    prune(directory, self._config.keep)
            except (OutpostError, OSError) as exc:
                # create() audited it as backup.failure; the log says why, so the admin can fix it.
                # Retried less often, so a lasting problem does not flood the audit log.
                reason = exc.message if isinstance(exc, OutpostError) else (exc.strerror or str(exc))
                _log.error("scheduled backup failed", extra={"reason": reason})
                wait = SCHEDULE_RETRY_SECONDS
            await asyncio.sleep(wait)


def read_passphrase_file(path: Path) -> bytes:
    """A passphrase from a file readable by its owner only; one trailing newline is ignored."""
    try:
        st = os.stat(path)
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BackupError(f"cannot read the passphrase file {path}: {exc.strerror}") from None
    if st.st_mode & 0o077:
        raise BackupError(f"the passphrase file {path} is readable by group or others; chmod 600 it first")
    if data.endswith(b"\n"):
        data = data[:-1]
        if data.endswith(b"\r"):
            data = data[:-1]
    if not data:
        raise BackupError(f"the passphrase file {path} is empty")
    return data
