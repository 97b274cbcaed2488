"""The TLS private keys' password, and re-encrypting the keys when the database key changes.

The password of every private key under tls/ is derived from the database key (HKDF), so
a data directory needs one secret only. `outpost rekey` (store/keys.py) therefore calls
`follow_database_rekey` to re-encrypt them, idempotently, as step 3 of a rotation.

Invariants (what must never happen):
- The purpose string changes: every existing TLS private key would become unreadable.
  This module is its only spelling.
- A key is rewritten in clear, or partly: each file is replaced atomically, re-encrypted.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization

from appliance.crypto import tokens
from appliance.paths import DataDir
from appliance.store.atomic import write_atomic
from appliance.tls.errors import TLSKeyPasswordError
from appliance.tls.files import pem_blocks, read

KEY_PASSWORD_PURPOSE = "outpost tls private keys"


def key_password(db_key: bytes) -> bytes:
    """The password of the TLS private keys, derived from the database key."""
    return tokens.hkdf(db_key, KEY_PASSWORD_PURPOSE)


def follow_database_rekey(data_dir: Path, old_key: bytes, new_key: bytes) -> None:
    """Step 3 of a database key rotation (store/keys.py): the TLS keys follow the database key."""
    reencrypt_keys(DataDir(data_dir).tls, key_password(old_key), key_password(new_key))


def reencrypt_keys(tls_dir: Path, old_password: bytes, new_password: bytes) -> int:
    """Re-encrypt every private key under `tls_dir` from `old_password` to `new_password`.

    Idempotent (a file whose keys already open with the new password is left alone), so
    an interrupted database rekey can run it again. Each file is replaced atomically.
    Returns the number of files rewritten.
    """
    rewritten = 0
    if not Path(tls_dir).is_dir():
        return 0
    for path in sorted(Path(tls_dir).glob("*.key")) + sorted(Path(tls_dir).glob("*.pem")):
        blocks = pem_blocks(read(path))
        if not any(label == "ENCRYPTED PRIVATE KEY" for label, _ in blocks):
            continue
        out = []
        changed = False
        for label, block in blocks:
            if label == "ENCRYPTED PRIVATE KEY":
                new_block = _reencrypt(path, block, old_password, new_password)
                changed = changed or new_block != block
                block = new_block
            out.append(block)
        if changed:
            write_atomic(path, b"".join(out), 0o600)
            rewritten += 1
    return rewritten


def _reencrypt(path: Path, block: bytes, old_password: bytes, new_password: bytes) -> bytes:
    """The block under `new_password`: as is if it already opens with it."""
    try:
        serialization.load_pem_private_key(block, password=new_password)
        return block
    except (ValueError, TypeError):
        pass
    try:
        key = serialization.load_pem_private_key(block, password=old_password)
    except (ValueError, TypeError):
        raise TLSKeyPasswordError(f"the private key in {path} opens with neither the old nor the new "
                                  "database key") from None
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(new_password))
