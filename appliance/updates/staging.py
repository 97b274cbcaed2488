"""Copy a bundle from removable media into the staging directory, once (UPD-2).

Invariants (what must never happen):
- A symlink, FIFO, device or directory is read: the source must be a regular file by
  lstat and by fstat of the descriptor we read (O_NOFOLLOW | O_NONBLOCK, so a FIFO
  cannot block us).
- An oversize file is read at all: refused by stat before opening; the copy itself is
  capped at the stat size + 1 bytes, so a file growing underneath cannot fill the disk.
- A file that changed while being read is used: size, mtime and inode are compared
  before and after, and the number of bytes copied must equal the size.
- A staged copy outlives a refusal (it is removed), or is readable by others (0600).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from appliance.errors import OutpostError

CHUNK = 1 << 20
STAGED_NAME = "bundle.opkg"


class StagingError(OutpostError):
    code = "update_staging"


class Staged:
    def __init__(self, path: Path, size: int, sha256: str) -> None:
        self.path, self.size, self.sha256 = path, size, sha256


def clean(staging_dir: Path) -> None:
    """Remove everything staged before (leftovers of an interrupted run)."""
    if staging_dir.is_dir():
        for entry in staging_dir.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def stage(source: Path, staging_dir: Path, *, max_bytes: int,
          progress: Callable[[int], None] | None = None) -> Staged:
    """Copy `source` into `staging_dir`; StagingError with a plain reason on any refusal."""
    source = Path(source)
    try:
        before = os.lstat(source)
    except FileNotFoundError:
        raise StagingError(f"{source}: no such file") from None
    except OSError as exc:
        raise StagingError(f"{source}: cannot be read ({exc.strerror})") from None
    if stat.S_ISLNK(before.st_mode):
        raise StagingError(f"{source} is a symbolic link; copy the bundle file itself")
    if not stat.S_ISREG(before.st_mode):
        raise StagingError(f"{source} is not a regular file (a device, FIFO or directory)")
    if before.st_size > max_bytes:
        raise StagingError(f"the bundle is {before.st_size} bytes, larger than the limit of {max_bytes} bytes "
                           "([updates] max_bundle_bytes); it was not read")
    staging_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    clean(staging_dir)
    free = _free_bytes(staging_dir)
    if free < before.st_size:
        raise StagingError(f"not enough disk space to stage the update: it needs {before.st_size} bytes, "
                           f"{free} bytes are free in {staging_dir}")
    target = staging_dir / STAGED_NAME
    try:
        digest = _copy(source, target, before, max_bytes, progress)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return Staged(target, before.st_size, digest)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_dev, a.st_size, a.st_mtime_ns) == (b.st_ino, b.st_dev, b.st_size, b.st_mtime_ns)


def _copy(source: Path, target: Path, before: os.stat_result, max_bytes: int, progress) -> str:
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise StagingError(f"{source}: cannot be opened ({exc.strerror})") from None
    digest, copied = hashlib.sha256(), 0
    with os.fdopen(fd, "rb") as src:
        opened = os.fstat(src.fileno())
        if not stat.S_ISREG(opened.st_mode) or not _same(before, opened):
            raise StagingError(f"{source} changed or was replaced while it was being opened")
        out_fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(out_fd, "wb") as out:
            try:
                limit = min(before.st_size, max_bytes) + 1  # one byte more reveals growth
                while copied < limit:
                    chunk = src.read(min(CHUNK, limit - copied))
                    if not chunk:
                        break
                    digest.update(chunk)
                    out.write(chunk)
                    copied += len(chunk)
                    if progress:
                        progress(copied)
                out.flush()
                os.fsync(out.fileno())
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise StagingError(f"not enough disk space to stage the update in {target.parent}") from None
                raise StagingError(f"copying the bundle failed: {exc.strerror}") from None
        after = os.fstat(src.fileno())
    try:
        again = os.lstat(source)
    except OSError:
        raise StagingError(f"{source} disappeared while it was being read") from None
    if copied != before.st_size or not _same(before, after) or not _same(before, again):
        raise StagingError(f"{source} changed while it was being read; copy it again and retry")
    return digest.hexdigest()
