"""Sealing secrets at rest a second time, inside the encrypted database (STORE-3).

AES-256-GCM under a separate data key (`keys/vault.key`), a fresh 96-bit random
nonce per seal, and the owning row's identity as associated data: a ciphertext
copied to another row (or another purpose) does not open.

Blob format (versioned so the algorithm can change): b"v1" || nonce(12) || ciphertext+tag.

Invariants: plaintext never appears in an exception message; a wrong key, a
tampered blob or a wrong row all raise the same `VaultError` (no oracle).
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.errors import OutpostError

_VERSION = b"v1"
_NONCE = 12


class VaultError(OutpostError):
    code = "vault_error"
    status = 500

    def __init__(self) -> None:
        super().__init__("a sealed secret could not be opened (wrong key, wrong row or damaged data)")


def aad_for(table: str, row_id: int | str, purpose: str) -> bytes:
    """Associated data naming exactly where a sealed value belongs."""
    return f"outpost:{table}:{row_id}:{purpose}".encode()


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    if len(key) != 32:
        raise ValueError("vault key must be 32 bytes")
    nonce = os.urandom(_NONCE)
    return _VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, blob: bytes, aad: bytes) -> bytes:
    blob = bytes(blob)
    if len(blob) < len(_VERSION) + _NONCE + 16 or not blob.startswith(_VERSION):
        raise VaultError()
    nonce = blob[len(_VERSION):len(_VERSION) + _NONCE]
    try:
        return AESGCM(key).decrypt(nonce, blob[len(_VERSION) + _NONCE:], aad)
    except InvalidTag:
        raise VaultError() from None
