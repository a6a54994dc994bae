"""Injectable faults: latency, errors, throttling, resets, hangs, bad bodies, racing admins.

``sim.faults.add(kind, command="*", rate=1.0, times=None, **options)`` returns a
:class:`Fault` handle (``remove()``, ``fired``, ``affected``). Draws use a seeded RNG so a
run with the same seed and request sequence sees the same faults.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

#: Kind -> (phase, default command, option names with defaults).
KINDS: dict[str, tuple[str, str, dict[str, Any]]] = {
    # Real sleep in the server thread before the request is handled.
    "latency": ("before", "*", {"ms": 200.0, "jitter_ms": 0.0}),
    # A CloudStack error JSON instead of the answer (after=True: the command runs first).
    "error": ("transport", "*", {"status": 530, "text": None, "cserrorcode": 9999, "after": False}),
    # The api-rate-limit plugin's 429 (constants.THROTTLED_TEXT).
    "throttle": ("transport", "*", {"ms": 1000}),
    # TCP RST instead of an answer (after=True: the command runs first).
    "reset": ("transport", "*", {"after": False}),
    # No answer until released (sim.faults.release_hung(), stop) or ``seconds`` pass.
    "hang": ("transport", "*", {"seconds": 30.0, "after": False}),
    # A 200 JSON answer cut in the middle.
    "malformed_json": ("body", "*", {}),
    # A 200 answer cut short at a random (seeded) byte, as a proxy or a dropped connection
    # whose Content-Length matched the cut would deliver it.
    "truncated": ("body", "*", {}),
    # An HTML page (a proxy or SSO login page) instead of JSON.
    "html": ("transport", "*", {"status": 200}),
    # 401 "unable to verify user credentials and/or request signature".
    "unauthorized": ("transport", "*", {}),
    # Another admin archives k of the requested ids just before archiveAlerts runs.
    "archived_by_other": ("hook", "archiveAlerts", {"k": 1}),
    # k of the requested ids (or, for listAlerts, the k oldest live alerts) are deleted first.
    "delete_alerts": ("hook", "archiveAlerts", {"k": 1}),
    # n new alerts arrive just before listAlerts pages >= min_page are answered.
    "insert_alerts": (
        "hook",
        "listAlerts",
        {"n": 5, "min_page": 2, "name": "ALERT.MANAGEMENT", "subject": None},
    ),
}


@dataclass
class Fault:
    """One registered fault; ``fired`` counts how often it happened."""

    kind: str
    commands: frozenset[str] | None
    rate: float
    options: dict[str, Any]
    times: int | None
    registry: FaultRegistry
    fired: int = 0
    affected: list[str] = field(default_factory=list)
    removed: bool = False

    @property
    def phase(self) -> str:
        return KINDS[self.kind][0]

    def applies_to(self, command: str) -> bool:
        return self.commands is None or command in self.commands

    def remove(self) -> None:
        """Stop injecting this fault."""
        self.registry.remove(self)

    def __getattr__(self, name: str) -> Any:
        options = self.__dict__.get("options", {})
        if name in options:
            return options[name]
        raise AttributeError(name)


class FaultRegistry:
    """The active faults of one simulator."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"faults:{seed}")
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.release = threading.Event()

    def add(
        self,
        kind: str,
        command: str | Iterable[str] = "*",
        rate: float = 1.0,
        *,
        times: int | None = None,
        **options: Any,
    ) -> Fault:
        """Inject ``kind`` into ``command`` ("*" = the kind's default) with probability
        ``rate`` per request, at most ``times`` times; see :data:`KINDS` for options."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}: choose one of {', '.join(KINDS)}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        phase, default_command, defaults = KINDS[kind]
        unknown = set(options) - set(defaults)
        if unknown:
            raise ValueError(f"fault {kind!r} takes no option(s) {', '.join(sorted(unknown))}")
        if isinstance(command, str):
            chosen = default_command if command == "*" and phase == "hook" else command
            commands = None if chosen == "*" else frozenset({chosen})
        else:
            commands = frozenset(command)
        fault = Fault(kind, commands, rate, {**defaults, **options}, times, self)
        with self._lock:
            self._faults.append(fault)
            self.release.clear()
        return fault

    def remove(self, fault: Fault) -> None:
        with self._lock:
            fault.removed = True
            if fault in self._faults:
                self._faults.remove(fault)

    def clear(self) -> None:
        """Remove every fault and let hung requests go."""
        with self._lock:
            for fault in self._faults:
                fault.removed = True
            self._faults.clear()
        self.release_hung()

    def release_hung(self) -> None:
        """Let every hung request finish (its connection is closed without an answer)."""
        self.release.set()

    @property
    def active(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def draw(
        self, command: str, phase: str, accept: Callable[[Fault], bool] | None = None
    ) -> list[Fault]:
        """The faults of ``phase`` that fire for this request (each counted as fired);
        ``accept`` can rule a fault out for this request before it is counted."""
        fired = []
        with self._lock:
            for fault in self._faults:
                if fault.phase != phase or not fault.applies_to(command):
                    continue
                if accept is not None and not accept(fault):
                    continue
                if fault.times is not None and fault.fired >= fault.times:
                    continue
                if fault.rate < 1.0 and self._rng.random() >= fault.rate:
                    continue
                fault.fired += 1
                fired.append(fault)
        return fired

    def rng_sample(self, population: list[Any], k: int) -> list[Any]:
        """A seeded sample (for hooks choosing which ids to touch)."""
        with self._lock:
            return self._rng.sample(population, min(k, len(population)))

    def cut_point(self, size: int) -> int:
        """A seeded length in ``[1, size - 1]`` to cut a ``size``-byte body at (1 when tiny)."""
        with self._lock:
            return self._rng.randint(1, size - 1) if size > 2 else 1

    def jitter(self, spread: float) -> float:
        with self._lock:
            return self._rng.uniform(-spread, spread) if spread else 0.0
