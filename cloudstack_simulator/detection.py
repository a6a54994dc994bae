"""When CloudStack notices a host that died silently: agent pings, InaccurateClock, ping monitor.

Sources (apache/cloudstack, the same in 4.19, 4.20 and ``main``):
``engine/orchestration/src/main/java/com/cloud/agent/manager/AgentManagerImpl.java`` and
``utils/src/main/java/com/cloud/utils/time/InaccurateClock.java``.

- The agent sends a ``PingCommand`` every ``ping.interval`` seconds (I, 60 by default); the
  management server records it in ``_pingMap`` as ``InaccurateClock.getTimeInSeconds()``
  (``pingBy``).
- ``InaccurateClock`` is refreshed by ``scheduleAtFixedRate(SetTimeTask, 0, 60, SECONDS)``: its
  value is the wall time of its last refresh, so recorded times lag by up to G = 60 s (fixed,
  not a setting) and two readings always differ by a multiple of 60 s.
- ``MonitorTask`` runs every ``ping.interval`` (``scheduleWithFixedDelay``) and finds a host
  behind on ping when ``recorded < clock - T``, with ``T = (long)(ping.timeout × ping.interval)``
  (150 s by default). Only then does ``disconnectWithInvestigation(PingTimeout)`` investigate,
  send "Host down, <id>" and call ``scheduleRestartForVmsOnHost`` ("Host is down, …").

A host that dies at ``d`` last pinged at ``p`` in ``(d − I, d]``; its recorded time is the last
refresh ``≤ p``, so it is more than ``p − G``; the monitor must see a clock at least
``G × (⌊T/G⌋ + 1)`` ahead of it. Hence its first "Host is down" comes **more than**
``G × ⌊T/G⌋ − I`` seconds after its death (60 s with the defaults: ``60 × 2 − 60``), and at
most ``G × (⌊T/G⌋ + 1) + I`` (240 s) plus the investigation. The naive
``(ping.timeout − 1) × ping.interval`` (90 s) is not a bound: the clock's 60 s lag lowers it.
This holds for a silent death (power loss, kernel panic, partition); an agent whose TCP
connection closes is investigated at once (``AgentDisconnected``), which the simulator does
not play.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from cloudstack_simulator.state import State

#: ``InaccurateClock`` refresh period in seconds (hard-coded upstream).
CLOCK_REFRESH = 60.0
#: Upstream defaults of ``ping.interval`` (seconds) and ``ping.timeout`` (a multiplier).
PING_INTERVAL = 60.0
PING_TIMEOUT = 2.5


@dataclass(frozen=True, slots=True)
class Ping:
    """The two settings that decide when a silently dead host is noticed."""

    interval: float = PING_INTERVAL
    timeout: float = PING_TIMEOUT

    @property
    def limit(self) -> int:
        """``AgentManagerImpl.getTimeout()``: ``(long)(ping.timeout × ping.interval)``."""
        return int(self.timeout * self.interval)

    @property
    def refreshes(self) -> int:
        """Clock refreshes the monitor's reading must be ahead of a host's last recorded ping."""
        return math.floor(self.limit / CLOCK_REFRESH) + 1

    @property
    def earliest(self) -> float:
        """Death to detection is always more than this many seconds (60 s by default)."""
        return CLOCK_REFRESH * (self.refreshes - 1) - self.interval

    @property
    def latest(self) -> float:
        """Death to detection is at most this many seconds (240 s by default)."""
        return CLOCK_REFRESH * self.refreshes + self.interval


def ping_of(state: State) -> Ping:
    """The ``ping.interval`` and ``ping.timeout`` the simulator serves (and plays)."""
    return Ping(
        float(state.settings["ping.interval"].value), float(state.settings["ping.timeout"].value)
    )


def set_ping(state: State, ping: Ping) -> None:
    """Make ``listConfigurations`` show ``ping`` (checked: positive, timeout above 1)."""
    if not ping.interval > 0 or not ping.timeout > 1:
        raise ValueError("ping.interval must be positive and ping.timeout above 1")
    state.settings["ping.interval"].value = f"{ping.interval:g}"
    state.settings["ping.timeout"].value = f"{ping.timeout:g}"


@dataclass(frozen=True, slots=True)
class Phases:
    """Where the management server's periodic tasks stand: one clock and one monitor per MS."""

    clock: float
    monitor: float

    @classmethod
    def of(cls, seed: object, ping: Ping) -> Phases:
        """Phases drawn once per simulator seed."""
        rng = random.Random(f"phases:{seed}")
        return cls(rng.uniform(0.0, CLOCK_REFRESH), rng.uniform(0.0, ping.interval))


def detected_at(ping: Ping, phases: Phases, died: float, agent_phase: float) -> float:
    """When ``MonitorTask`` first finds a host that died at ``died`` behind on ping.

    ``agent_phase`` places the host's agent pings (at ``agent_phase + k × interval``).
    """
    interval = ping.interval
    last_ping = agent_phase + interval * math.floor((died - agent_phase) / interval)
    recorded = phases.clock + CLOCK_REFRESH * math.floor((last_ping - phases.clock) / CLOCK_REFRESH)
    due = recorded + CLOCK_REFRESH * ping.refreshes
    return phases.monitor + interval * math.ceil((due - phases.monitor) / interval)
