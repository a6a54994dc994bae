"""Clock skew measured with the signature itself: signed calls with chosen ``expires`` bracket it.

Upstream's Jetty sends no ``Date`` header, so the skew S (server clock minus ours, seconds) is
read from what the server does with a signature-version-3 request: it refuses it (401) once its
``expires`` is past by the server's clock. A call whose ``expires`` lies ``o`` seconds after our
clock is accepted while S <= o and refused once S > o, so accepted offsets bound S from above,
refused ones from below, and a bisection brackets S to :data:`PRECISION` seconds.

4.21's ``enforce.post.requests.and.timestamps`` also refuses an ``expires`` more than 15 minutes
after the server's now (S < o - 900). The probe never asks further ahead than that of any skew
it still holds possible, so such a refusal is never misread as "expired": below an offset that
was accepted every offset is within the limit, and before any was accepted the probe steps up
at most :data:`STEP` seconds past the last refusal. A refusal above an accepted offset can only
be that limit; it proves the enforcement is on and bounds S from both sides.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

log = logging.getLogger(__name__)

#: 4.21+ with enforcement: ``expires`` at most this many seconds after the server's now.
MAX_EXPIRES_AHEAD = 900.0
#: How far past the last refusal a search step may go: under the limit by a margin for the
#: time a refused call spent between its signing and the server's check.
STEP = MAX_EXPIRES_AHEAD - 10.0
#: Windows of STEP seconds searched ahead of a refused call's ``expires`` (our clock slow,
#: the common case), and behind it (possible only with 4.21's limit on).
WINDOWS_AHEAD = 2
WINDOWS_BEHIND = 1
#: Width of the bracket the bisection stops at (``expires`` has whole seconds).
PRECISION = 2.0
#: Distances from the guessed skew tried first, on the side the answers point to, each
#: eight times the last: clocks mostly agree to a second, else drift by seconds or minutes.
#: (Whole-second ``expires`` round ±0.5 s around the guess to a bracket under PRECISION.)
RINGS = (0.5, 8.5, 68.0, 544.0)
#: Most signed calls one measurement makes: 2 when the clocks agree (or a Date header was
#: right), 4 to 6 for a skew of seconds, 8 to 14 for minutes. After a refusal: 1 to ask
#: again, up to 3 to find an accepted window, 9 to halve its 890 s to 2 s.
MAX_CALLS = 14

#: Sends one signed call with this ``expires``: True when accepted, False when refused (401).
Send = Callable[[datetime], Awaitable[bool]]


@dataclass(frozen=True)
class SkewBracket:
    """What signed probes proved about S = server clock minus ours: ``low < S <= high``."""

    low: float | None
    """None: not bounded below within the searched range (at least ``high`` behind)."""
    high: float | None
    """None: no probe was accepted (the key, or a skew beyond the searched range)."""
    calls: int
    searched: tuple[float, float]
    """The range of S the probes could have found (for the message when none was accepted)."""
    lifetime_refused: bool | None = None
    """After a refusal: whether the probe's own call signed as it was got refused too (so the
    clock, not a passing cause, refused it); None when not asked."""

    @property
    def key_works(self) -> bool:
        """A signed call was accepted: the key, secret and account are fine."""
        return self.high is not None

    @property
    def consistent(self) -> bool:
        """False when the answers contradict each other (a refusal with another cause)."""
        return self.low is None or self.high is None or self.low < self.high

    @property
    def exact(self) -> bool:
        """Bounded on both sides (else only "at least ``high`` behind" is known)."""
        return self.low is not None and self.high is not None and self.consistent

    @property
    def seconds(self) -> float | None:
        """The estimate: the middle of the bracket, or its one bound; None when unknown."""
        if self.high is None or not self.consistent:
            return None
        return self.high if self.low is None else (self.low + self.high) / 2


@dataclass
class _Evidence:
    """Probe results as values v of ``expires`` minus our clock: accepted S <= v, refused S > v."""

    accepted: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)

    def bounds(self) -> tuple[float | None, float | None]:
        """(low, high) as the results so far prove them (None: unbounded)."""
        if not self.accepted:
            # Every probe stayed within the limit of the lowest skew still possible: "expired".
            return max(self.refused, default=None), None
        high = min(self.accepted)
        expired = [v for v in self.refused if v < high]
        low = max(expired, default=None)
        too_far = [v for v in self.refused if v >= high]
        if too_far:
            # Only 4.21's limit refuses an expires later than an accepted one: it is on, so
            # every accepted offset is at most 900 s ahead of the server, every refused one more.
            high = min(high, min(too_far) - MAX_EXPIRES_AHEAD)
            inferred = max(self.accepted) - MAX_EXPIRES_AHEAD
            low = inferred if low is None else max(low, inferred)
        return low, high


class SkewProbe:
    """One measurement: a few signed calls with chosen ``expires``, at most ``max_calls``."""

    def __init__(
        self,
        send: Send,
        *,
        now: Callable[[], float],
        lifetime: float,
        max_calls: int = MAX_CALLS,
    ) -> None:
        self._send = send
        self._now = now
        self.lifetime = lifetime
        self.max_calls = max_calls
        self.calls = 0
        #: The longest call: a bracket cannot be narrower than the moment of the check is known.
        self.spread = 0.0
        self._evidence = _Evidence()

    async def _probe(self, offset: float) -> bool:
        """Send one call whose ``expires`` is ``offset`` s after our clock (whole seconds)."""
        before = self._now()
        # Whole seconds, halves rounded down: guess ± 0.5 then land on the second at or just
        # after the guess and the one before it, even when both clocks are on whole seconds.
        expires = math.ceil(before + offset - 0.5)
        self.calls += 1
        accepted = await self._send(datetime.fromtimestamp(expires, UTC))
        after = self._now()
        self.spread = max(self.spread, after - before)
        # The server checked between before and after: the bound holds at either end.
        if accepted:
            self._evidence.accepted.append(expires - before)
        else:
            self._evidence.refused.append(expires - after)
        log.debug("skew probe %d: expires %+.0f s -> %s", self.calls, offset,
                  "accepted" if accepted else "refused")
        return accepted

    async def measure(self, *, ordinary_accepted: bool, guess: float | None) -> SkewBracket:
        """Bracket S, knowing whether a call signed ``lifetime`` s ahead was just accepted.

        ``guess``: a skew believed likely (a ``Date`` header's); 0 (clocks agree) without one.
        """
        evidence = self._evidence
        lifetime = self.lifetime
        searched = (
            lifetime - WINDOWS_BEHIND * STEP - MAX_EXPIRES_AHEAD,
            lifetime + WINDOWS_AHEAD * STEP,
        )
        again: bool | None = None
        if ordinary_accepted:
            evidence.accepted.append(lifetime)
        else:
            # A refusal is no evidence yet: it may have had another cause (a key rotated back,
            # a transient fault) and would then misplace the whole bracket. Probes decide.
            again = await self._anchor()
            if not evidence.accepted:
                low, _ = evidence.bounds()
                return SkewBracket(low, None, self.calls, searched, again)
        # Around the guess first: two calls bracket it when it is right. (After a refusal
        # without one, the clocks do not agree: the window found is bisected at once.)
        centre = 0.0 if guess is None else guess
        rings = RINGS if ordinary_accepted or guess is not None else ()
        for offset in (centre + d * r for r in rings for d in (1, -1)):
            low, high = evidence.bounds()
            assert high is not None
            if (low is None or offset > low) and offset < high and self.calls < self.max_calls:
                await self._probe(offset)
        while self.calls < self.max_calls:
            low, high = evidence.bounds()
            assert high is not None
            bottom = searched[0] if low is None else low
            if high - bottom <= PRECISION + self.spread:
                break  # bracketed (or contradicted), or at least this far behind
            await self._probe((bottom + high) / 2)
        low, high = evidence.bounds()
        return SkewBracket(low, high, self.calls, searched, again)

    async def _anchor(self) -> bool | None:
        """Find an accepted offset after the ordinary call was refused.

        Refused at ``lifetime`` means S > lifetime (ahead), or S < lifetime - 900 with 4.21's
        limit on (behind), or a bad key: ask again as it was, then in windows of STEP seconds
        on either side, nearest first. Returns whether asking again was refused too.
        """
        lifetime = self.lifetime
        if self.calls >= self.max_calls:
            return None
        if await self._probe(lifetime):
            return False
        candidates: list[float] = []
        for k in range(1, max(WINDOWS_AHEAD, WINDOWS_BEHIND) + 1):
            candidates += [lifetime + k * STEP] if k <= WINDOWS_AHEAD else []
            candidates += [lifetime - k * STEP] if k <= WINDOWS_BEHIND else []
        for offset in candidates:
            low, _ = self._evidence.bounds()
            if low is not None and offset > low + MAX_EXPIRES_AHEAD:
                continue  # further ahead than the limit allows of any skew still possible
            if self.calls >= self.max_calls or await self._probe(offset):
                break
        return True


async def bracket_skew(
    send: Send,
    *,
    now: Callable[[], float],
    lifetime: float,
    ordinary_accepted: bool,
    guess: float | None = None,
    max_calls: int = MAX_CALLS,
) -> SkewBracket:
    """Measure the skew with at most ``max_calls`` signed calls (see the module docstring)."""
    probe = SkewProbe(send, now=now, lifetime=lifetime, max_calls=max_calls)
    return await probe.measure(ordinary_accepted=ordinary_accepted, guess=guess)


__all__ = [
    "MAX_CALLS",
    "MAX_EXPIRES_AHEAD",
    "PRECISION",
    "RINGS",
    "STEP",
    "WINDOWS_AHEAD",
    "WINDOWS_BEHIND",
    "Send",
    "SkewBracket",
    "SkewProbe",
    "bracket_skew",
]
