"""The Alertmanager alerts one plan calls for: one per HA incident, never one per alert copy.

Names (``alertname``):

- ``CloudStackHostFailure``: a host's latest failure while the host is not Up (labels ``host``,
  ``zone``, ``pod``, ``cloudstack``, ``severity=critical``);
- ``CloudStackHABacklog``: that failure while it has HA backlog (HA-enabled VMs not running
  elsewhere after ``ha_backlog_after``);
- ``CloudStackVMRestartedTwice``: a VM HA restarted more than once in one failure (labels ``vm``
  and ``host``), while the failure is open or ended less than ``ha_backlog_after`` ago (a
  second restart may only show once the host is back);
- ``CloudStackDuplicateHAWork``: reserved for duplicate ``op_ha_work`` rows, which only the
  database source (issue 16, not built) can see; nothing sends it yet.

An incident's numbers shrink as its duplicate copies are archived, so they come from
``IncidentMemory``: the largest seen, and the copies archived so far.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sidecar.model.plan import HAIncident, Plan
from sidecar.model.resources import Host

HOST_FAILURE = "CloudStackHostFailure"
HA_BACKLOG = "CloudStackHABacklog"
VM_RESTARTED_TWICE = "CloudStackVMRestartedTwice"
#: Reserved: sent once the database source (issue 16) can see duplicate ``op_ha_work`` rows.
DUPLICATE_HA_WORK = "CloudStackDuplicateHAWork"

#: Annotations list at most this many VMs: a mass failure must not make a megabyte alert.
MAX_LISTED_VMS = 30


@dataclass
class IncidentMemory:
    """What the sidecar saw of one incident across cycles (its alerts get archived)."""

    rounds: int = 0
    duplicate_rounds: int = 0
    restarts: dict[str, int] = field(default_factory=dict)
    archived: int = 0

    def see(self, incident: HAIncident) -> None:
        """Keep the largest numbers seen: archiving copies lowers what the plan counts."""
        self.rounds = max(self.rounds, incident.rounds)
        self.duplicate_rounds = max(self.duplicate_rounds, incident.duplicate_rounds)
        for vm in incident.vms:
            self.restarts[vm.vm] = max(self.restarts.get(vm.vm, 0), vm.restarts)

    def twice(self) -> list[str]:
        """VMs restarted more than once, by name."""
        return sorted(vm for vm, n in self.restarts.items() if n > 1)

    def to_json(self) -> dict[str, object]:
        return {"rounds": self.rounds, "duplicate_rounds": self.duplicate_rounds,
                "restarts": dict(self.restarts), "archived": self.archived}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> IncidentMemory:
        restarts = data.get("restarts", {})
        return cls(
            rounds=int(str(data.get("rounds", 0))),
            duplicate_rounds=int(str(data.get("duplicate_rounds", 0))),
            restarts={str(k): int(v) for k, v in restarts.items()}
            if isinstance(restarts, dict) else {},
            archived=int(str(data.get("archived", 0))),
        )


@dataclass(frozen=True)
class Wanted:
    """One alert that should be firing now."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    """On the CloudStack server's clock (the sender maps it to its own)."""
    incident_id: str
    incident_last_seen: datetime

    @property
    def key(self) -> str:
        return label_key(self.labels)


def label_key(labels: Mapping[str, str]) -> str:
    """The alert's identity, as Alertmanager sees it: its label set."""
    return json.dumps(dict(sorted(labels.items())), separators=(",", ":"))


def _listed(items: Iterable[str]) -> str:
    """A comma-separated list, cut after MAX_LISTED_VMS items."""
    items = list(items)
    text = ", ".join(items[:MAX_LISTED_VMS])
    if len(items) > MAX_LISTED_VMS:
        text += f" and {len(items) - MAX_LISTED_VMS} more"
    return text


def _labels(**values: str) -> dict[str, str]:
    """Labels without empty values (Alertmanager treats an empty label as absent anyway)."""
    return {k: v for k, v in values.items() if v}


def latest_per_host(incidents: Iterable[HAIncident]) -> list[HAIncident]:
    """Each host's latest incident (the plan lists older ones of the horizon too)."""
    latest: dict[str, HAIncident] = {}
    for incident in incidents:
        key = incident.host_id or f"{incident.zone}/{incident.host}"
        if key not in latest or incident.started >= latest[key].started:
            latest[key] = incident
    return list(latest.values())


def wanted_alerts(
    plan: Plan,
    hosts: Iterable[Host],
    memory: Mapping[str, IncidentMemory],
    *,
    cloudstack: str,
    backlog_after: float,
) -> list[Wanted]:
    """The alerts the plan's incidents call for now; ``memory`` has every incident's entry."""
    by_id = {h.id: h for h in hosts}
    out: list[Wanted] = []
    for incident in latest_per_host(plan.ha_incidents):
        out += _incident_alerts(incident, by_id.get(incident.host_id),
                                memory[incident.incident_id], now=plan.generated_at,
                                cloudstack=cloudstack, backlog_after=backlog_after)
    return out


def _incident_alerts(
    incident: HAIncident, host: Host | None, seen: IncidentMemory, *, now: datetime,
    cloudstack: str, backlog_after: float,
) -> list[Wanted]:
    """One incident's alerts: its host failure and backlog while open, its double restarts."""
    is_open = host is not None and host.state != "Up"
    if not is_open and now - incident.last_seen >= timedelta(seconds=backlog_after):
        return []
    common = _labels(host=incident.host, zone=(host.zonename if host else "") or incident.zone,
                     pod=host.podname if host else "", cloudstack=cloudstack)
    numbers = {
        "incident_id": incident.incident_id,
        "rounds": str(seen.rounds),
        "duplicate_rounds": str(seen.duplicate_rounds),
        "restarts": _listed(f"{vm}: {n}" for vm, n in sorted(seen.restarts.items())),
        "archived_copies": str(seen.archived),
    }
    out: list[Wanted] = []

    def add(labels: dict[str, str], summary: str, **extra: str) -> None:
        out.append(Wanted(labels, {**numbers, **extra, "summary": summary},
                          incident.started, incident.incident_id, incident.last_seen))

    twice = seen.twice()
    if host is not None and is_open:
        add({"alertname": HOST_FAILURE, **common, "severity": "critical"},
            f"Host {incident.host} is {host.state}: {seen.rounds} HA rounds "
            f"({seen.duplicate_rounds} duplicate), {len(seen.restarts)} VMs, "
            f"{len(twice)} restarted more than once", host_state=host.state)
        if incident.backlog:
            add({"alertname": HA_BACKLOG, **common, "severity": "critical"},
                f"{len(incident.backlog)} HA-enabled VMs of host {incident.host} are not "
                f"running elsewhere after {backlog_after / 60:g} min",
                backlog=_listed(incident.backlog))
    for vm in twice:
        add({"alertname": VM_RESTARTED_TWICE, **common, "vm": vm, "severity": "warning"},
            f"VM {vm} was restarted {seen.restarts[vm]} times by HA after host "
            f"{incident.host} failed")
    return out


__all__ = [
    "DUPLICATE_HA_WORK",
    "HA_BACKLOG",
    "HOST_FAILURE",
    "VM_RESTARTED_TWICE",
    "IncidentMemory",
    "Wanted",
    "label_key",
    "latest_per_host",
    "wanted_alerts",
]
