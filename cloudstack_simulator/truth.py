"""Ground truth: which alerts the simulator emitted as defect copies, per failure.

Rule shared with the reconciler: within one failure (incident) the first alert of a subject is
canonical and every later alert with the same subject is a duplicate a correct de-duplicator
archives. Copies of one subject are seconds apart (< 2 min, never in the same second);
separate failures of one host are far apart (> 1 h in seeded history). A repeat more than
:data:`GAP` seconds after the previous alert of its subject (an HA retry every
``restart.retry.interval``) starts a new group: it is canonical, not a copy.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

#: Alerts of one subject further apart than this are separate (the reconciler's default
#: ``alert_gap_window``).
GAP = 600.0


@dataclass
class FailureTruth:
    """One host failure (or flap episode) and the alerts and HA rows it produced."""

    id: int
    kind: str
    host: str
    host_id: str
    host_db_id: int
    zone: str
    started: float
    profile: str
    #: ``scheduleRestartForVmsOnHost`` calls that sent a "Host is down, …" alert.
    rounds: int = 0
    #: VM names with more than one "HA starting VM" alert.
    vms_restarted_more_than_once: list[str] = field(default_factory=list)
    #: Every alert uuid of this failure, in emission order.
    alert_ids: list[str] = field(default_factory=list)
    canonical_ids: list[str] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)
    #: ``op_ha_work`` ids of this failure.
    ha_work_ids: list[int] = field(default_factory=list)
    #: Subject -> canonical uuid (internal bookkeeping).
    _last: dict[str, float] = field(default_factory=dict, repr=False)
    _starts: Counter[str] = field(default_factory=Counter, repr=False)
    closed: bool = False

    @property
    def duplicate_rounds(self) -> int:
        """Rounds beyond the first (0 on a fixed release)."""
        return max(0, self.rounds - 1)

    def add_alert(self, uuid: str, subject: str, when: float, *, dedupable: bool = True) -> bool:
        """Record an alert emitted at epoch second ``when``; True if it is a duplicate copy."""
        self.alert_ids.append(uuid)
        if not dedupable:
            return False
        last = self._last.get(subject)
        self._last[subject] = when
        if last is not None and when - last <= GAP:
            self.duplicate_ids.append(uuid)
            return True
        self.canonical_ids.append(uuid)
        return False

    def close(self) -> None:
        """Drop the per-subject bookkeeping once the failure can emit nothing more."""
        self._last = {}
        self._starts = Counter()
        self.closed = True

    def add_restart(self, vm_name: str) -> None:
        """Count an "HA starting VM" of ``vm_name``."""
        self._starts[vm_name] += 1
        if self._starts[vm_name] == 2:
            self.vms_restarted_more_than_once.append(vm_name)


@dataclass
class Truth:
    """Everything a test needs to score a de-duplicator against the simulator."""

    failures: list[FailureTruth] = field(default_factory=list)
    #: Alerts whose subject has no known format (a correct tool leaves them alone).
    unknown_ids: set[str] = field(default_factory=set)
    #: Alerts of types CloudStack suppresses itself (never archive: it re-arms mail).
    suppressed_ids: set[str] = field(default_factory=set)
    #: Alerts already archived when seeded (invisible to listAlerts).
    archived_ids: set[str] = field(default_factory=set)
    #: Alerts added by faults or tests outside any failure.
    other_ids: set[str] = field(default_factory=set)
    _duplicates: set[str] = field(default_factory=set, repr=False)
    _canonicals: set[str] = field(default_factory=set, repr=False)

    def new_failure(self, **kwargs: object) -> FailureTruth:
        """Open a failure record."""
        failure = FailureTruth(id=len(self.failures) + 1, **kwargs)  # type: ignore[arg-type]
        self.failures.append(failure)
        return failure

    def record(
        self,
        failure: FailureTruth,
        uuid: str,
        subject: str,
        when: float,
        *,
        dedupable: bool = True,
    ) -> None:
        """Record an alert of ``failure`` sent at epoch second ``when``."""
        if failure.add_alert(uuid, subject, when, dedupable=dedupable):
            self._duplicates.add(uuid)
        elif dedupable:
            self._canonicals.add(uuid)

    def forget(self, uuids: set[str]) -> None:
        """Drop alerts that were archived at seeding time from the duplicate/canonical sets."""
        self._duplicates -= uuids
        self._canonicals -= uuids
        self.archived_ids |= uuids

    @property
    def duplicate_ids(self) -> set[str]:
        """Live duplicate copies: exactly what a correct de-duplicator archives."""
        return set(self._duplicates)

    @property
    def canonical_ids(self) -> set[str]:
        """The first alert of each subject in each failure: must never be archived."""
        return set(self._canonicals)

    def summary(self) -> dict[str, int]:
        """Counts for reports and benches."""
        return {
            "failures": len(self.failures),
            "duplicates": len(self._duplicates),
            "canonicals": len(self._canonicals),
            "unknown": len(self.unknown_ids),
            "suppressed": len(self.suppressed_ids),
            "archived": len(self.archived_ids),
            "duplicate_rounds": sum(f.duplicate_rounds for f in self.failures),
            "vms_restarted_more_than_once": sum(
                len(f.vms_restarted_more_than_once) for f in self.failures
            ),
        }
