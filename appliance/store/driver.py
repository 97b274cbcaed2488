"""The SQLCipher driver: keyed connections, the authorizer, error translation, file copies.

The only importer of sqlcipher3 (tests/test_architecture.py). Everything above it sees
the `Connection` and `Cursor` protocols and the StoreError classes of errors.py.

Invariants (what must never happen):
- A statement runs on a connection before `PRAGMA key`: nothing is read or written
  unkeyed, so no plaintext page reaches the disk.
- A job or read controls the transaction, ATTACHes a file (a plaintext database) or
  changes a connection setting: the authorizer refuses it while `Guard.active`.
- A caller sees a sqlcipher3 exception type, or key bytes in a message (`translate`).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlcipher3 import dbapi2 as _sqlite

from appliance.store.atomic import fsync_dir
from appliance.store.errors import ConstraintError, CorruptDatabaseError, DiskFullError, StoreError, WrongKeyError

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
SYNCHRONOUS = "FULL"  # see store/connection.py; the kill -9 test in tests/store checks it
DISK_FULL_MESSAGE = "the data disk is full; the change was not saved"

Error = _sqlite.Error  # for the store's own modules: catch, then `translate`
complete_statement = _sqlite.complete_statement  # for migrate.py

# Primary SQLite result codes (stable C ABI).
_BUSY, _LOCKED, _CORRUPT, _FULL, _AUTH, _NOTADB = 5, 6, 11, 13, 23, 26
# Authorizer action codes that jobs and reads may not use.
_TRANSACTION, _ATTACH, _DETACH, _SAVEPOINT, _PRAGMA = 22, 24, 25, 32, 19
_INTROSPECTION_PRAGMAS = frozenset({
    "table_info", "table_xinfo", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check",
})


class Cursor(Protocol):
    lastrowid: int | None
    rowcount: int
    row_factory: Any  # None gives plain tuples (audit export reads millions of rows)

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchmany(self, size: int = ...) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What query functions get: rows support `row["col"]` and tuple unpacking."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Any, /) -> Cursor: ...
    def cursor(self) -> Cursor: ...


class Guard:
    """Authorizer: while `active` (a job or read runs), refuse statements owned by the store."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = False

    def __call__(self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
        if not self.active:
            return _sqlite.SQLITE_OK
        if action in (_TRANSACTION, _SAVEPOINT, _ATTACH, _DETACH):
            return _sqlite.SQLITE_DENY
        if action == _PRAGMA and arg2 is not None and arg1 not in _INTROSPECTION_PRAGMAS:
            return _sqlite.SQLITE_DENY
        return _sqlite.SQLITE_OK


class Handle:
    """A raw connection and its authorizer."""

    __slots__ = ("conn", "guard")

    def __init__(self, conn: Any, guard: Guard) -> None:
        self.conn, self.guard = conn, guard


def connect(path: Path, key: bytes, *, writable: bool) -> Handle:
    """A keyed connection with the store's settings; WrongKeyError if the key does not open the file."""
    conn = _sqlite.connect(str(path), isolation_level=None, check_same_thread=False, cached_statements=256)
    try:
        # Must be the first statement: nothing is read or written before the key is set.
        conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        conn.execute("PRAGMA cipher_compatibility = 4")  # pin SQLCipher 4 settings across upgrades
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except _sqlite.DatabaseError as exc:
            if _code(exc) == _NOTADB:
                raise WrongKeyError(
                    f"the database key does not open {path}: wrong key, or the file is damaged"
                    " or not an Outpost database"
                ) from None
            raise translate(exc) from exc
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
        conn.execute("PRAGMA temp_store = MEMORY")  # sorts and temp tables never touch the disk
        conn.execute("PRAGMA journal_size_limit = 67108864")  # WAL shrinks back after a long read
        if not writable:
            conn.execute("PRAGMA query_only = ON")
        conn.row_factory = _sqlite.Row
        guard = Guard()
        conn.set_authorizer(guard)
    except BaseException:
        conn.close()
        raise
    return Handle(conn, guard)


def is_cursor(value: object) -> bool:
    return isinstance(value, _sqlite.Cursor)


def run_read(handle: Handle, fn: Callable[[Any], T]) -> T:
    """`fn(conn)` under the authorizer; the read transaction is ended afterwards."""
    handle.guard.active = True
    try:
        return fn(handle.conn)
    except _sqlite.Error as exc:
        raise translate(exc) from exc
    finally:
        handle.guard.active = False
        end_read(handle.conn)


def end_read(conn: Any) -> None:
    # A transaction left open would pin an old snapshot and stop the WAL from being reset.
    if conn.in_transaction:
        conn.rollback()


def copy_database(path: Path, key: bytes, dest: Path) -> None:
    """Copy the database to `dest` with the backup API, then fsync and rename into place.

    Never a plain file copy: opening and closing the database file in a process where
    SQLite has it open drops SQLite's POSIX locks on it (another process could then
    delete a live WAL). The copy is re-encrypted page by page under the same key.
    """
    tmp = dest.with_name(f".{dest.name}.{os.urandom(8).hex()}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    try:
        source = connect(path, key, writable=False)
        try:
            target = _sqlite.connect(str(tmp), isolation_level=None)
            try:
                target.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
                target.execute("PRAGMA cipher_compatibility = 4")
                source.conn.backup(target)
            finally:
                target.close()
        finally:
            source.conn.close()
        fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    finally:
        for leftover in (tmp, Path(f"{tmp}-journal"), Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def rekey_file(path: Path, key: bytes, new_key: bytes) -> None:
    """`PRAGMA rekey` on a connection of its own: SQLCipher rewrites every page in ONE transaction."""
    handle = connect(path, key, writable=True)
    try:
        handle.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        handle.conn.execute(f"PRAGMA rekey = \"x'{new_key.hex()}'\"")
        handle.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page durably under the new key
    except _sqlite.Error as exc:
        raise translate(exc) from exc
    finally:
        handle.conn.close()


def check_integrity(conn: Any, path: Path) -> None:
    """quick_check (b-tree structure) and cipher_integrity_check (every page's HMAC)."""
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        if problems == ["ok"]:
            problems = [row[0] for row in conn.execute("PRAGMA cipher_integrity_check")]
    except _sqlite.DatabaseError as exc:
        problems = [str(exc)]
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise CorruptDatabaseError(
            f"the database {path} is damaged: {problems[0]}{more}. The appliance will not use it;"
            " restore it from a backup or from the pre-migration snapshot next to it"
        )


def neighbour_error(cause: BaseException) -> BaseException:
    """The error for a job whose own work was fine but whose transaction was lost."""
    translated = translate(cause)
    if isinstance(translated, StoreError):
        return translated
    new = StoreError("the change was not saved: the transaction it shared with other changes was rolled back")
    new.__cause__ = cause
    return new


def _code(exc: BaseException) -> int:
    return (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF


def translate(exc: BaseException) -> BaseException:
    """Map a sqlite (or OS) error to a StoreError subclass; anything else passes through."""
    if isinstance(exc, _sqlite.IntegrityError):
        new: BaseException = ConstraintError(f"the change conflicts with stored data ({exc})")
    elif isinstance(exc, _sqlite.Error):
        new = _translate_sqlite(exc)
    elif isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        new = DiskFullError(DISK_FULL_MESSAGE)
    else:
        return exc
    new.__cause__ = exc
    return new


def _translate_sqlite(exc: BaseException) -> StoreError:
    code = _code(exc)
    if code == _FULL or "database or disk is full" in str(exc):
        return DiskFullError(DISK_FULL_MESSAGE)
    if code in (_CORRUPT, _NOTADB):
        return CorruptDatabaseError(f"the database is damaged ({exc}); restore it from a backup")
    if code in (_BUSY, _LOCKED):
        return StoreError("the database is busy (another process holds it); try again")
    if code == _AUTH:
        return StoreError("a write or read job tried transaction control, ATTACH or a settings PRAGMA;"
                          " only the store may")
    return StoreError(f"database error: {exc}")
