"""The single writer thread and its group commit.

One thread owns the only writable connection. Callers queue jobs (`fn(conn)`); the
writer takes every queued job (up to MAX_BATCH), runs them in one `BEGIN IMMEDIATE`
transaction, each inside its own SAVEPOINT, and COMMITs once: one fsync for the whole
batch (group commit, as in Datasette's write thread and Teleport's SQLite backend).

Invariants (what must never happen):
- A job is acknowledged before the COMMIT holding its change returned.
- A failing job leaves any of its own changes behind, or undoes a neighbour's: its
  SAVEPOINT is rolled back alone. If SQLite aborts the whole transaction (disk full),
  every job in it is told it failed; none is acknowledged.
- A caller waits forever: a fault in the writer itself fails the whole batch.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from appliance.store import driver
from appliance.store.errors import StoreError

MAX_BATCH = 512  # jobs per transaction: bounds a batch's latency and its SAVEPOINT work

# Distinct texts: the authorizer only sees a statement when it is compiled, so a job using
# exactly the writer's text would get the writer's cached statement unchecked.
_BEGIN_SQL = "BEGIN IMMEDIATE -- outpost writer"
_COMMIT_SQL = "COMMIT -- outpost writer"
_ROLLBACK_SQL = "ROLLBACK -- outpost writer"
_SAVEPOINT_SQL = "SAVEPOINT outpost_writer_job"
_ROLLBACK_TO_SQL = "ROLLBACK TO outpost_writer_job"
_RELEASE_SQL = "RELEASE outpost_writer_job"

Outcome = tuple[bool, Any]  # (ok, value or exception)


class Job:
    """One queued write: `fn`, the future its caller waits on, and the slot it holds.

    `loop` is the caller's event loop (an asyncio future), or None (a concurrent.futures one).
    """

    __slots__ = ("fn", "future", "loop", "slots")

    def __init__(self, fn: Callable[[Any], Any], future: Any, loop: Any, slots: Any) -> None:
        self.fn, self.future, self.loop, self.slots = fn, future, loop, slots


class Writer:
    """The writer thread over `handle` (a writable connection it alone uses from now on)."""

    def __init__(self, handle: driver.Handle) -> None:
        self._handle = handle
        self._jobs: collections.deque[Job] = collections.deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._stats = {"batches": 0, "jobs": 0, "failed_jobs": 0, "largest_batch": 0}
        self._thread = threading.Thread(target=self._main, name="outpost-db-writer", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Jobs waiting for the next batch."""
        return len(self._jobs)

    def on_writer_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, job: Job) -> None:
        with self._cv:
            if self._stopping:
                raise StoreError("the database is closed")
            self._jobs.append(job)
            self._cv.notify()

    def stop(self) -> bool:
        """Run every queued job, then stop the thread and close the connection. False if already stopped."""
        with self._cv:
            if self._stopping:
                return False
            self._stopping = True
            self._cv.notify_all()
        self._thread.join()
        return True

    def close_connection(self) -> None:
        self._handle.conn.close()

    def stats(self) -> dict[str, int]:
        """Counters (for /metrics): batches, jobs, failed_jobs, largest_batch."""
        return dict(self._stats)

    def _main(self) -> None:
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
                outcomes = [(False, driver.neighbour_error(bug)) for _ in batch]
            self._settle(batch, outcomes)

    def _run_batch(self, batch: list[Job]) -> list[Outcome]:
        """Run jobs in as few transactions as possible; return (ok, value-or-exception) per job."""
        conn = self._handle.conn
        outcomes: list[Outcome] = [(False, None)] * len(batch)
        i = 0
        while i < len(batch):
            try:
                if conn.in_transaction:  # left by a failed ROLLBACK: never build on it
                    conn.execute(_ROLLBACK_SQL)
                conn.execute(_BEGIN_SQL)
            except Exception as exc:
                for k in range(i, len(batch)):
                    outcomes[k] = (False, driver.translate(exc))
                return outcomes
            i = self._run_transaction(batch, i, outcomes)
        return outcomes

    def _run_transaction(self, batch: list[Job], i: int, outcomes: list[Outcome]) -> int:
        """Run jobs from `i` in the open transaction until the batch ends or the transaction is lost;
        COMMIT, and return the index of the first job not yet run."""
        conn = self._handle.conn
        succeeded: list[int] = []
        aborted: BaseException | None = None
        while i < len(batch) and aborted is None:
            k, i = i, i + 1
            aborted = self._run_job(batch[k], k, outcomes)
            if aborted is None and outcomes[k][0]:
                succeeded.append(k)
        if aborted is None:
            try:
                conn.execute(_COMMIT_SQL)
                return i
            except Exception as exc:
                aborted = exc
        # Nothing since BEGIN is committed: no job of this transaction may be acknowledged.
        if conn.in_transaction:
            with contextlib.suppress(Exception):  # retried before the next BEGIN
                conn.execute(_ROLLBACK_SQL)
        for k in succeeded:
            outcomes[k] = (False, driver.neighbour_error(aborted))
        return i

    def _run_job(self, job: Job, k: int, outcomes: list[Outcome]) -> BaseException | None:
        """Run one job in its SAVEPOINT; set its outcome; return what lost the transaction, if anything."""
        conn, guard = self._handle.conn, self._handle.guard
        try:
            conn.execute(_SAVEPOINT_SQL)
            guard.active = True
            try:
                value = job.fn(conn)
            finally:
                guard.active = False
        except BaseException as exc:
            outcomes[k] = (False, driver.translate(exc))
            try:
                if not conn.in_transaction:
                    return exc  # SQLite rolled the whole transaction back (e.g. disk full)
                conn.execute(_ROLLBACK_TO_SQL)
                conn.execute(_RELEASE_SQL)
            except Exception as infra:
                return infra
            return None
        if driver.is_cursor(value):
            value = None  # it belongs to the writer's connection and thread
        try:
            conn.execute(_RELEASE_SQL)
            outcomes[k] = (True, value)
        except Exception as exc:
            outcomes[k] = (False, driver.translate(exc))
            return exc
        return None

    def _settle(self, batch: list[Job], outcomes: list[Outcome]) -> None:
        stats = self._stats  # updated first, so a resolved caller sees its batch counted
        stats["batches"] += 1
        stats["jobs"] += len(batch)
        stats["failed_jobs"] += sum(not ok for ok, _ in outcomes)
        stats["largest_batch"] = max(stats["largest_batch"], len(batch))
        by_loop: dict[Any, list[tuple[Job, bool, Any]]] = {}
        for job, (ok, value) in zip(batch, outcomes, strict=True):
            if job.loop is None:
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)
                job.slots.release()
            else:
                by_loop.setdefault(job.loop, []).append((job, ok, value))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting for these any more
                loop.call_soon_threadsafe(_resolve_async, items)  # one wake-up per loop per batch


def _resolve_async(items: list[tuple[Job, bool, Any]]) -> None:
    for job, ok, value in items:
        job.slots.release()
        if job.future.done():
            continue  # the caller was cancelled; the write still happened (or failed)
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)
