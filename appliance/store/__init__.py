"""The encrypted datastore (STORE-1, -2, -4, -5): one SQLCipher 4 file behind one `Database`.

Invariants (what must never happen):
- A byte of plaintext reaches the disk: every connection keys itself before anything else,
  temp storage stays in memory, and ATTACH (which could create a plaintext file) is refused.
- A write is acknowledged before it is durable: callers of `Database.write` resume only
  after the COMMIT holding their change returned, with `synchronous=FULL`.
- Writes bypass the single writer: reader connections are `query_only`.
- One failing write job takes neighbours in its batch down with it, or leaves half of
  its own changes behind (each job runs in its own SAVEPOINT).
- A wrong key, a damaged file or a database from newer software is used anyway: opening
  stops with `WrongKeyError`, `CorruptDatabaseError` or `MigrationError`.
- Callers see a sqlcipher3 type: errors are translated into the classes of `errors.py`,
  and `store/driver.py` is the only module that imports sqlcipher3.

Modules, from the bottom up: `errors`, `atomic` (atomic file writes), `driver` (keyed
SQLCipher connections, authorizer, error translation), `migrate`, `writer` (the single
writer thread and group commit), `connection` (`Database`), `keys` (unlocking and
rotating the database key). This file only re-exports; no module of the package
imports it, so there is no import cycle through it.
"""

from appliance.store.atomic import copy_atomic, write_atomic
from appliance.store.connection import Connection, Cursor, Database
from appliance.store.errors import (
    ConstraintError,
    CorruptDatabaseError,
    DiskFullError,
    MigrationError,
    StoreError,
    WrongKeyError,
)
from appliance.store.migrate import Migration, load_migrations, migrate

__all__ = [
    "ConstraintError",
    "Connection",
    "CorruptDatabaseError",
    "Cursor",
    "Database",
    "DiskFullError",
    "Migration",
    "MigrationError",
    "StoreError",
    "WrongKeyError",
    "copy_atomic",
    "load_migrations",
    "migrate",
    "write_atomic",
]
