"""The backup file format, version 1 (all integers big-endian):

    magic "OUTPOSTB" (8) | version (1) | header length (4) | header (JSON)
    then chunks sealed by `crypto.stream` (length (4) | AES-256-GCM ciphertext + tag)

header = {"kdf": {time_cost, memory_kib, parallelism}, "salt": b64, "nonce_prefix": b64 (7 bytes),
          "chunk_size": int, "created_at": float, "app_version": str}.
The key is argon2id(passphrase, salt) (crypto/kdf.py). The chunks' nonces and associated
data are described in crypto/stream.py; the associated data binds SHA-256 of everything
before the first chunk (magic | version | length | header), so a changed header, a
reordered, dropped, duplicated or altered chunk, a truncation and bytes after the final
chunk are all detected. Memory stays constant: one chunk (1 MiB) at a time.

Must never change: existing backup files must keep restoring byte for byte
(tests/backup/test_format_v1.py).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import io
import os
import secrets
import struct
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import msgspec

from appliance.backup.errors import BackupDiskFullError, BackupError, BackupFormatError
from appliance.crypto import kdf, stream
from appliance.store.atomic import fsync_dir

MAGIC = b"OUTPOSTB"
VERSION = 1
CHUNK = 1 << 20
MAX_HEADER = 4096
SUFFIX = ".opbk"
_LEN = struct.Struct(">I")


class Header(msgspec.Struct, frozen=True, kw_only=True):
    kdf: kdf.KdfParams
    salt: str
    nonce_prefix: str
    chunk_size: int
    created_at: float
    app_version: str


def _header_bytes(header: Header) -> bytes:
    body = msgspec.json.encode(header)
    return MAGIC + bytes([VERSION]) + _LEN.pack(len(body)) + body


def write_backup(out_path: Path, passphrase: bytes, add_files: Callable[[tarfile.TarFile], None], *,
                 app_version: str, params: kdf.KdfParams | None = None, now: float | None = None) -> int:
    """Seal the tar stream produced by `add_files(tar)` into `out_path` atomically; return its size."""
    out_path = Path(out_path)
    params = params or kdf.KdfParams()
    salt = kdf.new_salt()
    header = Header(kdf=params, salt=_b64(salt), nonce_prefix=_b64(secrets.token_bytes(stream.PREFIX_BYTES)),
                    chunk_size=CHUNK, created_at=time.time() if now is None else now, app_version=app_version)
    head = _header_bytes(header)
    key = kdf.derive_key(passphrase, salt, params)
    tmp = out_path.with_name(f".{out_path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb", buffering=CHUNK) as out:
            out.write(head)
            sealer = stream.SealingWriter(out, key, head, _unb64(header.nonce_prefix), CHUNK)
            with tarfile.open(fileobj=sealer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                add_files(tar)
            sealer.finish()
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, out_path)
        fsync_dir(out_path.parent)
    except OSError as exc:
        unlink_quietly(tmp)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise BackupDiskFullError(f"not enough disk space to write the backup in {out_path.parent};"
                                      " nothing was written") from None
        raise BackupError(f"cannot write the backup to {out_path}: {exc.strerror}") from None
    except stream.StreamTooLongError:
        unlink_quietly(tmp)
        raise BackupError("the backup is too large for this format") from None
    except BaseException:
        unlink_quietly(tmp)
        raise
    return out_path.stat().st_size


def read_header(f: BinaryIO) -> tuple[Header, bytes]:
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
    if len(_unb64(header.nonce_prefix)) != stream.PREFIX_BYTES or not 1 <= header.chunk_size <= 16 * CHUNK:
        raise BackupFormatError("the backup header is damaged")
    return header, start + body


def open_chunks(f: BinaryIO, passphrase: bytes) -> Iterator[bytes]:
    """Yield the plaintext chunks of an open backup file, verifying each; raise on any defect."""
    header, head = read_header(f)
    key = kdf.derive_key(passphrase, _unb64(header.salt), header.kdf)
    try:
        yield from stream.open_stream(f, key, head, _unb64(header.nonce_prefix), header.chunk_size)
    except stream.StreamError as exc:
        raise _explain(exc) from None


def open_plaintext(chunks: Iterator[bytes]) -> io.BufferedReader:
    """A buffered, readable stream over verified chunks (for tarfile)."""
    return io.BufferedReader(stream.ChunkReader(chunks), buffer_size=CHUNK)


def _explain(exc: stream.StreamError) -> BackupFormatError:
    """The operator's words for each way a sealed stream fails."""
    if isinstance(exc, stream.StreamTruncatedError):
        if exc.inside_chunk:
            return BackupFormatError("the backup file is truncated (it ends inside a chunk)")
        if exc.partial_length and not exc.seq:
            return BackupFormatError("the backup file is truncated")
        return BackupFormatError("the backup file is truncated (it ends before its last chunk)")
    if isinstance(exc, stream.StreamChunkLengthError):
        return BackupFormatError(f"the backup file is damaged (chunk {exc.seq} has an impossible length)")
    if isinstance(exc, stream.StreamChunkError):
        if exc.seq == 0:
            return BackupFormatError("the passphrase is wrong, or the backup's header or first chunk is damaged")
        return BackupFormatError(f"the backup file is damaged or was altered (chunk {exc.seq} does not verify)")
    if isinstance(exc, stream.StreamTrailingDataError):
        return BackupFormatError("the backup file has extra bytes after its last chunk (damaged or altered)")
    return BackupFormatError("the backup file is damaged")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def unlink_quietly(path: Path) -> None:
    """Remove a file if it is there (a temp file on the failure path, a pruned backup)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
