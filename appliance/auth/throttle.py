"""Per-source-address rate limiting for login and setup, and per-(address, account)
failure budgets that engage before the account lockout (AUTH-4).

A fixed-size sliding window per address in memory. Memory is bounded: at most
`max_sources` addresses are tracked; the oldest entries are dropped first.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from appliance.clock import Clock


class Throttle:
    def __init__(self, *, limit: int, window: float, clock: Clock, max_sources: int = 10_000) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._max = max_sources
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def hit(self, source: str) -> bool:
        """Count one attempt from source; False if it is over the limit (then it is not counted)."""
        now = self._clock.monotonic()
        hits = self._hits.get(source)
        if hits is None:
            hits = self._hits[source] = deque()
            while len(self._hits) > self._max:
                self._hits.popitem(last=False)
        while hits and hits[0] <= now - self._window:
            hits.popleft()
        if len(hits) >= self._limit:
            return False
        hits.append(now)
        self._hits.move_to_end(source)
        return True

    def retry_after(self, source: str) -> int:
        hits = self._hits.get(source)
        if not hits:
            return 0
        return max(1, int(hits[0] + self._window - self._clock.monotonic()) + 1)


class AccountFailures:
    """Failed proofs (passwords, codes) per (source address, account) in a sliding window.

    NIST SP 800-63B 5.2.2: throttle first, lock out last. The service refuses a source
    that used up its budget for an account before any password check, so one address
    cannot add more than the budget to the account's lockout count per window. Keys are
    bounded like Throttle's (oldest dropped first). Limit and window are passed per call:
    they follow the security policy, which admins change at run time."""

    def __init__(self, *, clock: Clock, max_keys: int = 10_000) -> None:
        self._clock = clock
        self._max = max_keys
        self._fails: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    @staticmethod
    def key(source: str, username: str) -> tuple[str, str]:
        return source, username.strip().lower()[:64]

    def _recent(self, key: tuple[str, str], window: float) -> deque[float] | None:
        fails = self._fails.get(key)
        if fails is not None:
            cutoff = self._clock.monotonic() - window
            while fails and fails[0] <= cutoff:
                fails.popleft()
        return fails

    def exhausted(self, key: tuple[str, str], limit: int, window: float) -> bool:
        fails = self._recent(key, window)
        return fails is not None and len(fails) >= limit

    def retry_after(self, key: tuple[str, str], window: float) -> int:
        fails = self._recent(key, window)
        return max(1, int(fails[0] + window - self._clock.monotonic()) + 1) if fails else 1

    def fail(self, key: tuple[str, str]) -> None:
        self._fails.setdefault(key, deque()).append(self._clock.monotonic())
        self._fails.move_to_end(key)
        while len(self._fails) > self._max:
            self._fails.popitem(last=False)

    def clear(self, key: tuple[str, str]) -> None:
        self._fails.pop(key, None)
