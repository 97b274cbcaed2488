"""Unlocking and rotating the database key (STORE-2): key sources and crash-safe `rekey`.

Key sources ([store] key_source):
- "file": keys/db.key holds the raw 256-bit key (hex, 0600).
- "passphrase": keys/db.key holds the key wrapped by an operator passphrase (argon2id
  KEK + AES-256-GCM, crypto/kdf.py); the CLI asks for the passphrase on the console or
  reads the systemd credential `outpost-passphrase`.

Rotation, in this order, each step durable before the next:
1. write the new key (in the target source's format) as keys/db.key.new (fsync, link);
2. `PRAGMA rekey` the database (one SQLCipher transaction);
3. let every follower re-encrypt what is derived from the database key (the TLS private
   keys: tls/rekey.py), idempotently: the store does not know what they are, so the
   caller passes them (app.DB_KEY_FOLLOWERS);
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
from collections.abc import Callable, Sequence
from pathlib import Path

from appliance.crypto import keyfile
from appliance.errors import OutpostError
from appliance.paths import DataDir
from appliance.store.connection import Database
from appliance.store.errors import WrongKeyError
from appliance.store.migrate import OnMigrate

Passphrase = Callable[[], bytes]
KeyFollower = Callable[[Path, bytes, bytes], None]
"""`follower(data_dir, old_key, new_key)`: re-encrypts something derived from the database key.
Must be idempotent: an interrupted rotation runs it again."""


_NO_PASSPHRASE = "[store] key_source is \"passphrase\" but no passphrase was given"
_NO_NEW_PASSPHRASE = "a new passphrase is needed for key_source \"passphrase\""


class KeySourceError(OutpostError):
    code = "key_source"
    status = 500


def unlock(data_dir: Path, *, key_source: str, passphrase: Passphrase | None, readers: int,
           followers: Sequence[KeyFollower], new_passphrase: Passphrase | None = None,
           on_migrate: OnMigrate | None = None) -> tuple[Database, bytes]:
    """Open (or create) the encrypted database; finish an interrupted rotation first.

    `new_passphrase` opens a pending db.key.new of a source conversion (default: `passphrase`).
    `on_migrate` goes to `Database.open` (runs in the migration's transaction, if one is due).
    """
    data_dir = Path(data_dir)
    layout = DataDir(data_dir)
    db_path, key_path, new_path = layout.db, layout.db_key, layout.db_key_new
    if new_path.exists():
        return _finish_rotation(data_dir, passphrase, new_passphrase or passphrase, readers, followers, on_migrate)
    if key_path.exists() or db_path.exists():
        _check_source(key_path, key_source)
        key = keyfile.load_key(key_path, passphrase)
    else:
        key = keyfile.create_key(key_path, _secret_for(key_source, passphrase, _NO_PASSPHRASE))
    return Database.open(db_path, key, readers=readers, on_migrate=on_migrate), key


def rekey(data_dir: Path, *, passphrase: Passphrase | None, new_source: str,
          new_passphrase: Passphrase | None, followers: Sequence[KeyFollower], readers: int = 1,
          on_migrate: OnMigrate | None = None) -> dict:
    """Rotate the database key (and optionally its source). The server must be stopped.

    Returns non-secret facts for the audit record and the operator.
    """
    data_dir = Path(data_dir)
    key_path, new_path = DataDir(data_dir).db_key, DataDir(data_dir).db_key_new
    db, old_key = unlock(data_dir, key_source=keyfile.source_of(key_path), passphrase=passphrase,
                         new_passphrase=new_passphrase, readers=readers, followers=followers, on_migrate=on_migrate)
    old_source = keyfile.source_of(key_path)  # after unlock: it may have finished an interrupted rotation
    new_key = secrets.token_bytes(keyfile.KEY_BYTES)
    try:
        secret = _secret_for(new_source, new_passphrase, _NO_NEW_PASSPHRASE)
        keyfile.write_new_key(new_path, new_key, secret)  # 1
    except BaseException:
        db.close()
        raise
    db.rekey(new_key)  # 2 (closes db)
    removed = _complete(data_dir, old_key, new_key, followers)  # 3-5
    return {"old_source": old_source, "new_source": new_source, "snapshots_removed": removed}


def _complete(data_dir: Path, old_key: bytes, new_key: bytes, followers: Sequence[KeyFollower]) -> int:
    layout = DataDir(data_dir)
    for follow in followers:  # 3
        follow(data_dir, old_key, new_key)
    removed = 0
    for snapshot in layout.db_snapshots():  # 4
        snapshot.unlink(missing_ok=True)
        removed += 1
    keyfile.replace_key(layout.db_key_new, layout.db_key)  # 5
    return removed


def _finish_rotation(data_dir: Path, passphrase: Passphrase | None, new_passphrase: Passphrase | None,
                     readers: int, followers: Sequence[KeyFollower],
                     on_migrate: OnMigrate | None) -> tuple[Database, bytes]:
    layout = DataDir(data_dir)
    db_path, key_path, new_path = layout.db, layout.db_key, layout.db_key_new
    old_key = keyfile.load_key(key_path, passphrase)
    new_key = keyfile.load_key(new_path, new_passphrase)
    try:
        db = Database.open(db_path, old_key, readers=readers, on_migrate=on_migrate)
    except WrongKeyError:
        pass
    else:
        new_path.unlink()  # the rekey never committed: the new key was never used
        keyfile.fsync_parent(new_path)
        return db, old_key
    db = Database.open(db_path, new_key, readers=readers, on_migrate=on_migrate)  # neither key opens it: WrongKeyError
    _complete(data_dir, old_key, new_key, followers)
    return db, new_key


def _secret_for(key_source: str, passphrase: Passphrase | None, missing: str) -> bytes | None:
    """The passphrase a key in `key_source` is wrapped with (None: a plain key file)."""
    if key_source != "passphrase":
        return None
    if passphrase is None:
        raise KeySourceError(missing)
    return passphrase()


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
