"""The parts of one simulator that its handlers share, handed to them instead of the Simulator."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import tzinfo

from cloudstack_simulator.clock import VirtualClock
from cloudstack_simulator.faults import FaultRegistry
from cloudstack_simulator.profiles import Profile
from cloudstack_simulator.state import State
from cloudstack_simulator.stats import Stats
from cloudstack_simulator.truth import Truth


@dataclass(eq=False)
class Context:
    """State under its lock, the clock, the truth, the release played, counters and faults."""

    state: State
    lock: threading.RLock
    clock: VirtualClock
    truth: Truth
    # Not frozen: ``sim.profile = …`` (a test playing another version) must reach every handler.
    profile: Profile
    tz: tzinfo
    seed: int
    stats: Stats
    faults: FaultRegistry
    #: ``shuffle``: rows tied on ``last_sent`` come in a per-request order, as MySQL may send
    #: them; ``stable``: always ``id DESC`` (for exact assertions).
    tie_order: str = "shuffle"
    _salts: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    def next_salt(self) -> int:
        """A per-request salt for the order of tied rows (deterministic per seed)."""
        return hash((self.seed, next(self._salts)))
