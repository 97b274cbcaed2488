"""`Database`: every connection to one SQLCipher 4 file. The only importer of sqlcipher3.

Writes: one writer thread owns the only writable connection. `write(fn)` / `write_sync(fn)`
queue `fn(conn)`; the writer takes every queued job (up to MAX_BATCH), runs them in one
`BEGIN IMMEDIATE` transaction, each inside its own SAVEPOINT, and COMMITs once (group
commit: one fsync for the whole batch). Reads: `read(fn)` runs inline on the event loop
with that loop's own reader connection (a short indexed query costs microseconds, a
thread hop ~330 µs); `read_sync`, `reader()` and `read_in_thread` borrow a pooled reader
for long work in threads.

Invariants (what must never happen):
- A caller is told "done" before the COMMIT holding its change returned (journal_mode=WAL,
  synchronous=FULL: the WAL is fsynced at every COMMIT, so acknowledged writes survive
  kill -9 and power loss). WAL because inline reads must never wait for the writer;
  FULL rather than NORMAL because NORMAL may lose the last commits on power loss, which
  a kill -9 test cannot show, and group commit shares one fsync among the whole batch.
- A failing job leaves any of its own changes behind, or undoes a neighbour's: its
  SAVEPOINT is rolled back alone. If SQLite aborts the whole transaction (disk full),
  every job in it is told it failed; none is acknowledged.
- A job controls the transaction, ATTACHes a file (a plaintext database) or changes a
  connection setting: the authorizer refuses that while a job or read runs.
- Readers write: reader connections are `query_only`.
- A wrong key, a damaged file or a failed check is used anyway (WrongKeyError,
  CorruptDatabaseError at open).
- The queue grows without limit: each loop, and the sync callers together, have at most
  MAX_PENDING jobs in flight; further callers wait (backpressure).
- A caller sees a sqlcipher3 exception type, or key bytes in a message.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import errno
import functools
import os
import queue
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence, TypeVar

from sqlcipher3 import dbapi2 as _sqlite

from appliance.store import ConstraintError, CorruptDatabaseError, DiskFullError, StoreError, WrongKeyError
from appliance.store.atomic import fsync_dir
from appliance.store.migrate import Migration, migrate

T = TypeVar("T")

MAX_BATCH = 512  # jobs per transaction: bounds a batch's latency and its SAVEPOINT work
MAX_PENDING = 4096  # jobs in flight per event loop (and for all sync callers together)
BUSY_TIMEOUT_MS = 5000
BORROW_TIMEOUT_S = 30.0
SYNCHRONOUS = "FULL"  # see the module docstring; the kill -9 test in tests/store checks it
DISK_FULL_MESSAGE = "the data disk is full; the change was not saved"

complete_statement = _sqlite.complete_statement  # for migrate.py, which must not import sqlcipher3

# Primary SQLite result codes (stable C ABI).
_BUSY, _LOCKED, _CORRUPT, _FULL, _AUTH, _NOTADB = 5, 6, 11, 13, 23, 26
# Authorizer action codes that jobs and reads may not use.
_TRANSACTION, _ATTACH, _DETACH, _SAVEPOINT, _PRAGMA = 22, 24, 25, 32, 19
_INTROSPECTION_PRAGMAS = frozenset({
    "table_info", "table_xinfo", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check",
})
# Distinct texts: the authorizer only sees a statement when it is compiled, so a job using
# exactly the writer's text would get the writer's cached statement unchecked.
_BEGIN_SQL = "BEGIN IMMEDIATE -- outpost writer"
_COMMIT_SQL = "COMMIT -- outpost writer"
_ROLLBACK_SQL = "ROLLBACK -- outpost writer"
_SAVEPOINT_SQL = "SAVEPOINT outpost_writer_job"
_ROLLBACK_TO_SQL = "ROLLBACK TO outpost_writer_job"
_RELEASE_SQL = "RELEASE outpost_writer_job"


class Cursor(Protocol):
    lastrowid: int | None
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchmany(self, size: int = ...) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What query functions get: rows support `row["col"]` and tuple unpacking."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Any, /) -> Cursor: ...


class _Guard:
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


class _Handle:
    __slots__ = ("conn", "guard")

    def __init__(self, conn: Any, guard: _Guard) -> None:
        self.conn, self.guard = conn, guard


class _Job:
    __slots__ = ("fn", "future", "loop", "slots")

    def __init__(self, fn: Callable[[Any], Any], future: Any, loop: Any, slots: Any) -> None:
        self.fn, self.future, self.loop, self.slots = fn, future, loop, slots


class _LoopState:
    """Per event loop: its inline reader and its backpressure semaphore."""

    __slots__ = ("loop", "reader", "slots")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self.reader, self.slots = loop, None, asyncio.Semaphore(MAX_PENDING)


class Database:
    """All connections to one encrypted database file. Construct with `Database.open`."""

    def __init__(self, path: Path, key: bytes, writer: _Handle, pool: list[_Handle]) -> None:
        self.path = path
        self._key = key  # kept to open a reader for each new event loop; never logged
        self._writer = writer
        self._pool: queue.LifoQueue[_Handle] = queue.LifoQueue()
        for handle in pool:
            self._pool.put(handle)
        self._loops: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._loops_lock = threading.Lock()
        self._jobs: collections.deque[_Job] = collections.deque()
        self._cv = threading.Condition()
        self._sync_slots = threading.BoundedSemaphore(MAX_PENDING)
        self._stopping = False
        self._closed = False
        self._stats = {"batches": 0, "jobs": 0, "failed_jobs": 0, "largest_batch": 0}
        self._thread = threading.Thread(target=self._writer_main, name="outpost-db-writer", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<Database {self.path}>"

    @classmethod
    def open(cls, path: Path, key: bytes, *, readers: int = 4, create: bool = True,
             migrations: Sequence[Migration] | None = None) -> Database:
        """Open (or create) the database, check it, migrate it, and start the writer.

        Raises WrongKeyError, CorruptDatabaseError, MigrationError or StoreError.
        """
        path = Path(path)
        if not isinstance(key, bytes) or len(key) != 32:
            raise StoreError("the database key must be 32 bytes (256 bits)")
        if readers < 1:
            raise StoreError("a database needs at least one pooled reader")
        if not path.exists():
            if not create:
                raise StoreError(f"the database file {path} is missing")
            # Created 0600 by us: SQLite gives -wal and -shm the database file's mode.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            fsync_dir(path.parent)
        handles: list[_Handle] = []
        try:
            # Checks and migrations run on a connection of their own, closed afterwards: its
            # cached BEGIN/COMMIT statements must not be reachable from write jobs.
            setup = _connect(path, key, writable=True)
            handles.append(setup)
            _check_integrity(setup.conn, path)
            mode = setup.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"the database {path} cannot use write-ahead logging (journal mode {mode})")
            try:
                migrate(setup.conn, migrations, snapshot=lambda dest: _snapshot(path, key, dest))
            except _sqlite.Error as exc:
                raise _translate(exc) from exc
            for suffix in ("", "-wal", "-shm"):
                _chmod_600(Path(f"{path}{suffix}"))
            writer = _connect(path, key, writable=True)
            handles.append(writer)
            pool = [_connect(path, key, writable=False) for _ in range(readers)]
            handles.extend(pool)
            setup.conn.close()
        except BaseException:
            for handle in handles:
                handle.conn.close()
            raise
        return cls(path, key, writer, pool)

    # -- writes -------------------------------------------------------------------------

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(conn)` in the writer's next transaction; return its result once committed.

        `fn` runs on the writer thread inside its own SAVEPOINT: if it raises, its changes
        are undone and the exception is raised here (sqlite errors as StoreError subclasses).
        It must not block or do I/O other than SQL; a cursor it returns is replaced by None.
        """
        state = self._loop_state()
        await state.slots.acquire()
        job = _Job(_in_callers_context(fn), state.loop.create_future(), state.loop, state.slots)
        try:
            self._enqueue(job)
        except BaseException:
            state.slots.release()
            raise
        return await job.future

    def write_sync(self, fn: Callable[[Connection], T]) -> T:
        """Like `write`, blocking the calling thread (CLI, worker threads)."""
        if threading.current_thread() is self._thread:
            raise StoreError("write_sync was called from inside a write job; it would wait for itself")
        self._sync_slots.acquire()
        job = _Job(_in_callers_context(fn), concurrent.futures.Future(), None, self._sync_slots)
        try:
            self._enqueue(job)
        except BaseException:
            self._sync_slots.release()
            raise
        return job.future.result()

    def _enqueue(self, job: _Job) -> None:
        with self._cv:
            if self._stopping:
                raise StoreError("the database is closed")
            self._jobs.append(job)
            self._cv.notify()

    def _writer_main(self) -> None:
        while True:
            with self._cv:
                while not self._jobs and not self._stopping:
                    self._cv.wait()
                if not self._jobs:
                    return  # stopping, and every queued job has been run
                batch = [self._jobs.popleft() for _ in range(min(len(self._jobs), MAX_BATCH))]
            try:
                outcomes = self._run_batch(batch)
            except BaseException as bug:  # a fault in the writer itself: never leave callers waiting
                outcomes = [(False, _neighbour_error(bug)) for _ in batch]
            self._settle(batch, outcomes)

    def _run_batch(self, batch: list[_Job]) -> list[tuple[bool, Any]]:
        """Run jobs in as few transactions as possible; return (ok, value-or-exception) per job."""
        conn, guard = self._writer.conn, self._writer.guard
        outcomes: list[tuple[bool, Any]] = [(False, None)] * len(batch)
        i = 0
        while i < len(batch):
            try:
                if conn.in_transaction:  # left by a failed ROLLBACK: never build on it
                    conn.execute(_ROLLBACK_SQL)
                conn.execute(_BEGIN_SQL)
            except Exception as exc:
                for k in range(i, len(batch)):
                    outcomes[k] = (False, _translate(exc))
                return outcomes
            succeeded: list[int] = []
            aborted: BaseException | None = None
            while i < len(batch) and aborted is None:
                k, i = i, i + 1
                try:
                    conn.execute(_SAVEPOINT_SQL)
                    guard.active = True
                    try:
                        value = batch[k].fn(conn)
                    finally:
                        guard.active = False
                except BaseException as exc:
                    outcomes[k] = (False, _translate(exc))
                    try:
                        if not conn.in_transaction:
                            aborted = exc  # SQLite rolled the whole transaction back (e.g. disk full)
                        else:
                            conn.execute(_ROLLBACK_TO_SQL)
                            conn.execute(_RELEASE_SQL)
                    except Exception as infra:
                        aborted = infra
                    continue
                if isinstance(value, _sqlite.Cursor):
                    value = None  # it belongs to the writer's connection and thread
                try:
                    conn.execute(_RELEASE_SQL)
                    outcomes[k] = (True, value)
                    succeeded.append(k)
                except Exception as exc:
                    outcomes[k] = (False, _translate(exc))
                    aborted = exc
            if aborted is None:
                try:
                    conn.execute(_COMMIT_SQL)
                    continue
                except Exception as exc:
                    aborted = exc
            # Nothing since BEGIN is committed: no job of this transaction may be acknowledged.
            if conn.in_transaction:
                try:
                    conn.execute(_ROLLBACK_SQL)
                except Exception:
                    pass  # retried before the next BEGIN
            for k in succeeded:
                outcomes[k] = (False, _neighbour_error(aborted))
        return outcomes

    def _settle(self, batch: list[_Job], outcomes: list[tuple[bool, Any]]) -> None:
        stats = self._stats  # updated first, so a resolved caller sees its batch counted
        stats["batches"] += 1
        stats["jobs"] += len(batch)
        stats["failed_jobs"] += sum(not ok for ok, _ in outcomes)
        stats["largest_batch"] = max(stats["largest_batch"], len(batch))
        by_loop: dict[Any, list[tuple[_Job, bool, Any]]] = {}
        for job, (ok, value) in zip(batch, outcomes):
            if job.loop is None:
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)
                job.slots.release()
            else:
                by_loop.setdefault(job.loop, []).append((job, ok, value))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve_async, items)  # one wake-up per loop per batch
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting for these any more

    def stats(self) -> dict[str, int]:
        """Writer counters (for /metrics): batches, jobs, failed_jobs, largest_batch."""
        return dict(self._stats)

    # -- reads --------------------------------------------------------------------------

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(conn)` inline on this event loop's reader. Only for short, indexed queries."""
        state = self._loop_state()
        if state.reader is None:
            state.reader = _connect(self.path, self._key, writable=False)
        return _run_read(state.reader, fn)

    def read_sync(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(conn)` on a pooled reader in the calling thread (long work, worker threads)."""
        with self.reader() as conn:
            return fn(conn)

    async def read_in_thread(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(conn)` on a pooled reader in a worker thread (exports, reports)."""
        return await asyncio.to_thread(self.read_sync, fn)

    @contextmanager
    def reader(self) -> Iterator[Connection]:
        """Borrow a pooled read-only connection for the duration of the block."""
        if self._closed:
            raise StoreError("the database is closed")
        try:
            handle = self._pool.get(timeout=BORROW_TIMEOUT_S)
        except queue.Empty:
            raise StoreError("every database reader stayed busy; try again") from None
        try:
            handle.guard.active = True
            yield handle.conn
        except _sqlite.Error as exc:
            raise _translate(exc) from exc
        finally:
            handle.guard.active = False
            _end_read(handle.conn)
            if self._closed:
                handle.conn.close()
            else:
                self._pool.put(handle)

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            with self._loops_lock:
                if self._closed:
                    raise StoreError("the database is closed")
                for old in [old for old in self._loops if old.is_closed()]:
                    dead = self._loops.pop(old)
                    if dead.reader is not None:
                        dead.reader.conn.close()
                state = self._loops.setdefault(loop, _LoopState(loop))
        return state

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Run every queued write, stop the writer and close every connection."""
        if threading.current_thread() is self._thread:
            raise StoreError("close was called from inside a write job")
        with self._cv:
            if self._stopping:
                return
            self._stopping = True
            self._cv.notify_all()
        self._thread.join()
        with self._loops_lock:
            self._closed = True
            states, self._loops = list(self._loops.values()), {}
        for state in states:
            if state.reader is not None:
                state.reader.conn.close()
        while True:
            try:
                self._pool.get_nowait().conn.close()
            except queue.Empty:
                break
        self._writer.conn.close()  # last: the last connection checkpoints and removes the WAL

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def snapshot(self, dest: Path) -> None:
        """Write a consistent, encrypted (same key) copy of the database to `dest`, atomically.

        Safe while the database is in use: it reads through SQLite's backup API on a
        connection of its own, so writers are not blocked.
        """
        if self._closed:
            raise StoreError("the database is closed")
        try:
            _snapshot(self.path, self._key, Path(dest))
        except _sqlite.Error as exc:
            raise _translate(exc) from exc

    def rekey(self, new_key: bytes) -> None:
        """Re-encrypt the whole file under `new_key` (SQLCipher `PRAGMA rekey`); the Database ends closed.

        Runs every queued write, closes every connection (they hold the old key), then
        rekeys on a connection of its own: SQLCipher rewrites every page in ONE
        transaction, so a crash leaves the file readable with the old key or with the
        new one, never a mix. Reopen with `Database.open(path, new_key)`. Keeping the key
        files in step, crash-safely, is the caller's job (see app.rekey).
        """
        if not isinstance(new_key, bytes) or len(new_key) != 32:
            raise StoreError("the database key must be 32 bytes (256 bits)")
        self.close()
        handle = _connect(self.path, self._key, writable=True)
        try:
            handle.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            handle.conn.execute(f"PRAGMA rekey = \"x'{new_key.hex()}'\"")
            handle.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page durably under the new key
        except _sqlite.Error as exc:
            raise _translate(exc) from exc
        finally:
            handle.conn.close()
        self._key = new_key

    def size_bytes(self) -> int:
        """Bytes on disk: the database file plus its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.stat(f"{self.path}{suffix}").st_size
            except FileNotFoundError:
                pass
        return total


