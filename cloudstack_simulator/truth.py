"""Ground truth: which alerts the simulator emitted as defect copies, per failure.

Rule shared with the reconciler: within one failure (incident) the first alert of a subject is
canonical and every later alert with the same subject is a duplicate a correct de-duplicator
archives. Copies of one subject are seconds apart (< 2 min, never in the same second);
separate failures of one host are far apart (> 1 h in seeded history). A repeat more than
:data:`GAP` seconds after the previous alert of its subject (an HA retry every
``restart.retry.interval``) starts a new group: it is canonical, not a copy.

Per failure it also keeps the HA facts (rounds, VMs restarted more than once, when the host
died and when its first round came) and, across failures, the genuine second restarts: a VM
that HA placed on a host that failed later and was restarted again (canonical, never a copy).
``scoring.score`` grades a set of archived ids against it, per family.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cloudstack_simulator.harule import cancel_ids

#: Alerts of one subject further apart than this are separate (the reconciler's default
#: ``alert_gap_window``).
GAP = 600.0

#: Subject prefix -> family of the alerts the simulator writes (cloudstack.md §6). The
#: simulator formats every subject itself, so the prefix tells the family exactly; the names
#: match the sidecar's families so that scores read alike.
FAMILY_PREFIXES = (
    ("Host down, ", "host_down"),
    ("Host is down, ", "host_is_down"),
    ("Host disconnected, ", "host_disconnected"),
    ("Host in ALERT state, ", "host_alert_state"),
    ("HA starting VM: ", "ha_starting_vm"),
    ("Unable to restart ", "unable_to_restart"),
    ("HA Fencing of host ", "host_ha_action"),
    ("HA Recovery of host ", "host_ha_action"),
)
#: Family of an alert of a failure whose subject has none of the prefixes.
OTHER = "other"


def family_of(subject: str) -> str:
    """The family of a subject the simulator wrote."""
    for prefix, family in FAMILY_PREFIXES:
        if subject.startswith(prefix):
            return family
    return OTHER


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
    #: When the host died (None: no death, e.g. a flapping agent).
    died: float | None = None
    #: When its first "Host is down, …" was sent (None: no HA round).
    first_round: float | None = None
    #: ``scheduleRestartForVmsOnHost`` calls that sent a "Host is down, …" alert.
    rounds: int = 0
    #: VM names with more than one "HA starting VM" alert.
    vms_restarted_more_than_once: list[str] = field(default_factory=list)
    #: VM names an earlier failure's HA had restarted on this host (genuine second restarts).
    second_restarts: list[str] = field(default_factory=list)
    #: Archived when seeded: invisible to ``listAlerts``.
    archived: bool = False
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

    def add_restart(self, vm_name: str) -> int:
        """Count an "HA starting VM" of ``vm_name``; returns its count in this failure."""
        self._starts[vm_name] += 1
        count = self._starts[vm_name]
        if count == 2:
            self.vms_restarted_more_than_once.append(vm_name)
        return count


@dataclass(frozen=True, slots=True)
class SecondRestart:
    """HA restarted ``vm`` on a host that failed later, then again: ``alert`` is canonical."""

    vm: str
    first_failure: int
    first_alert: str
    first_at: float
    failure: int
    alert: str
    at: float

    @property
    def within_gap(self) -> bool:
        """Within :data:`GAP` of the first restart: one gap window alone would merge them."""
        return self.at - self.first_at <= GAP


@dataclass(frozen=True, slots=True)
class HaFacts:
    """HA work over every live failure, as a report that scans the whole history counts it."""

    #: Host failures with at least one "Host is down" round (HA incidents).
    failures: int
    rounds: int
    duplicate_rounds: int
    vms_restarted_more_than_once: int
    genuine_second_restarts: int


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
    #: VMs HA restarted that were expunged afterwards (absent from listVirtualMachines).
    expunged_vms: list[str] = field(default_factory=list)
    _duplicates: set[str] = field(default_factory=set, repr=False)
    _canonicals: set[str] = field(default_factory=set, repr=False)
    #: uuid -> family of every recorded de-duplicable alert.
    _family: dict[str, str] = field(default_factory=dict, repr=False)
    #: Live genuine second restarts by their alert, in the order they happened.
    _seconds: dict[str, SecondRestart] = field(default_factory=dict, repr=False)
    #: VM name -> (failure, alert uuid, time) of its latest first-restart in a failure.
    _restarted: dict[str, tuple[FailureTruth, str, float]] = field(default_factory=dict, repr=False)

    #: Reads the current ``op_ha_work`` rows (set by the Simulator when it has a cloud database).
    ha_rows: Callable[[], list[dict[str, Any]]] | None = field(default=None, repr=False)
    #: HA executions (a worker restarting the VM) per (failure, VM id), from the HA queue.
    ha_executions: Counter[tuple[int, int]] = field(default_factory=Counter, repr=False)
    #: VM id -> when it last became Running through the HA queue.
    ha_running_at: dict[int, float] = field(default_factory=dict, repr=False)

    def ha_work_cancel_ids(self, now: float | None = None) -> list[int]:
        """The ``op_ha_work`` ids the fixed duplicate rule would cancel in the current queue.

        ``now`` is accepted for symmetry with the sidecar's read; the rows are read as they are.
        """
        if self.ha_rows is None:
            return []
        return cancel_ids(self.ha_rows())

    def duplicate_ha_executions(self) -> int:
        """Restarts beyond one per VM per failure (from the HA queue)."""
        return sum(n - 1 for n in self.ha_executions.values() if n > 1)

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
        family = family_of(subject)
        if family == "host_is_down":
            failure.rounds += 1
            if failure.first_round is None:
                failure.first_round = when
        if failure.add_alert(uuid, subject, when, dedupable=dedupable):
            self._duplicates.add(uuid)
        elif dedupable:
            self._canonicals.add(uuid)
        if dedupable:
            self._family[uuid] = family

    def note_restart(self, failure: FailureTruth, vm: str, uuid: str, when: float) -> None:
        """Count the "HA starting VM" ``uuid`` of ``vm`` in ``failure`` (already recorded)."""
        if failure.add_restart(vm) != 1:
            return
        # A first restart in a failure of another host than the VM's previous restart's: the
        # earlier HA had placed it on the host that failed now (a genuine second restart).
        previous = self._restarted.get(vm)
        self._restarted[vm] = (failure, uuid, when)
        if previous is None or previous[0].host_db_id == failure.host_db_id:
            return
        failure.second_restarts.append(vm)
        first, first_alert, first_at = previous
        self._seconds[uuid] = SecondRestart(
            vm, first.id, first_alert, first_at, failure.id, uuid, when
        )

    def forget(self, uuids: set[str]) -> None:
        """Drop alerts that were archived at seeding time from the duplicate/canonical sets."""
        self._duplicates -= uuids
        self._canonicals -= uuids
        self.archived_ids |= uuids
        for uuid in uuids:
            self._seconds.pop(uuid, None)

    @property
    def duplicate_ids(self) -> set[str]:
        """Live duplicate copies: exactly what a correct de-duplicator archives."""
        return set(self._duplicates)

    @property
    def canonical_ids(self) -> set[str]:
        """The first alert of each subject in each failure: must never be archived."""
        return set(self._canonicals)

    @property
    def second_restarts(self) -> list[SecondRestart]:
        """Live genuine second restarts, in the order they happened."""
        return list(self._seconds.values())

    @property
    def second_restart_ids(self) -> set[str]:
        """The "HA starting VM" alerts of the live genuine second restarts."""
        return set(self._seconds)

    def family(self, uuid: str) -> str:
        """A recorded alert's family, else unknown, suppressed, archived, other or untracked."""
        found = self._family.get(uuid)
        if found is not None:
            return found
        for name, ids in (
            ("unknown", self.unknown_ids),
            ("suppressed", self.suppressed_ids),
            ("archived", self.archived_ids),
            ("other", self.other_ids),
        ):
            if uuid in ids:
                return name
        return "untracked"

    def duplicates_by_family(self) -> dict[str, set[str]]:
        """Live duplicate copies per family."""
        out: dict[str, set[str]] = {}
        for uuid in self._duplicates:
            out.setdefault(self._family[uuid], set()).add(uuid)
        return out

    def ha_facts(self) -> HaFacts:
        """The HA facts of every failure still visible (not archived when seeded)."""
        live = [f for f in self.failures if f.rounds > 0 and not f.archived]
        return HaFacts(
            failures=len(live),
            rounds=sum(f.rounds for f in live),
            duplicate_rounds=sum(f.duplicate_rounds for f in live),
            vms_restarted_more_than_once=sum(len(f.vms_restarted_more_than_once) for f in live),
            genuine_second_restarts=len(self._seconds),
        )

    def summary(self) -> dict[str, int]:
        """Counts for reports and benches (``ha_*``: live HA incidents, see ha_facts)."""
        facts = self.ha_facts()
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
            "ha_failures": facts.failures,
            "ha_rounds": facts.rounds,
            "ha_duplicate_rounds": facts.duplicate_rounds,
            "ha_vms_restarted_more_than_once": facts.vms_restarted_more_than_once,
            "genuine_second_restarts": facts.genuine_second_restarts,
            "genuine_second_restarts_within_gap": sum(
                1 for s in self._seconds.values() if s.within_gap
            ),
            "expunged_vms": len(self.expunged_vms),
        }
