"""Per-source-address rate limiting for login and setup (AUTH-4).

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
