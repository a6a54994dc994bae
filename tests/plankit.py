"""Alerts, hosts, VMs and plans for reconciler tests: terse builders on a fixed clock."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sidecar.model.plan import VmPlacement
from sidecar.model.resources import Alert, Host, VirtualMachine
from sidecar.reconcile import HostStateChange, Plan, Policy, Snapshot, build_plan

T0 = datetime(2025, 2, 11, 10, 0, tzinfo=UTC)
HOST = "ALERT.COMPUTE.HOST"
USERVM = "ALERT.USERVM"
_ids = itertools.count(1)


def down(host: str = "kvm1", host_id: int = 1, zone: str = "zone1", pod: str = "Pod1") -> str:
    return f"Host is down, name: {host} (id:{host_id}), availability zone: {zone}, pod: {pod}"


def started(vm: str = "web01", instance: str = "i-2-14-VM") -> str:
    return f"HA starting VM: {vm} ({instance})"


def unable(vm: str = "web01", host: str = "kvm1", host_id: int = 1) -> str:
    return (f"Unable to restart {vm} which was running on host name: {host}(id:{host_id}), "
            "availability zone: zone1, pod: Pod1")


def alert(description: str, at: float, name: str = HOST, alert_id: str | None = None) -> Alert:
    """An alert ``at`` seconds after T0."""
    return Alert(
        id=alert_id or f"a-{next(_ids):05d}",
        type=-1,
        name=name,
        description=description,
        sent=T0 + timedelta(seconds=at),
    )


def plan_of(
    alerts: Sequence[Alert],
    *,
    hosts: Sequence[Host] = (),
    vms: Sequence[VirtualMachine] = (),
    history: Sequence[HostStateChange] = (),
    policy: Policy | None = None,
    at: float = 3600,
    placements: Sequence[VmPlacement] = (),
) -> Plan:
    snapshot = Snapshot(
        taken_at=T0 + timedelta(seconds=at), alerts=alerts, hosts=hosts, vms=vms,
        host_history=history, vm_placements=placements,
    )
    return build_plan(snapshot, policy or Policy())


def up_at(
    at: float, host_id: str = "h-1", name: str = "kvm1", state: str = "Up"
) -> HostStateChange:
    return HostStateChange(host_id=host_id, host_name=name, state=state,
                           at=T0 + timedelta(seconds=at))


HOST1 = Host(id="h-1", name="kvm1", state="Down", zonename="zone1", zoneid="z-1")
HOST2 = Host(id="h-2", name="kvm2", state="Up", zonename="zone1", zoneid="z-1")


def vm(
    name: str, instance: str, host: str, state: str = "Running", ha: bool = True
) -> VirtualMachine:
    return VirtualMachine(id=f"vm-{instance}", name=name, instancename=instance, state=state,
                          haenable=ha, hostid=host, zoneid="z-1")
