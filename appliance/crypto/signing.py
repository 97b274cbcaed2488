"""Ed25519 signing keys for update bundles (RFC 8032). The only module that handles them.

Invariants (what must never happen):
- A private key is written anywhere but a 0600 file the caller named, or appears in a
  message, log or exception.
- A signature is accepted that does not verify under the exact public key named: no
  fallback, no "any key", and malformed keys or signatures are a plain refusal (False).

Keys travel as text: `ed25519 <base64 raw 32-byte key>` for public keys (roots/*.pub),
PKCS#8 PEM for private keys (only on the release engineer's machine).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PUBLIC_PREFIX = "ed25519 "


class SigningKeyError(ValueError):
    """A key file that cannot be read or is not an Ed25519 key (no key material in the message)."""


def key_id(public_raw: bytes) -> str:
    """Stable short name of a public key: first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def generate() -> tuple[bytes, bytes]:
    """A new key pair as (private PKCS#8 PEM, raw 32-byte public key)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return pem, raw


def write_private(path: Path, pem: bytes) -> None:
    """Create `path` (must not exist) with mode 0600 and write the private key."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(pem)


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        raise SigningKeyError(f"{path} is not a readable unencrypted Ed25519 private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is not an Ed25519 private key")
    return key


def public_of(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign(private: Ed25519PrivateKey, message: bytes) -> bytes:
    return private.sign(message)


def verify(public_raw: bytes, message: bytes, signature: bytes) -> bool:
    """True only if `signature` is a valid Ed25519 signature of `message` by `public_raw`."""
    if len(public_raw) != 32 or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def format_public(public_raw: bytes, comment: str = "") -> str:
    return f"{PUBLIC_PREFIX}{base64.b64encode(public_raw).decode()}{' ' + comment if comment else ''}\n"


def parse_public(text: str) -> bytes:
    """The raw key from `ed25519 <base64> [comment]`; SigningKeyError otherwise."""
    parts = text.strip().split()
    if len(parts) < 2 or parts[0] != PUBLIC_PREFIX.strip():
        raise SigningKeyError("not an 'ed25519 <base64>' public key line")
    try:
        raw = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise SigningKeyError("public key is not valid base64") from None
    if len(raw) != 32:
        raise SigningKeyError("an Ed25519 public key is 32 bytes")
    return raw
