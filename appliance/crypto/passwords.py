"""Password hashing with argon2id (RFC 9106), off the event loop with bounded concurrency.

Invariants:
- A hash runs on a dedicated pool of `concurrency` threads, so at most
  `concurrency * memory_kib` KiB are in use for hashing whatever the load (AUTH-2).
- At most `max_waiting` callers queue for the pool, and none is queued whose expected
  wait (checks ahead of it x measured hash time / concurrency) exceeds
  `max_wait_seconds`: the rest get HashQueueFullError (503, Retry-After) at once. A
  sign-in flood meets fast refusals instead of every sign-in waiting behind it.
- Newcomers first: a check from a source address that asked for no check in the last
  minute waits only behind other newcomers, never behind the queue that busy addresses
  keep full with their retries; so a person signing in from elsewhere during a flood
  waits about one hash, not the flood's queue.
- Unknown users are checked against a dummy hash so they cost the same time as
  a wrong password (AUTH-4).
- Plain passwords never leave this module other than into argon2.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from appliance.errors import RateLimitedError

RECENT_SECONDS = 60.0  # a source that asked within this long is busy: its checks queue behind newcomers
_MAX_SOURCES = 10_000


def _lower_priority() -> None:
    """Hash threads yield the CPU to the event loop: a login flood must not starve pages."""
    # AttributeError/OSError: not Linux, or not permitted: hashing still works, only less politely
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


class HashQueueFullError(RateLimitedError):
    """Too many password checks are queued to start this one soon: refused at once (503)."""

    code = "busy"
    status = 503

    def __init__(self, retry_after: int) -> None:
        super().__init__("The appliance is busy checking other sign-ins; try again in a few seconds.",
                         retry_after=retry_after)


class PasswordHasher:
    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int, concurrency: int, max_waiting: int = 64,
                 max_wait_seconds: float | None = None) -> None:
        """`max_wait_seconds` None: no time bound (command-line use, which hashes synchronously)."""
        self._argon = _Argon2(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism,
                              hash_len=32, salt_len=16, type=Type.ID)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="argon2",
                                        initializer=_lower_priority)
        self._concurrency = concurrency
        self._waiting_limit = max_waiting  # checks queued for a thread (running ones not counted)
        self._max_wait = max_wait_seconds
        self._free = concurrency  # pool threads not handed to a check
        self._queues: tuple[deque, deque] = (deque(), deque())  # waiting checks: newcomers, busy sources
        self._seen: OrderedDict[str, float] = OrderedDict()  # source -> monotonic time of its last check asked for
        self.refused = 0
        """Checks refused because the queue was full (a counter for /metrics)."""
        started = time.perf_counter()
        self._dummy = self._argon.hash("outpost-dummy-password-for-timing")
        self._seconds = time.perf_counter() - started  # hash cost, updated from every hash (moving average)

    def expected_wait(self, *, newcomer: bool = False) -> float:
        """Seconds a check asked for now would wait for a pool thread (estimate)."""
        if self._free > 0:
            return 0.0
        if newcomer:  # behind other newcomers only, plus the rest of a running hash
            return (len(self._queues[0]) + 0.5) * self._seconds / self._concurrency
        return (len(self._queues[0]) + len(self._queues[1]) + 1) * self._seconds / self._concurrency

    def _timed(self, fn, *args):
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            # One float store: atomic under the GIL, so pool threads need no lock here.
            self._seconds = 0.8 * self._seconds + 0.2 * (time.perf_counter() - started)

    def _newcomer(self, source: str | None, now: float) -> bool:
        return source is not None and now - self._seen.get(source, -math.inf) > RECENT_SECONDS

    async def _acquire(self, source: str | None) -> None:
        """Take a pool thread, queueing (newcomers first) or refusing with HashQueueFullError."""
        now = time.monotonic()
        newcomer = self._newcomer(source, now)
        if source is not None:  # every attempt counts, refused or not: a flooding address is never new
            self._seen[source] = now
            self._seen.move_to_end(source)
            while len(self._seen) > _MAX_SOURCES:
                self._seen.popitem(last=False)
        waiting = len(self._queues[0]) + len(self._queues[1])
        # A newcomer is let in while no other newcomer is ahead, however long the hashes take:
        # otherwise a flood that slows hashing down would shut every newcomer out.
        unbounded = self._max_wait is None or (newcomer and not self._queues[0])
        bound = math.inf if unbounded or self._max_wait is None else self._max_wait
        if waiting >= self._waiting_limit or self.expected_wait(newcomer=newcomer) > bound:
            self.refused += 1
            raise HashQueueFullError(retry_after=max(1, math.ceil(self.expected_wait())))
        if self._free > 0 and not waiting:
            self._free -= 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._queues[0 if newcomer else 1].append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # handed a thread, then cancelled: pass it on
            raise

    def _release(self) -> None:
        """Hand the thread to the next waiting check (newcomers first), or free it."""
        for queue in self._queues:
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self._free += 1

    async def _run(self, fn, *args, source: str | None = None):
        await self._acquire(source)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._timed, fn, *args)
        finally:
            self._release()

    async def hash(self, password: str) -> str:
        """Return an encoded argon2id hash of password."""
        return await self._run(self._argon.hash, password)

    def hash_sync(self, password: str) -> str:
        """Hash from a CLI or worker thread (not on the event loop)."""
        return self._argon.hash(password)

    def _check(self, stored: str | None, password: str) -> tuple[bool, bool]:
        if stored is None:
            with contextlib.suppress(VerificationError):  # same work as a real check, result ignored
                self._argon.verify(self._dummy, password)
            return False, False
        try:
            self._argon.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, False
        return True, self._argon.check_needs_rehash(stored)

    async def verify(self, stored: str | None, password: str, *, source: str | None = None) -> tuple[bool, bool]:
        """Check password against stored (None = unknown user, same cost). `source`: the
        client address, for fair admission (see the module docstring).

        Returns (matches, needs_rehash)."""
        return await self._run(self._check, stored, password, source=source)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