def _resolve_async(items: list[tuple[_Job, bool, Any]]) -> None:
    for job, ok, value in items:
        job.slots.release()
        if job.future.done():
            continue  # the caller was cancelled; the write still happened (or failed)
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)


def _run_read(handle: _Handle, fn: Callable[[Any], T]) -> T:
    handle.guard.active = True
    try:
        return fn(handle.conn)
    except _sqlite.Error as exc:
        raise _translate(exc) from exc
    finally:
        handle.guard.active = False
        _end_read(handle.conn)


def _end_read(conn: Any) -> None:
    # A transaction left open would pin an old snapshot and stop the WAL from being reset.
    if conn.in_transaction:
        conn.rollback()


def _connect(path: Path, key: bytes, *, writable: bool) -> _Handle:
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
            raise _translate(exc) from exc
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
        conn.execute("PRAGMA temp_store = MEMORY")  # sorts and temp tables never touch the disk
        conn.execute("PRAGMA journal_size_limit = 67108864")  # WAL shrinks back after a long read
        if not writable:
            conn.execute("PRAGMA query_only = ON")
        conn.row_factory = _sqlite.Row
        guard = _Guard()
        conn.set_authorizer(guard)
    except BaseException:
        conn.close()
        raise
    return _Handle(conn, guard)


