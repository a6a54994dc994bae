"""The views of state rows that alert texts print (``HostRef``, ``ZoneRef``, ``VmRef``)."""

from __future__ import annotations

from cloudstack_simulator.profiles import HostRef, VmRef, ZoneRef
from cloudstack_simulator.state import Host, State, Vm


def host_refs(state: State, host: Host) -> tuple[HostRef, ZoneRef, str]:
    """A host, its zone and its pod name, as alert texts need them."""
    zone = state.zones[host.zone_id]
    pod = state.pods.get(host.pod_id)
    return (
        HostRef(host.id, host.uuid, host.name, host.type),
        ZoneRef(zone.id, zone.uuid, zone.name),
        pod.name if pod else "",
    )


def vm_ref(vm: Vm) -> VmRef:
    """A VM as alert texts need it."""
    return VmRef(vm.id, vm.uuid, vm.name, vm.instance_name)
