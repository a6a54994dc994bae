"""Client-side request-rate limit shared by all calls of one client.

CloudStack's api-rate-limit plugin counts calls per account in fixed intervals (default
25 per second) and answers 429 beyond that. We stay below our own limit in *every* window
of ``window`` seconds, and after a 429 we pause every caller until the time the server
named, so that the retry does not hit the same exhausted interval.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable


class RateLimiter:
    """At most ``burst`` request starts in any ``window`` seconds (``burst / window`` = rate).

    Each caller reserves a start slot up front and sleeps once until it: no polling loop, so
    an injected sleep that does not advance the clock cannot make it spin.
    """

    def __init__(
        self,
        requests_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        self.burst = max(1, math.floor(requests_per_second))
        # 5 % margin: the server counts arrivals, which jitter behind our start times.
        self.window = self.burst / requests_per_second * 1.05
        self._clock = clock
        self._sleep = sleep
        self._slots: deque[float] = deque(maxlen=self.burst)
        self._started: deque[float] = deque()
        self._paused_until = -math.inf
        self.waited = 0.0  # total seconds callers were held back (for stats)

    def reserve(self) -> float:
        """Reserve the next start slot; returns how long the caller must wait for it."""
        now = self._clock()
        slot = max(now, self._paused_until)
        if len(self._slots) == self.burst:
            slot = max(slot, self._slots[0] + self.window)
        self._slots.append(slot)
        return slot - now

    async def acquire(self) -> None:
        """Wait for a start slot, then for room among the starts that really happened."""
        delay = self.reserve()
        if delay > 0:
            self.waited += delay
            await self._sleep(delay)
        # A busy event loop (ledger writes, parsing) wakes callers late, and late starts would
        # bunch up with punctual ones: check the window of actual starts before going. Bounded,
        # so a test clock that never advances cannot make it spin.
        for _ in range(8):
            now = self._clock()
            while self._started and self._started[0] <= now - self.window:
                self._started.popleft()
            if len(self._started) < self.burst:
                break
            wait = self._started[0] + self.window - now
            if wait <= 0:
                break
            self.waited += wait
            await self._sleep(wait)
        self._started.append(self._clock())
        while len(self._started) > self.burst:
            self._started.popleft()

    def pause_for(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` from now (after a 429)."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))


__all__ = ["RateLimiter"]
