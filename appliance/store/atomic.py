"""Atomic file replacement for secrets, certificates and snapshots.

Invariants (what must never happen):
- A reader (or a restart after a crash or power loss) never sees a partly written
  file under the final name: it sees the old content or the new content.
- The new file is never readable by group/others, even for an instant: it is
  created with `mode` (0600 by default) before any byte is written.
- A temp file is never left behind after an error we can observe.

How: temp file in the same directory (so rename is atomic on one filesystem),
O_EXCL, write, fsync the file, rename over the target, fsync the directory
(rename is only durable once the directory entry is).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

_COPY_CHUNK = 1 << 20


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` atomically and durably; the file gets `mode`."""
    _replace_with(Path(path), mode, lambda out: out.write(data))


def copy_atomic(src: Path, dst: Path, mode: int = 0o600) -> None:
    """Replace `dst` with a copy of `src` (streamed, constant memory), atomically and durably.

    Never on a database file SQLite has open in this process: closing our descriptor would
    drop SQLite's POSIX locks on it. Use `Database.snapshot` for that.
    """
    with open(src, "rb") as source:
        _replace_with(Path(dst), mode, lambda out: shutil.copyfileobj(source, out, _COPY_CHUNK))


@contextlib.contextmanager
def private_writer(path: Path, mode: int = 0o600) -> Iterator[BinaryIO]:
    """Stream into a new file that replaces `path` atomically when the block ends without error
    (constant memory: for exports and other large outputs). Same guarantees as write_atomic."""
    with _open_replacement(Path(path), mode) as out:
        yield out


def fsync_dir(directory: Path) -> None:
    """fsync a directory so that entries created, renamed or removed in it are durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_with(path: Path, mode: int, fill: Callable[[BinaryIO], object]) -> None:
    with _open_replacement(path, mode) as out:
        fill(out)


@contextlib.contextmanager
def _open_replacement(path: Path, mode: int) -> Iterator[BinaryIO]:
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)  # the umask filtered os.open's mode; make it exact
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
