"""The store's failure modes. Callers never see a sqlcipher3 exception: driver.py translates."""

from __future__ import annotations

from appliance.errors import ConflictError, OutpostError


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
