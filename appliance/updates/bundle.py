"""The bundle file format (UPD-1): one file, our own minimal layout, no archive library.

    b"OUTPOST\\x01" | u32 big-endian header length | header | payload blobs

The header is the canonical msgspec JSON of `Envelope` (manifest bytes, signatures,
signing-key certificates); the blobs follow, concatenated in manifest order, and the
file ends exactly after the last one. Why not tar or zip: both carry links, device
nodes, modes, owners, duplicate names and several ways to spell a path, and each is a
parser to harden. Here there are only names and lengths, every one signed, and the
readers below accept exactly one byte sequence per bundle (canonical re-encoding check).

Invariants: nothing here decides trust (verify.py does); decoding is strict (unknown
fields, wrong types and non-canonical encodings are refused).
"""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path
from typing import BinaryIO, TypeVar

import msgspec

MAGIC = b"OUTPOST\x01"
PREFIX = len(MAGIC) + 4
MAX_HEADER = 1 << 20
PRODUCT = "outpost"
FORMAT = 1
_VERSION = re.compile(r"^(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})$")
T = TypeVar("T")
_PATH_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Subclasses inherit these options; they restate frozen=True only because mypy does not see it inherited."""


class PayloadFile(_Strict, frozen=True):
    path: str          # relative, "/"-separated, checked by `check_path`
    sha256: str        # lowercase hex
    size: int
    executable: bool = False


class Manifest(_Strict, frozen=True):
    product: str
    version: str
    min_version: str   # the oldest installed version this bundle may upgrade
    created: int       # Unix seconds
    files: list[PayloadFile]
    key_ids: list[str]


class KeyCertBody(_Strict, frozen=True):
    """A signing key as certified by a root: who, which key, and when it may sign."""

    key_id: str
    public_key: bytes
    not_before: int
    not_after: int
    root_id: str


class KeyCert(_Strict, frozen=True):
    body: bytes        # canonical KeyCertBody JSON, signed by the root
    signature: bytes


class Signature(_Strict, frozen=True):
    key_id: str
    signature: bytes   # Ed25519 over Envelope.manifest (the exact bytes)


class Envelope(_Strict, frozen=True):
    format: int
    manifest: bytes
    signatures: list[Signature]
    certificates: list[KeyCert]


class BundleFormatError(ValueError):
    """The bytes are not a well-formed bundle; the message is safe to show."""


def encode(obj: object) -> bytes:
    return msgspec.json.encode(obj)


def decode_canonical(data: bytes, kind: type[T], what: str) -> T:
    """Strict decode that also insists `data` is the one canonical encoding."""
    try:
        obj: T = msgspec.json.decode(data, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:  # ValueError: bad UTF-8
        raise BundleFormatError(f"the {what} is malformed: {str(exc)[:200]}") from None
    if encode(obj) != data:
        raise BundleFormatError(f"the {what} is not in canonical form")
    return obj


def parse_version(text: str) -> tuple[int, int, int]:
    match = _VERSION.match(text)
    if not match:
        raise BundleFormatError(f"{text!r} is not a version of the form X.Y.Z")
    return tuple(int(g) for g in match.groups())  # type: ignore[return-value]


def check_path(path: str) -> None:
    """A payload path may only name a file inside the slot: relative, no '..', no odd characters."""
    if path.startswith("/") or "\\" in path:
        raise BundleFormatError(f"payload path {path!r} is absolute or uses backslashes")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise BundleFormatError(f"payload path {path!r} escapes the bundle or is not normalised")
    if not all(_PATH_PART.match(p) for p in parts) or len(parts) > 8:
        raise BundleFormatError(f"payload path {path!r} has characters or depth that are not allowed")


def read_header(f: BinaryIO, file_size: int) -> tuple[Envelope, int]:
    """Read and strictly decode the envelope; return it and the offset of the first blob."""
    if file_size < PREFIX:
        raise BundleFormatError("the file is truncated: too short to be a bundle")
    prefix = f.read(PREFIX)
    if prefix[:len(MAGIC)] != MAGIC:
        raise BundleFormatError("not an Outpost update bundle (wrong magic bytes)")
    (length,) = struct.unpack(">I", prefix[len(MAGIC):])
    if length > MAX_HEADER:
        raise BundleFormatError("the bundle header is larger than allowed")
    if PREFIX + length > file_size:
        raise BundleFormatError("the file is truncated: the header is incomplete")
    envelope = decode_canonical(f.read(length), Envelope, "bundle header")
    if envelope.format != FORMAT:
        raise BundleFormatError(f"bundle format {envelope.format} is not supported")
    return envelope, PREFIX + length


def write(out: Path, envelope: Envelope, blobs: list[bytes | Path]) -> None:
    """Write a bundle file (build side; blobs in manifest order)."""
    header = encode(envelope)
    with open(out, "wb") as f:
        f.write(MAGIC + struct.pack(">I", len(header)) + header)
        for blob in blobs:
            f.write(blob if isinstance(blob, bytes) else Path(blob).read_bytes())


def payload_entry(path: str, data: bytes, executable: bool = False) -> PayloadFile:
    return PayloadFile(path=path, sha256=hashlib.sha256(data).hexdigest(), size=len(data), executable=executable)
