"""What the server measures (requests, archives per alert) and its score against the truth."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from cloudstack_simulator.clock import VirtualClock
from cloudstack_simulator.scoring import score
from cloudstack_simulator.state import State
from cloudstack_simulator.truth import Truth


@dataclass
class RequestRecord:
    """One request as the instrumentation saw it (no secrets)."""

    command: str
    method: str
    status: int
    ms: float
    params: dict[str, str]
    started: float


@dataclass
class Stats:
    """What benchmarks and fault tests measure."""

    calls: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    inflight: int = 0
    max_inflight: int = 0
    max_per_second: int = 0
    #: Response body bytes.
    bytes_sent: int = 0
    #: uuid -> how many archive UPDATEs hit the alert (must stay <= 1 for a correct client).
    archive_count: Counter[str] = field(default_factory=Counter)
    archived_out_of_band: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    requests: deque[RequestRecord] = field(default_factory=lambda: deque(maxlen=20_000))
    _window: deque[float] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self) -> float:
        """A request started (real time); returns its start."""
        now = time.monotonic()
        with self._lock:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            window = self._window
            window.append(now)
            while window and window[0] <= now - 1.0:
                window.popleft()
            self.max_per_second = max(self.max_per_second, len(window))
        return now

    def end(self, record: RequestRecord, nbytes: int) -> None:
        """A request finished."""
        with self._lock:
            self.inflight -= 1
            self.calls[record.command] += 1
            self.statuses.setdefault(record.command, Counter())[record.status] += 1
            self.bytes_sent += nbytes
            self.requests.append(record)

    def note_archived(self, uuid: str, *, out_of_band: bool = False) -> None:
        with self._lock:
            self.archive_count[uuid] += 1
            if out_of_band:
                self.archived_out_of_band.add(uuid)

    def note_deleted(self, uuid: str) -> None:
        with self._lock:
            self.deleted.add(uuid)

    def archived_by_clients(self) -> set[str]:
        """Alerts an API ``archiveAlerts`` hit (not those archived out of band)."""
        with self._lock:
            return {u for u in self.archive_count if u not in self.archived_out_of_band}

    def archived_more_than_once(self) -> list[str]:
        """Alerts an archive UPDATE hit twice or more (a client or race bug)."""
        with self._lock:
            return self._hit_twice()

    def _hit_twice(self) -> list[str]:
        # Callers hold ``_lock`` (a plain Lock: it cannot be taken twice).
        return sorted(u for u, n in self.archive_count.items() if n > 1)

    def reset(self) -> None:
        """Forget everything measured so far."""
        with self._lock:
            self.calls.clear()
            self.statuses.clear()
            self.max_inflight = self.inflight
            self.max_per_second = 0
            self.bytes_sent = 0
            self.archive_count.clear()
            self.archived_out_of_band.clear()
            self.deleted.clear()
            self.requests.clear()
            self._window.clear()

    def snapshot(self) -> dict[str, Any]:
        """A JSON-friendly copy of the counters."""
        with self._lock:
            return {
                "calls": dict(self.calls),
                "statuses": {k: dict(v) for k, v in self.statuses.items()},
                "max_inflight": self.max_inflight,
                "max_per_second": self.max_per_second,
                "bytes_sent": self.bytes_sent,
                "archived_more_than_once": self._hit_twice(),
            }


class Scored(Protocol):
    """What :func:`export_stats` reads: a ``Simulator`` or its ``Context``."""

    @property
    def stats(self) -> Stats: ...

    @property
    def lock(self) -> threading.RLock: ...

    @property
    def state(self) -> State: ...

    @property
    def truth(self) -> Truth: ...

    @property
    def clock(self) -> VirtualClock: ...


def export_stats(sim: Scored, *, ids: bool = False) -> dict[str, Any]:
    """Stats plus a score against the ground truth, JSON-ready (for ``--stats-file``).

    ``wrong_archives`` are alerts archived through the API that the truth does not call
    duplicates (canonicals, separate incidents, unknown formats); ``graded`` is
    ``scoring.score`` of them (recall and precision per family, genuine second restarts
    archived); ``ids`` adds the id lists.
    """
    out = sim.stats.snapshot()
    archived = sim.stats.archived_by_clients()
    with sim.lock:
        table = sim.state.alerts
        live_by_name = {name: len(keys) for name, keys in sorted(table.live_by_name.items())}
        truth_duplicates = sim.truth.duplicate_ids
        canonicals = sim.truth.canonical_ids
        summary = sim.truth.summary()
        graded = score(sim.truth, archived).to_json()
        now = sim.clock.time()
    wrong = archived - truth_duplicates
    out.update(
        live=sum(live_by_name.values()),
        live_by_name=live_by_name,
        clock=now,
        truth=summary,
        score={
            "archived": len(archived),
            "truth_duplicates": len(truth_duplicates),
            "archived_duplicates": len(archived & truth_duplicates),
            "missed_duplicates": len(truth_duplicates - archived),
            "wrong_archives": len(wrong),
            "wrong_canonicals": len(wrong & canonicals),
            "graded": graded,
        },
    )
    if ids:
        out["archived_ids"] = sorted(archived)
        out["truth_duplicate_ids"] = sorted(truth_duplicates)
    return out
