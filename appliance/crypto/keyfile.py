"""The database key file (STORE-2): a random 256-bit key in `keys/db.key`.

Format: the key as 64 lowercase hex characters followed by one newline (65 bytes).
Text rather than raw bytes so a truncated, padded or wrong file is recognisable
and an operator can tell a key file from anything else. With `[store] key_source =
"passphrase"` the file instead holds the key wrapped by an operator passphrase
(one line starting "outpost-wrapped-key v1", see crypto/kdf.py).

Rotation (`outpost rekey`) writes the new key as `db.key.new` first and renames it
over `db.key` only after the database was re-encrypted (`replace_key`).

Invariants (what must never happen):
- An existing key file is never overwritten: losing it makes the database unreadable.
- The key never reaches disk readable by group/others, and a half-written key file is
  never visible under its final name (temp file in the same directory, fsync, link).
- A key file readable by group/others, or with the wrong content, is refused, not used.
- Key bytes never appear in an exception message or a log line.

This module implements its own atomic create rather than using `store.atomic`:
`crypto` and `store` sit on the same layer and do not import each other, and
creating a key needs "fail if it exists" semantics that a rename cannot give.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from appliance.crypto import kdf
from appliance.errors import OutpostError

KEY_BYTES = 32
_FILE_BYTES = 2 * KEY_BYTES + 1  # hex + "\n"


class KeyFileError(OutpostError):
    """The database key file cannot be created or used."""

    code = "key_file_error"
    status = 500


class MissingKeyError(KeyFileError):
    code = "key_file_missing"


class BadKeyFileError(KeyFileError):
    """Wrong length, wrong content, not a regular file, or too open a mode."""

    code = "key_file_invalid"


class KeyFileExistsError(KeyFileError):
    code = "key_file_exists"


def create_key(path: Path, passphrase: bytes | None = None) -> bytes:
    """Create `path` holding a new random 256-bit key and return the key.

    With `passphrase` the file holds the key wrapped by it (argon2id + AES-256-GCM).
    The parent directory is created with mode 0700 if missing. Raises
    `KeyFileExistsError` if `path` already exists (never overwrites).
    """
    key = secrets.token_bytes(KEY_BYTES)
    write_new_key(path, key, passphrase)
    return key


def encode_key(key: bytes, passphrase: bytes | None = None) -> bytes:
    """The file content for `key`: hex line, or the passphrase-wrapped line."""
    if passphrase is not None:
        return kdf.wrap_key(key, passphrase)
    return key.hex().encode("ascii") + b"\n"


def write_new_key(path: Path, key: bytes, passphrase: bytes | None = None) -> None:
    """Create `path` (must not exist) holding `key`, durably (file and directory fsynced)."""
    path = Path(path)
    content = encode_key(key, passphrase)
    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True)
        os.chmod(parent, 0o700)  # mkdir's mode is filtered by the umask
        _fsync_dir(parent.parent)
    if path.exists() or path.is_symlink():
        raise KeyFileExistsError(f"database key file {path} already exists; refusing to overwrite it")
    tmp = parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            _write_all(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            # link() fails with EEXIST instead of replacing, unlike rename(): a key that
            # appeared meanwhile (another process) is never clobbered.
            os.link(tmp, path)
        except FileExistsError:
            raise KeyFileExistsError(f"database key file {path} already exists; refusing to overwrite it") from None
    finally:
        _unlink_quietly(tmp)
    _fsync_dir(parent)


def replace_key(new_path: Path, path: Path) -> None:
    """Atomically rename `new_path` over `path` (the last step of a key rotation), durably."""
    os.replace(new_path, path)
    _fsync_dir(Path(path).parent)


def fsync_parent(path: Path) -> None:
    """Make a removal or rename in `path`'s directory durable."""
    _fsync_dir(Path(path).parent)


def is_wrapped(path: Path) -> bool:
    """True if the key file at `path` holds a passphrase-wrapped key."""
    try:
        with open(path, "rb") as f:
            return kdf.is_wrapped(f.read(len(kdf.WRAP_PREFIX)))
    except OSError:
        return False


def source_of(path: Path) -> str:
    """The [store] key_source the key file at `path` is in: "passphrase" if wrapped, else "file"."""
    return "passphrase" if is_wrapped(path) else "file"


def load_key(path: Path, passphrase: Callable[[], bytes] | None = None) -> bytes:
    """Read and validate the key in `path`; return the 32 raw key bytes.

    A wrapped key is unwrapped with `passphrase()` (called only then; e.g. a console
    prompt). Raises `kdf.WrongPassphraseError` for a wrong passphrase.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise MissingKeyError(
            f"database key file {path} is missing; the database cannot be opened without it"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"database key file {path} cannot be read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadKeyFileError(f"database key file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise BadKeyFileError(
                f"database key file {path} has mode {stat.S_IMODE(st.st_mode):04o}, open to group or others;"
                f" it must be 0600 (chmod 600 {path}) before the appliance will use it"
            )
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    if kdf.is_wrapped(data):
        if passphrase is None:
            raise KeyFileError(f"database key file {path} is protected by a passphrase, and none was given")
        return kdf.unwrap_key(data, passphrase())
    return _parse(path, data)


def _parse(path: Path, data: bytes) -> bytes:
    # Messages describe the shape of the content only, never the content itself.
    text = data[:-1] if data.endswith(b"\n") else data
    if len(text) != 2 * KEY_BYTES:
        raise BadKeyFileError(
            f"database key file {path} is damaged: expected {2 * KEY_BYTES} hex characters and a newline,"
            f" found {len(data)} bytes"
        )
    try:
        return bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise BadKeyFileError(f"database key file {path} is damaged: it does not contain a hex key") from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_dir(directory: Path) -> None:
    # Makes the new directory entry itself durable (a file fsync does not).
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