def _in_callers_context(fn: Callable[[Connection], T]) -> Callable[[Connection], T]:
    """Run a write job in its caller's contextvars (as asyncio.to_thread does): request-scoped
    facts, such as the api.write record a change must carry (audit/apiwrite.py), reach it."""
    return functools.partial(contextvars.copy_context().run, fn)


def _snapshot(path: Path, key: bytes, dest: Path) -> None:
    """Copy the database to `dest` with the backup API, then fsync and rename into place.

    Never a plain file copy: opening and closing the database file in a process where
    SQLite has it open drops SQLite's POSIX locks on it (another process could then
    delete a live WAL). The copy is re-encrypted page by page under the same key.
    """
    tmp = dest.with_name(f".{dest.name}.{os.urandom(8).hex()}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    try:
        source = _connect(path, key, writable=False)
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
            try:
                leftover.unlink()
            except FileNotFoundError:
                pass


def _check_integrity(conn: Any, path: Path) -> None:
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


def _chmod_600(path: Path) -> None:
    try:
        if os.stat(path).st_mode & 0o777 != 0o600:
            os.chmod(path, 0o600)
    except FileNotFoundError:
        pass


def _neighbour_error(cause: BaseException) -> BaseException:
    """The error for a job whose own work was fine but whose transaction was lost."""
    translated = _translate(cause)
    if isinstance(translated, StoreError):
        return translated
    new = StoreError("the change was not saved: the transaction it shared with other changes was rolled back")
    new.__cause__ = cause
    return new


def _code(exc: BaseException) -> int:
    return (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF


def _translate(exc: BaseException) -> BaseException:
    """Map a sqlite (or OS) error to a StoreError subclass; anything else passes through."""
    if isinstance(exc, _sqlite.IntegrityError):
        new: BaseException = ConstraintError(f"the change conflicts with stored data ({exc})")
    elif isinstance(exc, _sqlite.Error):
        code = _code(exc)
        if code == _FULL or "database or disk is full" in str(exc):
            new = DiskFullError(DISK_FULL_MESSAGE)
        elif code in (_CORRUPT, _NOTADB):
            new = CorruptDatabaseError(f"the database is damaged ({exc}); restore it from a backup")
        elif code in (_BUSY, _LOCKED):
            new = StoreError("the database is busy (another process holds it); try again")
        elif code == _AUTH:
            new = StoreError("a write or read job tried transaction control, ATTACH or a settings PRAGMA; only the store may")
        else:
            new = StoreError(f"database error: {exc}")
    elif isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        new = DiskFullError(DISK_FULL_MESSAGE)
    else:
        return exc
    new.__cause__ = exc
    return new
