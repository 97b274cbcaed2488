"""Unlocking and rotating the database key (STORE-2): key sources and crash-safe `rekey`.

Key sources ([store] key_source):
- "file": keys/db.key holds the raw 256-bit key (hex, 0600).
- "passphrase": keys/db.key holds the key wrapped by an operator passphrase (argon2id
  KEK + AES-256-GCM, crypto/kdf.py); the CLI asks for the passphrase on the console or
  reads the systemd credential `outpost-passphrase`.

Rotation, in this order, each step durable before the next:
1. write the new key (in the target source's format) as keys/db.key.new (fsync, link);
2. `PRAGMA rekey` the database (one SQLCipher transaction);
3. re-encrypt the TLS private keys (their password is derived from the database key),
   idempotently: each file is rewritten only if it does not yet open with the new one;
4. delete the pre-migration snapshots (outpost.db.pre-NNNN): they are encrypted with the
   retired key, and a key is usually retired because it may have leaked, so a copy of
   the data under it must not stay behind;
5. rename db.key.new over db.key.

Invariants (what must never happen):
- A crash at any point leaves a data directory that opens: `unlock()` sees db.key.new,
  tries the current key, then the new one, and finishes the rotation (steps 3-5) or
  discards the unused new key. All data is present either way.
- A key file whose format disagrees with [store] key_source is used silently: it is
  refused with the command that converts it.
- Key bytes or a passphrase appear in a message or a log line.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Callable

from appliance.crypto import keyfile, tokens
from appliance.errors import OutpostError
from appliance.store import WrongKeyError
from appliance.store.connection import Database
from appliance.tls import manager as tls_manager

DB_FILE = "outpost.db"
KEY_FILE = Path("keys") / "db.key"
NEW_KEY_FILE = Path("keys") / "db.key.new"
TLS_DIR = "tls"
TLS_PASSWORD_PURPOSE = "outpost tls private keys"

Passphrase = Callable[[], bytes]


class KeySourceError(OutpostError):
    code = "key_source"
    status = 500


def tls_password(key: bytes) -> bytes:
    """The password of the TLS private keys, derived from the database key."""
    return tokens.hkdf(key, TLS_PASSWORD_PURPOSE)


def unlock(data_dir: Path, *, key_source: str, passphrase: Passphrase | None, readers: int,
           new_passphrase: Passphrase | None = None) -> tuple[Database, bytes]:
    """Open (or create) the encrypted database; finish an interrupted rotation first.

    `new_passphrase` opens a pending db.key.new of a source conversion (default: `passphrase`).
    """
    data_dir = Path(data_dir)
    db_path, key_path, new_path = data_dir / DB_FILE, data_dir / KEY_FILE, data_dir / NEW_KEY_FILE
    if new_path.exists():
        return _finish_rotation(data_dir, passphrase, new_passphrase or passphrase, readers)
    if key_path.exists() or db_path.exists():
        _check_source(key_path, key_source)
        key = keyfile.load_key(key_path, passphrase)
    else:
        if key_source == "passphrase" and passphrase is None:
            raise KeySourceError("[store] key_source is \"passphrase\" but no passphrase was given")
        key = keyfile.create_key(key_path, passphrase() if key_source == "passphrase" else None)
    return Database.open(db_path, key, readers=readers), key


def rekey(data_dir: Path, *, passphrase: Passphrase | None, new_source: str,
          new_passphrase: Passphrase | None, readers: int = 1) -> dict:
    """Rotate the database key (and optionally its source). The server must be stopped.

    Returns non-secret facts for the audit record and the operator.
    """
    data_dir = Path(data_dir)
    key_path, new_path = data_dir / KEY_FILE, data_dir / NEW_KEY_FILE
    db, old_key = unlock(data_dir, key_source="passphrase" if keyfile.is_wrapped(key_path) else "file",
                         passphrase=passphrase, new_passphrase=new_passphrase, readers=readers)
    old_source = "passphrase" if keyfile.is_wrapped(key_path) else "file"
    if new_source == "passphrase" and new_passphrase is None:
        db.close()
        raise KeySourceError("a new passphrase is needed for key_source \"passphrase\"")
    new_key = secrets.token_bytes(keyfile.KEY_BYTES)
    try:
        keyfile.write_new_key(new_path, new_key, new_passphrase() if new_source == "passphrase" else None)  # 1
    except BaseException:
        db.close()
        raise
    db.rekey(new_key)  # 2 (closes db)
    removed = _complete(data_dir, old_key, new_key)  # 3-5
    return {"old_source": old_source, "new_source": new_source, "snapshots_removed": removed}


def _complete(data_dir: Path, old_key: bytes, new_key: bytes) -> int:
    tls_manager.reencrypt_keys(data_dir / TLS_DIR, tls_password(old_key), tls_password(new_key))  # 3
    removed = 0
    for snapshot in data_dir.glob(f"{DB_FILE}.pre-*"):  # 4
        snapshot.unlink(missing_ok=True)
        removed += 1
    keyfile.replace_key(data_dir / NEW_KEY_FILE, data_dir / KEY_FILE)  # 5
    return removed


def _finish_rotation(data_dir: Path, passphrase: Passphrase | None, new_passphrase: Passphrase | None,
                     readers: int) -> tuple[Database, bytes]:
    db_path, key_path, new_path = data_dir / DB_FILE, data_dir / KEY_FILE, data_dir / NEW_KEY_FILE
    old_key = keyfile.load_key(key_path, passphrase)
    new_key = keyfile.load_key(new_path, new_passphrase)
    try:
        db = Database.open(db_path, old_key, readers=readers)
    except WrongKeyError:
        pass
    else:
        new_path.unlink()  # the rekey never committed: the new key was never used
        keyfile.fsync_parent(new_path)
        return db, old_key
    db = Database.open(db_path, new_key, readers=readers)  # WrongKeyError here: neither key opens it
    _complete(data_dir, old_key, new_key)
    return db, new_key


def _check_source(key_path: Path, key_source: str) -> None:
    if not key_path.exists():
        return  # load_key reports the missing file
    wrapped = keyfile.is_wrapped(key_path)
    if key_source == "passphrase" and not wrapped:
        raise KeySourceError(f"[store] key_source is \"passphrase\" but {key_path} holds a plain key;"
                             " convert it with `outpost rekey --key-source passphrase`")
    if key_source == "file" and wrapped:
        raise KeySourceError(f"{key_path} is protected by a passphrase but [store] key_source is \"file\";"
                             " set key_source = \"passphrase\" (or convert with `outpost rekey --key-source file`)")
