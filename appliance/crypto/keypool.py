"""A small, bounded pool for parsing uploaded keys and certificate files (issue 11, finding 8).

Opening an encrypted key derives a key from its passphrase: up to a few seconds of CPU
even within the caps of kdfcost.py. That work runs here, on its own few threads, never
on the event loop and never in the default executor (which database reads, hashing and
other short jobs share), and with a queue limit: when `workers + queue` parses are
already in flight, the next one is refused at once (503, "try again") instead of
waiting, so a flood of uploads cannot starve other requests.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from appliance.errors import RateLimitedError

T = TypeVar("T")


class KeyPoolBusyError(RateLimitedError):
    """503 with Retry-After (the web layer sets the header for every RateLimitedError)."""

    code = "busy"
    status = 503

    def __init__(self) -> None:
        super().__init__("Too many keys are being checked right now; try again in a few seconds.", retry_after=5)


class KeyPool:
    def __init__(self, *, workers: int = 1, queue: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="outpost-keys")
        self._limit = workers + queue
        self._in_flight = 0
        self._lock = threading.Lock()

    async def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """fn(*args, **kwargs) on the pool; KeyPoolBusyError at once when it is full.

        A slot is freed when the work ENDS, not when the caller stops waiting: a client that
        disconnects does not free room for more work while its parse still runs."""
        with self._lock:
            if self._in_flight >= self._limit:
                raise KeyPoolBusyError()
            self._in_flight += 1
        try:
            future = self._pool.submit(functools.partial(fn, *args, **kwargs))
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _release(self, _future) -> None:
        with self._lock:
            self._in_flight -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
