"""A virtual clock (scenario steps run when a test or the CLI ticker advances it) and time zones."""

from __future__ import annotations

import heapq
import itertools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: Where an embedded simulator's clock starts unless told otherwise. In the past on purpose:
#: clients sign ``expires`` with their real clock, and tests advance the virtual one by hours.
DEFAULT_START = datetime(2025, 6, 2, 8, 0, 0, tzinfo=UTC)


@dataclass(order=True)
class _Step:
    at: float
    seq: int
    fn: Callable[[], None] = field(compare=False)
    label: str = field(compare=False, default="")
    cancelled: bool = field(compare=False, default=False)


class StepHandle:
    """A scheduled step; ``cancel()`` keeps it from running."""

    def __init__(self, step: _Step) -> None:
        self._step = step

    @property
    def at(self) -> float:
        return self._step.at

    def cancel(self) -> None:
        self._step.cancelled = True


class VirtualClock:
    """Epoch-second time that only moves when :meth:`advance` (or ``advance_to``) is called.

    Steps scheduled for a moment run in time order (then scheduling order) while the clock
    passes that moment, with ``now`` set to the step's time, under the simulator's lock.
    """

    def __init__(self, start: datetime | None = None, lock: threading.RLock | None = None) -> None:
        begin = start or DEFAULT_START
        if begin.tzinfo is None:
            raise ValueError("the clock needs an aware start datetime")
        self._now = begin.timestamp()
        self._queue: list[_Step] = []
        self._seq = itertools.count()
        self.lock = lock or threading.RLock()

    def time(self) -> float:
        """Virtual epoch seconds."""
        return self._now

    def now(self) -> datetime:
        """Virtual time as an aware UTC datetime."""
        return datetime.fromtimestamp(self._now, UTC)

    def schedule(self, at: float, fn: Callable[[], None], label: str = "") -> StepHandle:
        """Run ``fn`` when the clock reaches epoch second ``at`` (at once on the next advance
        if ``at`` is already past)."""
        step = _Step(max(at, self._now), next(self._seq), fn, label)
        with self.lock:
            heapq.heappush(self._queue, step)
        return StepHandle(step)

    def call_later(self, delay: float, fn: Callable[[], None], label: str = "") -> StepHandle:
        """Run ``fn`` ``delay`` virtual seconds from now."""
        return self.schedule(self._now + max(0.0, delay), fn, label)

    def pending(self) -> int:
        """Steps still waiting."""
        with self.lock:
            return sum(1 for s in self._queue if not s.cancelled)

    def next_due(self) -> float | None:
        """Epoch second of the next waiting step, if any."""
        with self.lock:
            while self._queue and self._queue[0].cancelled:
                heapq.heappop(self._queue)
            return self._queue[0].at if self._queue else None

    def advance(self, seconds: float) -> int:
        """Move time forward, running every step that falls due; returns how many ran."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        return self.advance_to(self._now + seconds)

    def advance_to(self, target: float | datetime) -> int:
        """Move time forward to ``target`` (epoch seconds or datetime), running due steps."""
        end = target.timestamp() if isinstance(target, datetime) else float(target)
        ran = 0
        with self.lock:
            while self._queue and self._queue[0].at <= end:
                step = heapq.heappop(self._queue)
                if step.cancelled:
                    continue
                self._now = max(self._now, step.at)
                step.fn()
                ran += 1
            self._now = max(self._now, end)
        return ran

    def run_until_idle(self, limit: float = 30 * 86400.0) -> float:
        """Advance step by step until nothing is scheduled (at most ``limit`` seconds)."""
        start = self._now
        while True:
            due = self.next_due()
            if due is None or due - start > limit:
                break
            self.advance_to(due)
        return self._now - start


def parse_timezone(text: str) -> tzinfo:
    """``+0530``, ``+05:30``, ``-08``, ``UTC``/``Z`` or an IANA name such as ``Asia/Kolkata``."""
    value = text.strip()
    if value.upper() in ("UTC", "Z", "GMT"):
        return UTC
    match = re.fullmatch(r"([+-])(\d{2}):?(\d{2})?", value)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        delta = timedelta(hours=int(match.group(2)), minutes=int(match.group(3) or 0))
        if delta >= timedelta(hours=24):
            raise ValueError(f"time zone offset out of range: {text!r}")
        return timezone(sign * delta)
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {text!r}: use an offset like +0530 or a name like Asia/Kolkata"
        ) from None
