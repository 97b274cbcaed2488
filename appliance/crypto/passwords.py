"""Password hashing with argon2id (RFC 9106), off the event loop with bounded concurrency.

Invariants:
- A hash runs on a dedicated pool of `concurrency` threads, so at most
  `concurrency * memory_kib` KiB are in use for hashing whatever the load (AUTH-2).
- At most `max_waiting` callers queue for the pool; the rest are told to retry
  (a login flood cannot pile up unbounded work or memory).
- Unknown users are checked against a dummy hash so they cost the same time as
  a wrong password (AUTH-4).
- Plain passwords never leave this module other than into argon2.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from appliance.errors import RateLimitedError


def _lower_priority() -> None:
    """Hash threads yield the CPU to the event loop: a login flood must not starve pages."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass  # not Linux, or not permitted: hashing still works, only less politely


class PasswordHasher:
    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int, concurrency: int, max_waiting: int = 64) -> None:
        self._argon = _Argon2(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism,
                              hash_len=32, salt_len=16, type=Type.ID)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="argon2", initializer=_lower_priority)
        self._waiting_limit = concurrency + max_waiting
        self._in_flight = 0
        self._dummy = self._argon.hash("outpost-dummy-password-for-timing")

    async def _run(self, fn, *args):
        if self._in_flight >= self._waiting_limit:
            raise RateLimitedError("the appliance is busy checking passwords; try again in a few seconds", retry_after=5)
        self._in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._in_flight -= 1

    async def hash(self, password: str) -> str:
        """Return an encoded argon2id hash of password."""
        return await self._run(self._argon.hash, password)

    def hash_sync(self, password: str) -> str:
        """Hash from a CLI or worker thread (not on the event loop)."""
        return self._argon.hash(password)

    def _check(self, stored: str | None, password: str) -> tuple[bool, bool]:
        if stored is None:
            try:
                self._argon.verify(self._dummy, password)
            except VerificationError:
                pass
            return False, False
        try:
            self._argon.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, False
        return True, self._argon.check_needs_rehash(stored)

    async def verify(self, stored: str | None, password: str) -> tuple[bool, bool]:
        """Check password against stored (None = unknown user, same cost).

        Returns (matches, needs_rehash)."""
        return await self._run(self._check, stored, password)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
