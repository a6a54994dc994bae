"""The reconciler's input (``Snapshot``) and output (``Plan``): plain, frozen, serialisable.

The JSON form of ``Plan`` is a contract other tools read; change it only additively.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sidecar.model.resources import Alert, Host, VirtualMachine

PLAN_SCHEMA_VERSION = 1


def iso(value: datetime | None) -> str | None:
    """UTC ISO-8601 with ``Z``, whole seconds (CloudStack dates have no fractions)."""
    if value is None:
        return None
    # isoformat is C and ~10x faster than strftime; a plan of a million alerts calls this a lot.
    return value.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def from_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class HostStateChange:
    """One host state transition as the ledger recorded it (``state`` after the change)."""

    host_id: str
    host_name: str
    state: str
    at: datetime
    hastate: str = ""


@dataclass(frozen=True, slots=True)
class VmPlacement:
    """From ``since`` on, the ledger saw VM ``vm`` (instance name) on host ``host_id`` (API id).

    The ledger records host changes only; a VM's first placement is when watching it began,
    so a restart before it has no known host.
    """

    vm: str
    host_id: str
    since: datetime


@dataclass(frozen=True, repr=False)
class Snapshot:
    """Everything the reconciler looks at; built by the poller or the cleanup lister."""

    def __repr__(self) -> str:
        # Short: asyncio and logging call repr, and a million alerts would print for seconds.
        return (f"Snapshot(taken_at={self.taken_at.isoformat()}, alerts={len(self.alerts)}, "
                f"hosts={len(self.hosts)}, vms={len(self.vms)})")

    taken_at: datetime
    alerts: Sequence[Alert]
    hosts: Sequence[Host] = ()
    vms: Sequence[VirtualMachine] = ()
    host_history: Sequence[HostStateChange] = ()
    vm_host_history: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Instance name -> API ids of the hosts the ledger has seen the VM on (any order). The
    API names no host in "HA starting VM"; this lets a restart be attributed to the failure
    of a host the VM was on even after it moved (e.g. during a mass failure)."""
    vm_placements: Sequence[VmPlacement] = ()
    """Where the ledger saw each VM and since when (host changes only, any order): a restart
    after the VM's first placement is attributed to the hosts it really ran on."""


@dataclass(frozen=True, slots=True)
class MergeGroup:
    """Alerts of one fingerprint within one incident: the canonical stays, duplicates go."""

    group_id: str
    family: str
    object: str
    fingerprint: str
    alert_name: str
    canonical: str
    duplicates: tuple[str, ...]
    first_sent: datetime
    last_sent: datetime
    reason: str

    @property
    def count(self) -> int:
        return 1 + len(self.duplicates)

    def to_json(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "family": self.family,
            "object": self.object,
            "fingerprint": self.fingerprint,
            "alert_name": self.alert_name,
            "canonical": self.canonical,
            "duplicates": list(self.duplicates),
            "count": self.count,
            "first_sent": iso(self.first_sent),
            "last_sent": iso(self.last_sent),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MergeGroup:
        first = from_iso(data["first_sent"])
        last = from_iso(data["last_sent"])
        assert first is not None and last is not None
        return cls(
            group_id=data["group_id"],
            family=data["family"],
            object=data["object"],
            fingerprint=data["fingerprint"],
            alert_name=data.get("alert_name", ""),
            canonical=data["canonical"],
            duplicates=tuple(data["duplicates"]),
            first_sent=first,
            last_sent=last,
            reason=data["reason"],
        )


@dataclass(frozen=True, slots=True)
class VmRestarts:
    """How often one VM of an HA incident was restarted ("HA starting VM" alerts)."""

    vm: str
    instance: str
    restarts: int
    vm_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"vm": self.vm, "instance": self.instance, "restarts": self.restarts,
                "vm_id": self.vm_id}


@dataclass(frozen=True, slots=True)
class HAIncident:
    """One host failure as seen through the API: scheduling rounds, restarts, backlog."""

    incident_id: str
    host: str
    host_id: str
    zone: str
    started: datetime
    last_seen: datetime
    rounds: int
    duplicate_rounds: int
    vms: tuple[VmRestarts, ...]
    backlog: tuple[str, ...]
    restarted_more_than_once: tuple[str, ...]
    alert_ids: tuple[str, ...] = ()
    host_state: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "host": self.host,
            "host_id": self.host_id,
            "zone": self.zone,
            "started": iso(self.started),
            "last_seen": iso(self.last_seen),
            "rounds": self.rounds,
            "duplicate_rounds": self.duplicate_rounds,
            "vms": [v.to_json() for v in self.vms],
            "backlog": list(self.backlog),
            "restarted_more_than_once": list(self.restarted_more_than_once),
            "alert_ids": list(self.alert_ids),
            "host_state": self.host_state,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HAIncident:
        started = from_iso(data["started"])
        last = from_iso(data["last_seen"])
        assert started is not None and last is not None
        return cls(
            incident_id=data["incident_id"],
            host=data["host"],
            host_id=data.get("host_id", ""),
            zone=data.get("zone", ""),
            started=started,
            last_seen=last,
            rounds=data["rounds"],
            duplicate_rounds=data["duplicate_rounds"],
            vms=tuple(
                VmRestarts(v["vm"], v["instance"], v["restarts"], v.get("vm_id", ""))
                for v in data["vms"]
            ),
            backlog=tuple(data["backlog"]),
            restarted_more_than_once=tuple(data.get("restarted_more_than_once", ())),
            alert_ids=tuple(data.get("alert_ids", ())),
            host_state=data.get("host_state", ""),
        )


