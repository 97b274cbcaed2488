"""Sealing small secrets at rest with AES-256-GCM (STORE-3).

The database is already encrypted as a whole (SQLCipher); secrets that let the
appliance act as someone (TOTP seeds, device credentials) are additionally sealed
under a separate data key, `keys/vault.key`, so a database copy without that file
does not reveal them, and bound to the row they belong to.

Usage (any capability; the key is `keys/vault.key`, loaded by the composition root):

    blob = vault.seal(key, b"secret", aad=vault.aad("users.totp_seed", user_id))
    secret = vault.open(key, blob, aad=vault.aad("users.totp_seed", user_id))

Format (bytes, versioned so the algorithm can change): b"v1" | nonce (12 random
bytes) | ciphertext+tag.

Invariants (what must never happen):
- A nonce is never reused deliberately: 96 random bits per seal (NIST SP 800-38D
  random construction; far below 2^32 seals per key on one appliance).
- A ciphertext moved to another row (different associated data) or altered in any
  bit does not decrypt: `open` raises `VaultError`, never returns garbage.
- Plaintext and key bytes never appear in an exception message.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.errors import OutpostError

VERSION = b"v1"
_NONCE = 12
_HEADER = len(VERSION) + _NONCE
KEY_BYTES = 32
_MESSAGE = "a sealed secret could not be opened (wrong key, wrong row or damaged data)"


class VaultError(OutpostError):
    """A sealed value cannot be opened (wrong key, wrong row, altered or unknown format).

    One message for every cause: no oracle telling a wrong row from a damaged blob."""

    code = "vault_error"
    status = 500

    def __init__(self, message: str = _MESSAGE) -> None:
        super().__init__(message)


def aad(purpose: str, row_id: int | str) -> bytes:
    """Associated data binding a sealed value to one column of one row, e.g. ("users.totp_seed", 7)."""
    return f"{purpose}:{row_id}".encode()


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt and authenticate plaintext under key, bound to aad (AES-256-GCM, NIST SP 800-38D)."""
    if len(key) != KEY_BYTES:
        raise VaultError("the vault key has the wrong length")
    nonce = os.urandom(_NONCE)
    return VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open(key: bytes, blob: bytes, aad: bytes) -> bytes:  # noqa: A001 - mirrors seal/open vocabulary
    """Decrypt a value made by `seal` with the same key and aad; VaultError otherwise."""
    if len(key) != KEY_BYTES:
        raise VaultError("the vault key has the wrong length")
    blob = bytes(blob)
    if len(blob) < _HEADER + 16 or not blob.startswith(VERSION):
        raise VaultError()
    try:
        return AESGCM(key).decrypt(blob[len(VERSION):_HEADER], blob[_HEADER:], aad)
    except InvalidTag:
        raise VaultError() from None
