"""`Database`: every connection to one SQLCipher 4 file, behind one object.

Writes: `write(fn)` / `write_sync(fn)` queue `fn(conn)` for the single writer thread
(store/writer.py: one `BEGIN IMMEDIATE` transaction per batch, a SAVEPOINT per job, one
COMMIT). Reads: `read(fn)` runs inline on the event loop with that loop's own reader
connection (a short indexed query costs microseconds, a thread hop ~330 µs); `read_sync`,
`reader()` and `read_in_thread` borrow a pooled reader for long work in threads.
Connections come from store/driver.py, the only importer of sqlcipher3.

Invariants (what must never happen):
- A caller is told "done" before the COMMIT holding its change returned (journal_mode=WAL,
  synchronous=FULL: the WAL is fsynced at every COMMIT, so acknowledged writes survive
  kill -9 and power loss). WAL because inline reads must never wait for the writer;
  FULL rather than NORMAL because NORMAL may lose the last commits on power loss, which
  a kill -9 test cannot show, and group commit shares one fsync among the whole batch.
- Readers write: reader connections are `query_only`.
- A wrong key, a damaged file or a failed check is used anyway (WrongKeyError,
  CorruptDatabaseError at open).
- The queue grows without limit: each loop, and the sync callers together, have at most
  MAX_PENDING jobs in flight; further callers wait (backpressure).
- A caller sees a sqlcipher3 exception type, or key bytes in a message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from appliance.store import driver
from appliance.store.atomic import fsync_dir
from appliance.store.driver import Connection, Cursor
from appliance.store.errors import StoreError
from appliance.store.migrate import Migration, OnMigrate, migrate
from appliance.store.writer import Job, Writer

__all__ = ["Connection", "Cursor", "Database"]

T = TypeVar("T")

MAX_PENDING = 4096  # jobs in flight per event loop (and for all sync callers together)
BORROW_TIMEOUT_S = 30.0


class _LoopState:
    """Per event loop: its inline reader and its backpressure semaphore."""

    __slots__ = ("loop", "reader", "slots")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop: asyncio.AbstractEventLoop = loop
        self.reader: driver.Handle | None = None
        self.slots = asyncio.Semaphore(MAX_PENDING)


class Database:
    """All connections to one encrypted database file. Construct with `Database.open`."""

    def __init__(self, path: Path, key: bytes, writer: driver.Handle, pool: list[driver.Handle]) -> None:
        self.path = path
        self._key = key  # kept to open a reader for each new event loop; never logged
        self._pool: queue.LifoQueue[driver.Handle] = queue.LifoQueue()
        for handle in pool:
            self._pool.put(handle)
        self._loops: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._loops_lock = threading.Lock()
        self._sync_slots = threading.BoundedSemaphore(MAX_PENDING)
        self._closed = False
        self._writer = Writer(writer)

    def __repr__(self) -> str:
        return f"<Database {self.path}>"

    @classmethod
    def open(cls, path: Path, key: bytes, *, readers: int = 4, create: bool = True,
             migrations: Sequence[Migration] | None = None, on_migrate: OnMigrate | None = None) -> Database:
        """Open (or create) the database, check it, migrate it, and start the writer.
        `on_migrate` runs inside the migration's transaction (store/migrate.py OnMigrate).

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
        handles: list[driver.Handle] = []
        try:
            # Checks and migrations run on a connection of their own, closed afterwards: its
            # cached BEGIN/COMMIT statements must not be reachable from write jobs.
            setup = driver.connect(path, key, writable=True)
            handles.append(setup)
            _prepare(setup, path, key, migrations, on_migrate)
            writer = driver.connect(path, key, writable=True)
            handles.append(writer)
            pool = [driver.connect(path, key, writable=False) for _ in range(readers)]
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
        job = Job(_in_callers_context(fn), state.loop.create_future(), state.loop, state.slots)
        try:
            self._writer.submit(job)
        except BaseException:
            state.slots.release()
            raise
        return await job.future

    def write_sync(self, fn: Callable[[Connection], T]) -> T:
        """Like `write`, blocking the calling thread (CLI, worker threads)."""
        if self._writer.on_writer_thread():
            raise StoreError("write_sync was called from inside a write job; it would wait for itself")
        self._sync_slots.acquire()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        job = Job(_in_callers_context(fn), future, None, self._sync_slots)
        try:
            self._writer.submit(job)
        except BaseException:
            self._sync_slots.release()
            raise
        return future.result()

    def stats(self) -> dict[str, int]:
        """Writer counters (for /metrics): batches, jobs, failed_jobs, largest_batch."""
        return self._writer.stats()

    # -- reads --------------------------------------------------------------------------

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(conn)` inline on this event loop's reader. Only for short, indexed queries."""
        state = self._loop_state()
        if state.reader is None:
            state.reader = driver.connect(self.path, self._key, writable=False)
        return driver.run_read(state.reader, fn)

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
        except driver.Error as exc:
            raise driver.translate(exc) from exc
        finally:
            handle.guard.active = False
            driver.end_read(handle.conn)
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
        if self._writer.on_writer_thread():
            raise StoreError("close was called from inside a write job")
        if not self._writer.stop():
            return
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
        self._writer.close_connection()  # last: the last connection checkpoints and removes the WAL

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
            driver.copy_database(self.path, self._key, Path(dest))
        except driver.Error as exc:
            raise driver.translate(exc) from exc

    def rekey(self, new_key: bytes) -> None:
        """Re-encrypt the whole file under `new_key` (SQLCipher `PRAGMA rekey`); the Database ends closed.

        Runs every queued write, closes every connection (they hold the old key), then
        rekeys on a connection of its own: SQLCipher rewrites every page in ONE
        transaction, so a crash leaves the file readable with the old key or with the
        new one, never a mix. Reopen with `Database.open(path, new_key)`. Keeping the key
        files in step, crash-safely, is the caller's job (see store/keys.py).
        """
        if not isinstance(new_key, bytes) or len(new_key) != 32:
            raise StoreError("the database key must be 32 bytes (256 bits)")
        self.close()
        driver.rekey_file(self.path, self._key, new_key)
        self._key = new_key

    def size_bytes(self) -> int:
        """Bytes on disk: the database file plus its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total


def _prepare(setup: driver.Handle, path: Path, key: bytes, migrations: Sequence[Migration] | None,
             on_migrate: OnMigrate | None) -> None:
    """Check the file, switch it to WAL, migrate it (snapshot first), and make its files 0600."""
    driver.check_integrity(setup.conn, path)
    mode = setup.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        raise StoreError(f"the database {path} cannot use write-ahead logging (journal mode {mode})")
    try:
        migrate(setup.conn, migrations, snapshot=lambda dest: driver.copy_database(path, key, dest),
                on_migrate=on_migrate)
    except driver.Error as exc:
        raise driver.translate(exc) from exc
    for suffix in ("", "-wal", "-shm"):
        _chmod_600(Path(f"{path}{suffix}"))


def _in_callers_context(fn: Callable[[Connection], T]) -> Callable[[Connection], T]:
    """Run a write job in its caller's contextvars (as asyncio.to_thread does): request-scoped
    facts, such as the api.write record a change must carry (audit/apiwrite.py), reach it."""
    context = contextvars.copy_context()
    return lambda conn: context.run(fn, conn)


def _chmod_600(path: Path) -> None:
    try:
        if os.stat(path).st_mode & 0o777 != 0o600:
            os.chmod(path, 0o600)
    except FileNotFoundError:
        pass