@dataclass(frozen=True, slots=True)
class HostFailures:
    """One host's failures over the whole history scanned: HA rounds and their duplicates."""

    host: str
    host_id: str
    zone: str
    failures: int
    rounds: int
    duplicate_rounds: int
    last_failure: datetime

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "host_id": self.host_id, "zone": self.zone,
                "failures": self.failures, "rounds": self.rounds,
                "duplicate_rounds": self.duplicate_rounds,
                "last_failure": iso(self.last_failure)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HostFailures:
        last = from_iso(data["last_failure"])
        assert last is not None
        return cls(data["host"], data.get("host_id", ""), data.get("zone", ""),
                   data["failures"], data["rounds"], data["duplicate_rounds"], last)


@dataclass(frozen=True, slots=True)
class Summary:
    alerts_scanned: int = 0
    groups: int = 0
    duplicates: int = 0
    untouched_unknown: int = 0
    untouched_suppressed: int = 0
    ha_incidents: int = 0
    """Host failures over everything scanned (each: one incident of a host's "Host is down")."""
    duplicate_rounds: int = 0
    """Extra "Host is down" rounds of those failures (rounds beyond one per failure)."""
    vms_restarted_more_than_once: int = 0
    ha_backlog: int = 0
    by_family: Mapping[str, int] = field(default_factory=dict)
    ha_rounds: int = 0
    """Every "Host is down" round scanned (one HA scheduling round each)."""
    ha_incidents_listed: int = 0
    """How many of the host failures ``Plan.ha_incidents`` itemises (within ha_window)."""
    ha_window: float | None = None
    """The itemised incidents' window in seconds before the plan's time (None: all)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "alerts_scanned": self.alerts_scanned,
            "groups": self.groups,
            "duplicates": self.duplicates,
            "untouched_unknown": self.untouched_unknown,
            "untouched_suppressed": self.untouched_suppressed,
            "ha_incidents": self.ha_incidents,
            "duplicate_rounds": self.duplicate_rounds,
            "vms_restarted_more_than_once": self.vms_restarted_more_than_once,
            "ha_backlog": self.ha_backlog,
            "by_family": dict(sorted(self.by_family.items())),
            "ha_rounds": self.ha_rounds,
            "ha_incidents_listed": self.ha_incidents_listed,
            "ha_window": self.ha_window,
        }

    def to_json_counts(self) -> dict[str, int]:
        """The integer totals only (for run records and metrics)."""
        return {k: v for k, v in self.to_json().items() if isinstance(v, int)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Summary:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True, repr=False)
class Plan:
    """What to do now, and why. ``archive`` is exactly the union of the groups' duplicates."""

    def __repr__(self) -> str:
        # Short: asyncio.run's SIGINT handler reprs the main task, result included; a
        # 276,000-group plan took 5 s and 300 MB to print.
        return (f"Plan(generated_at={self.generated_at.isoformat()}, "
                f"groups={len(self.groups)}, archive={len(self.archive)}, "
                f"ha_incidents={len(self.ha_incidents)})")

    generated_at: datetime
    groups: tuple[MergeGroup, ...]
    archive: tuple[str, ...]
    ha_incidents: tuple[HAIncident, ...]
    summary: Summary
    hosts: tuple[HostFailures, ...] = ()
    """Every failed host of the history, most failures (then duplicate rounds) first."""

    @property
    def empty(self) -> bool:
        return not self.archive

    def group_of(self) -> dict[str, MergeGroup]:
        """Map every duplicate alert id to its group."""
        return {dup: g for g in self.groups for dup in g.duplicates}

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": PLAN_SCHEMA_VERSION,
            "generated_at": iso(self.generated_at),
            "groups": [g.to_json() for g in self.groups],
            "archive": list(self.archive),
            "ha_incidents": [i.to_json() for i in self.ha_incidents],
            "summary": self.summary.to_json(),
            "hosts": [h.to_json() for h in self.hosts],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        generated = from_iso(data["generated_at"])
        assert generated is not None
        return cls(
            generated_at=generated,
            groups=tuple(MergeGroup.from_json(g) for g in data["groups"]),
            archive=tuple(data["archive"]),
            ha_incidents=tuple(HAIncident.from_json(i) for i in data["ha_incidents"]),
            summary=Summary.from_json(data["summary"]),
            hosts=tuple(HostFailures.from_json(h) for h in data.get("hosts", ())),
        )
