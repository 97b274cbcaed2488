"""Streaming authenticated encryption: AES-256-GCM over fixed-size chunks (STREAM construction).

Used by encrypted backups (backup/format.py), whose file format fixes every byte here:

    chunk i (from 0): length of ciphertext (4, big-endian) | AES-256-GCM ciphertext + tag (16)
    nonce            = prefix (7) | i (4, big-endian) | final flag (1)
    associated data  = SHA-256(header) | i (8, big-endian) | final flag (1)

`header` is whatever the caller wrote before the first chunk (magic, version, parameters):
binding its digest into every chunk detects a changed header. The final flag is 1 on the
last chunk only, so a reordered, dropped, duplicated or altered chunk, a truncation (no
chunk flagged final) and bytes after the final chunk are all detected (Hoang, Reyhanitabar,
Rogaway, Vizar, "Online Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance",
CRYPTO 2015). Memory stays constant: one chunk at a time.

Invariants (what must never happen):
- A chunk is returned to the reader before it verified, or after a chunk that did not.
- Two chunks are sealed under the same nonce with one key: the sequence number is part of
  the nonce and cannot wrap (2**32 chunks at most); callers use a fresh key or prefix per stream.
- A key or plaintext appears in an exception message.
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections.abc import Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX_BYTES = 7
TAG_BYTES = 16
MAX_CHUNKS = 2**32
_LEN = struct.Struct(">I")


class StreamError(ValueError):
    """A sealed stream cannot be written or read; subclasses name the failure mode."""


class StreamTooLongError(StreamError):
    """More than MAX_CHUNKS chunks: the sequence number would wrap and repeat a nonce."""


class StreamTruncatedError(StreamError):
    """The stream ends early: `inside_chunk` if within a chunk; `partial_length` if within a length field."""

    def __init__(self, seq: int, *, inside_chunk: bool = False, partial_length: bool = False) -> None:
        super().__init__(f"the stream is truncated at chunk {seq}")
        self.seq, self.inside_chunk, self.partial_length = seq, inside_chunk, partial_length


class StreamChunkLengthError(StreamError):
    """A chunk's length field is impossible (shorter than a tag or longer than a chunk)."""

    def __init__(self, seq: int) -> None:
        super().__init__(f"chunk {seq} has an impossible length")
        self.seq = seq


class StreamChunkError(StreamError):
    """A chunk does not verify. For chunk 0 the key may be wrong (a wrong passphrase looks like this)."""

    def __init__(self, seq: int) -> None:
        super().__init__(f"chunk {seq} does not verify")
        self.seq = seq


class StreamTrailingDataError(StreamError):
    """Bytes follow the chunk flagged final."""

    def __init__(self) -> None:
        super().__init__("bytes follow the final chunk")


def nonce_and_aad(prefix: bytes, digest: bytes, seq: int, final: bool) -> tuple[bytes, bytes]:
    """The nonce and associated data of chunk `seq` (see the module docstring)."""
    if seq >= MAX_CHUNKS:
        raise StreamTooLongError(f"a sealed stream holds at most {MAX_CHUNKS} chunks")
    flag = b"\x01" if final else b"\x00"
    return prefix + struct.pack(">I", seq) + flag, digest + struct.pack(">Q", seq) + flag


class SealingWriter(io.RawIOBase):
    """A write-only stream that seals everything written to it, chunk by chunk, into `out`.

    Call `finish()` once at the end: it seals the (possibly empty) final chunk.
    """

    def __init__(self, out: BinaryIO, key: bytes, header: bytes, prefix: bytes, chunk: int) -> None:
        if len(prefix) != PREFIX_BYTES:
            raise StreamError(f"the nonce prefix must be {PREFIX_BYTES} bytes")
        self._out, self._aead, self._prefix, self._chunk = out, AESGCM(key), prefix, chunk
        self._digest = hashlib.sha256(header).digest()
        self._buf = bytearray()
        self._seq = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # data: any bytes-like object, as io.RawIOBase.write takes
        self._buf += data
        while len(self._buf) > self._chunk:  # keep at least one byte back for the final chunk
            self._emit(bytes(self._buf[:self._chunk]), final=False)
            del self._buf[:self._chunk]
        return len(data)

    def finish(self) -> None:
        self._emit(bytes(self._buf), final=True)
        self._buf.clear()

    def _emit(self, plain: bytes, *, final: bool) -> None:
        nonce, aad = nonce_and_aad(self._prefix, self._digest, self._seq, final)
        sealed = self._aead.encrypt(nonce, plain, aad)
        self._out.write(_LEN.pack(len(sealed)) + sealed)
        self._seq += 1


def open_stream(f: BinaryIO, key: bytes, header: bytes, prefix: bytes, chunk_size: int) -> Iterator[bytes]:
    """Yield the plaintext chunks that follow `header` in `f`, each only after it verified.

    Raises a StreamError subclass on any defect, at the chunk where it is found; after the
    final chunk, checks that nothing follows it.
    """
    aead, digest = AESGCM(key), hashlib.sha256(header).digest()
    limit = chunk_size + TAG_BYTES
    seq = 0
    while True:
        raw = f.read(_LEN.size)
        if len(raw) < _LEN.size:
            raise StreamTruncatedError(seq, partial_length=bool(raw))
        (length,) = _LEN.unpack(raw)
        if not TAG_BYTES <= length <= limit:
            raise StreamChunkLengthError(seq)
        sealed = f.read(length)
        if len(sealed) != length:
            raise StreamTruncatedError(seq, inside_chunk=True)
        plain, final = _open_chunk(aead, prefix, digest, seq, sealed)
        yield plain
        seq += 1
        if final:
            if f.read(1):
                raise StreamTrailingDataError()
            return


def _open_chunk(aead: AESGCM, prefix: bytes, digest: bytes, seq: int, sealed: bytes) -> tuple[bytes, bool]:
    for final in (False, True):
        nonce, aad = nonce_and_aad(prefix, digest, seq, final)
        try:
            return aead.decrypt(nonce, sealed, aad), final
        except InvalidTag:
            continue
    raise StreamChunkError(seq)


class ChunkReader(io.RawIOBase):
    """A readable stream over an iterator of byte chunks (e.g. `open_stream`), for tarfile."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._buf = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # b: a writable buffer, as io.RawIOBase.readinto takes
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n
