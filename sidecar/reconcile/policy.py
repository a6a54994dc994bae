"""Which alert families the sidecar may de-duplicate, how each splits into incidents, and Policy.

Eligibility (cloudstack.md §7): CloudStack stores and mails every alert of the exempt types
(HOST, USERVM, DOMAINROUTER, CONSOLEPROXY, SSVM, HA.ACTION, ...) and never merges them, so the
HA defect's copies pile up there; those are the only alerts the sidecar may archive
(``constants.DEDUP_ELIGIBLE_NAMES``). Every other type is suppressed by CloudStack while a live
row exists, and archiving that row re-arms alerting (new row, new mail): never touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from sidecar.model.constants import DEDUP_ELIGIBLE_NAMES, VM_ALERT_NAME_BY_KIND
from sidecar.model.defaults import ALERT_GAP_WINDOW, FAILURE_DETECTION, HA_BACKLOG_AFTER
from sidecar.reconcile import fingerprint as fp

#: Split rule: host-state history decides (a recorded ``Up`` between two alerts splits them;
#: without covering history, the gap window does). For alerts about one host's failure.
SPLIT_HISTORY: Final = "history"
#: Split rule: only the gap window (consecutive alerts further apart than it are two incidents).
SPLIT_GAP: Final = "gap"
#: Split rule: a successful restart of the VM between two alerts splits them, else the gap.
SPLIT_VM_RAN: Final = "vm_ran"
#: Split rule: a new host failure between two restarts of a VM splits them, else the gap.
SPLIT_NEW_FAILURE: Final = "new_failure"

_VM_NAMES: Final = frozenset(VM_ALERT_NAME_BY_KIND.values())
_HOST_NAMES: Final = frozenset({"ALERT.COMPUTE.HOST"})


@dataclass(frozen=True, slots=True)
class FamilySpec:
    """How one subject family is treated."""

    name: str
    alert_names: frozenset[str]
    """Alert names this subject legitimately comes with; any other name means "unknown"."""
    archivable: bool
    """May duplicates be archived (False for families CloudStack suppresses itself)."""
    split: str
    """One of SPLIT_HISTORY, SPLIT_GAP, SPLIT_VM_RAN, SPLIT_NEW_FAILURE."""
    about: str


FAMILIES: Final[Mapping[str, FamilySpec]] = {
    spec.name: spec
    for spec in (
        # Sent once per handleDisconnectWithInvestigation that finds the host Down; repeats
        # while the host stays Down (the fix skips it then), so one Down period = one incident.
        FamilySpec(fp.HOST_DOWN, _HOST_NAMES, True, SPLIT_HISTORY, "Host down, <id>"),
        # One per scheduleRestartForVmsOnHost call: every extra call on a Down host is a
        # duplicate HA round (§8.2) until the host is Up again.
        FamilySpec(fp.HOST_IS_DOWN, _HOST_NAMES, True, SPLIT_HISTORY, "Host is down, …"),
        # Sent on every Up -> Disconnected transition: with history each flap would be its own
        # incident, so flaps are merged by the gap window alone (a flapping agent is one
        # incident while it keeps flapping within the window).
        FamilySpec(fp.HOST_DISCONNECTED, _HOST_NAMES, True, SPLIT_GAP, "Host disconnected, …"),
        FamilySpec(fp.HOST_ALERT_STATE, _HOST_NAMES, True, SPLIT_HISTORY, "Host in ALERT state"),
        # Parallel workers on duplicate HA rows each restart the VM (§8.2): restarts of one VM
        # within the gap window are one incident (and flagged: the VM ran twice), unless a new
        # host failure began between them (the VM's new host failed too: a real restart).
        FamilySpec(fp.HA_STARTING_VM, _VM_NAMES, True, SPLIT_NEW_FAILURE, "HA starting VM: …"),
        # A failure to restart is over once the VM ran again ("HA starting VM" in between).
        FamilySpec(fp.UNABLE_TO_RESTART, _VM_NAMES, True, SPLIT_VM_RAN, "Unable to restart …"),
        FamilySpec(fp.VM_STOPPED, _VM_NAMES, True, SPLIT_GAP, "VM (…) stopped unexpectedly"),
        FamilySpec(
            fp.HOST_HA_ACTION, frozenset({"ALERT.HA.ACTION"}), True, SPLIT_HISTORY,
            "HA Fencing/Recovery of host id=…",
        ),
        # ALERT.TYPE.SYNC is suppressed by CloudStack (§7): archiving would re-arm it.
        FamilySpec(
            fp.VM_STATE_SYNC, frozenset({"ALERT.TYPE.SYNC"}), False, SPLIT_GAP,
            "VM state sync alert",
        ),
    )
}

# Safety net: nothing outside CloudStack's exempt list can ever be archivable.
for _spec in FAMILIES.values():
    if _spec.archivable and not _spec.alert_names <= DEDUP_ELIGIBLE_NAMES:
        raise AssertionError(f"family {_spec.name} would archive a suppressed alert type")


@dataclass(frozen=True)
class Policy:
    """Knobs of the reconciler; the defaults it shares with Settings live in model.defaults."""

    gap_window: float = ALERT_GAP_WINDOW
    """Seconds between consecutive alerts of one fingerprint above which they are two
    incidents when no host-state history decides (Settings.alert_gap_window)."""
    family_gaps: Mapping[str, float] = field(default_factory=dict, hash=False)
    """Per-family override of gap_window, e.g. ``{"host_disconnected": 1800.0}``."""
    ha_backlog_after: float = HA_BACKLOG_AFTER
    """An HA-enabled VM of a failed host not running elsewhere this long after the failure is
    HA backlog; restarts later than this after the host's last round are not attributed to it
    by time alone (Settings.ha_backlog_after)."""
    families: frozenset[str] | None = None
    """Plan only these families (None: all). Others are still parsed and counted."""
    now: datetime | None = None
    """The plan's clock (default: the snapshot's taken_at), for reproducible plans."""
    history_max_gap: float = 86400.0
    """Even when host-state history shows no recovery, alerts further apart than this are two
    incidents: the ledger may have missed a short Up while the sidecar was not running."""
    restart_latency: float = 10.0
    """Seconds HA needs at least from a host failure's first "Host is down" to an "HA
    starting VM" it causes (schedule, investigate, fence, boot). A new failure splits two
    restarts of one VM only if it began this long before the later one."""
    failure_detection: float = FAILURE_DETECTION
    """The shortest time CloudStack takes from a host's death to its first "Host is down"
    (ping path: 60 × ⌊ping.interval × ping.timeout / 60⌋ − ping.interval, model.defaults.
    ping_detection; Host HA takes longer). A VM restarted at r1 can only have died with a host
    whose failure is reported at least this long after r1: an earlier failure cannot split two
    copies of that restart. Shorter is the safe side."""
    ha_horizon: float | None = 7 * 86400.0
    """HA incidents are an operational view: the plan itemises host failures seen within this
    many seconds before ``now`` and the latest failure of every host the snapshot lists as not
    Up (None: every failure of the snapshot). Older failures still have their duplicate
    alerts planned; only their HA reconstruction is skipped, which keeps a 1M-alert history
    cleanup fast."""

    def __post_init__(self) -> None:
        for name, value in (
            ("gap_window", self.gap_window),
            ("ha_backlog_after", self.ha_backlog_after),
            ("history_max_gap", self.history_max_gap),
            *((("ha_horizon", self.ha_horizon),) if self.ha_horizon is not None else ()),
            *((f"family_gaps[{k!r}]", v) for k, v in self.family_gaps.items()),
        ):
            if not value > 0:
                raise ValueError(f"policy {name} must be a positive number of seconds, not {value}")
        if not self.failure_detection >= 0:
            raise ValueError(
                "policy failure_detection must be zero or more seconds, "
                f"not {self.failure_detection}"
            )
        if not self.restart_latency >= 0:
            raise ValueError(
                f"policy restart_latency must be zero or more seconds, not {self.restart_latency}"
            )

    def gap_for(self, family: str) -> float:
        """The gap window of ``family`` in seconds."""
        return float(self.family_gaps.get(family, self.gap_window))

    def plans(self, family: str) -> bool:
        """Whether ``family``'s duplicates go into the plan under the families filter."""
        return self.families is None or family in self.families


__all__ = [
    "FAMILIES",
    "SPLIT_GAP",
    "SPLIT_HISTORY",
    "SPLIT_NEW_FAILURE",
    "SPLIT_VM_RAN",
    "FamilySpec",
    "Policy",
]
