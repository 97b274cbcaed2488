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
- Callers see a sqlcipher3 type: errors are translated into the classes below, and
  `store/connection.py` is the only module that imports sqlcipher3.
"""

from __future__ import annotations

from appliance.errors import ConflictError, OutpostError

# The error classes are defined before the submodules are imported: connection.py and
# migrate.py import them from here.


class StoreError(OutpostError):
    """The datastore failed; the change (if any) was not saved."""

    code = "store_error"
    status = 500


class ConstraintError(StoreError, ConflictError):
    """A write broke a UNIQUE, FOREIGN KEY, CHECK or NOT NULL constraint."""

    code = "conflict"
    status = 409


class DiskFullError(StoreError):
    """The data disk is full; nothing already stored is lost and writing resumes when space returns."""

    code = "disk_full"
    status = 507


class CorruptDatabaseError(StoreError):
    """The database file is damaged; the appliance refuses to use it."""

    code = "database_corrupt"


class WrongKeyError(StoreError):
    """The key does not decrypt the file (wrong key, or not an Outpost database)."""

    code = "database_key_wrong"


class MigrationError(StoreError):
    """The schema cannot be brought up to date (or the database is newer than this software)."""

    code = "migration_failed"


from appliance.store.atomic import copy_atomic, write_atomic  # noqa: E402
from appliance.store.connection import Connection, Cursor, Database  # noqa: E402
from appliance.store.migrate import Migration, load_migrations, migrate  # noqa: E402

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
