"""Random tokens, their stored digests and constant-time comparison.

Invariants: tokens come from `secrets` (CSPRNG); only SHA-256 digests of bearer
secrets are stored; comparisons of secrets use `hmac.compare_digest`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_SETUP_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a console


def new_token(nbytes: int = 32) -> str:
    """A URL-safe random token with nbytes of entropy (256 bits by default)."""
    return secrets.token_urlsafe(nbytes)


def digest(token: str) -> bytes:
    """SHA-256 of a token, as stored in the database."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def equal(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time equality for secrets."""
    if isinstance(a, str):
        a = a.encode("utf-8")
    if isinstance(b, str):
        b = b.encode("utf-8")
    return hmac.compare_digest(a, b)


def new_setup_code() -> str:
    """A one-time setup code: 20 characters (100 bits) in groups of five, easy to type."""
    raw = "".join(secrets.choice(_SETUP_ALPHABET) for _ in range(20))
    return "-".join(raw[i:i + 5] for i in range(0, 20, 5))


def normalise_setup_code(code: str) -> str:
    """Accept what users type: any case, spaces or dashes between groups."""
    cleaned = "".join(ch for ch in code.upper() if ch.isalnum())
    return "-".join(cleaned[i:i + 5] for i in range(0, len(cleaned), 5))


def hkdf(key: bytes, purpose: str, length: int = 32) -> bytes:
    """Derive a sub-key for one purpose from a master key (RFC 5869, SHA-256, no salt)."""
    prk = hmac.new(b"\x00" * 32, key, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + purpose.encode() + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
