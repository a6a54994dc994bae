"""Client-side request-rate limit shared by all calls of one client.

CloudStack's api-rate-limit plugin counts calls per account in fixed intervals (default
25 per second) and answers 429 beyond that. We keep at most ``burst`` requests in *every*
window of ``window`` seconds *as the server counts them*, and after a 429 we pause every
caller until the time the server named, so that the retry does not hit the same interval.

The server counts a request somewhere between the moment we start sending it and the moment
its answer reaches us; we cannot see where. Timing the window from the moment a slot was
granted (with a 5 % margin for the rest) was wrong twice over: the event loop may run other
work (parsing a 500-row page, ledger writes) for hundreds of milliseconds between the grant and
the send, and a busy server may count a request tens of milliseconds after it arrived. Both
let requests granted a window apart be counted within one window (the benchmark measured 21
per second at a limit of 20, 61 at 60). So a granted :class:`Start` stays *pending* — it
counts in every window from its grant on — until :meth:`Start.counted` dates it when the
server has certainly counted it: when the answer's headers arrive (or the request failed).
Only then does it begin to age out of the window. This holds whatever the delays, needs no
margin for jitter, and costs each slot only the request's latency.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

#: Extra share of the window for clocks that disagree slightly: the server may time its
#: window in whole milliseconds, and NTP slews a clock's rate by up to 0.05 %.
CLOCK_MARGIN = 0.002
#: Consecutive sleeps after which a clock that has not moved is a bug (an injected test clock
#: that the injected sleep does not advance), reported instead of spinning for ever.
MAX_STALLED_SLEEPS = 100
#: Shortest sleep: a wait of a few ulps would not move a float clock at all.
MIN_SLEEP = 1e-6

TraceCallback = Callable[[str, Mapping[str, Any]], Awaitable[None]]


class Start:
    """One granted request start: pending until :meth:`counted`, then dated by it."""

    __slots__ = ("_limiter", "at", "waited")

    def __init__(self, limiter: RateLimiter, waited: float) -> None:
        self._limiter = limiter
        #: When the server had certainly counted the request (None while pending).
        self.at: float | None = None
        #: Seconds this caller was held back by the limit (and any 429 pause).
        self.waited = waited

    def counted(self) -> None:
        """The server has counted the request by now (its answer is here): date the start.

        Only the first call counts: later ones are no-ops.
        """
        if self.at is None:
            self._limiter._date(self)

    def settle(self) -> None:
        """The request is over, answered or failed: date it now unless already dated."""
        self.counted()

    def tracer(self, outer: TraceCallback | None = None) -> TraceCallback:
        """An httpcore ``trace`` extension: :meth:`counted` once the answer's headers are in.

        The CONNECT of a proxy tunnel is not our request and is ignored. ``outer`` (an
        existing trace callback) is still called for every event.
        """

        async def trace(name: str, info: Mapping[str, Any]) -> None:
            if name.endswith(".receive_response_headers.complete"):
                request = info.get("request")
                if getattr(request, "method", b"") != b"CONNECT":
                    self.counted()
            if outer is not None:
                await outer(name, info)

        return trace


class RateLimiter:
    """At most ``burst`` request starts in any ``window`` seconds (``burst / window`` = rate).

    A start counts from its grant until ``window`` seconds after the server had certainly
    counted it (see the module docstring). Callers are served first come, first served; the
    window is checked until there is room, however often a caller is woken early or late.
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
        self.window = self.burst / requests_per_second * (1 + CLOCK_MARGIN)
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()  # FIFO: one caller at a time waits for room
        self._dated: deque[float] = deque()  # dates of the dated starts, oldest first
        self._pending = 0
        self._on_dated: asyncio.Event | None = None
        self._paused_until = -math.inf
        self.waited = 0.0  # total seconds callers were held back (for stats)

    async def acquire(self) -> Start:
        """Wait for room in the window (and past any 429 pause); returns the pending start.

        The caller must call :meth:`Start.counted` once the answer is in, or :meth:`Start.settle`
        when the request ended; until then the start holds its place in every window.
        """
        async with self._lock:
            waited = await self._wait_for_room()
            self._pending += 1
            return Start(self, waited)

    async def _wait_for_room(self) -> float:
        waited = 0.0
        stalled = 0
        while True:
            now = self._clock()
            self._expire(now)
            if now < self._paused_until:
                wait = self._paused_until - now
            elif self._pending + len(self._dated) < self.burst:
                return waited
            elif self._dated:
                wait = self._dated[0] + self.window - now  # the oldest dated start ages out
            else:
                # Every start in the window is still pending: none can age out before it is
                # dated, so wait for one to be, then for it to age out.
                self._on_dated = event = asyncio.Event()
                try:
                    await event.wait()
                finally:
                    self._on_dated = None
                held = max(0.0, self._clock() - now)
                waited += held
                self.waited += held
                continue
            wait = max(wait, MIN_SLEEP)
            waited += wait
            self.waited += wait
            await self._sleep(wait)
            if self._clock() > now:
                stalled = 0
                continue
            stalled += 1
            if stalled >= MAX_STALLED_SLEEPS:
                raise RuntimeError(
                    f"rate limiter: the clock stayed at {now} through {stalled} sleeps; "
                    "an injected clock must advance with the injected sleep"
                )

    def _expire(self, now: float) -> None:
        while self._dated and self._dated[0] <= now - self.window:
            self._dated.popleft()

    def _date(self, start: Start) -> None:
        now = self._clock()
        if self._dated and now < self._dated[-1]:  # a clock that went back: keep the order
            now = self._dated[-1]
        start.at = now
        self._pending -= 1
        self._dated.append(now)
        if self._on_dated is not None:
            self._on_dated.set()

    def pause_for(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` from now (after a 429)."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))


__all__ = ["CLOCK_MARGIN", "MAX_STALLED_SLEEPS", "RateLimiter", "Start"]
