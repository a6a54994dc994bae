"""Release profiles: which releases have the duplicate-HA defect, and their alert wordings.

Every subject and body below is the upstream format string of that release
(``cloudstack.md`` §6): **old form** for 4.19.x and 4.20.0, **new form** for 4.20.1 and later,
where a host prints as ``Host {"id":12,"name":"kvm-02","type":"Routing","uuid":"…"}`` and, in
"Host in ALERT state", a zone as ``Zone {"id": "1", "name": "zone-a", "uuid": "…"}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HostRef:
    """What alert texts need of a host."""

    id: int
    uuid: str
    name: str
    type: str = "Routing"


@dataclass(frozen=True, slots=True)
class ZoneRef:
    """What alert texts need of a zone."""

    id: int
    uuid: str
    name: str


@dataclass(frozen=True, slots=True)
class VmRef:
    """What alert texts need of a VM (``name`` is ``vm_instance.name``)."""

    id: int
    uuid: str
    name: str
    instance_name: str


def host_json(host: HostRef) -> str:
    """``HostVO.toString()`` of the new form: sorted keys, no spaces."""
    body = json.dumps(
        {"id": host.id, "name": host.name, "type": host.type, "uuid": host.uuid},
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
    )
    return f"Host {body}"


def zone_json(zone: ZoneRef) -> str:
    """``DataCenterVO.toString()`` of the new form: id as a string, with spaces."""
    body = json.dumps(
        {"id": str(zone.id), "name": zone.name, "uuid": zone.uuid}, ensure_ascii=False
    )
    return f"Zone {body}"


@dataclass(frozen=True, slots=True)
class Profile:
    """One CloudStack release as the simulator plays it."""

    name: str
    version: str
    #: apache/cloudstack#10367 present (fixed by #10624 in 4.19.3 / 4.20.1 / 4.21).
    defect: bool
    #: Alert wording of 4.20.1+ (#9873).
    new_form: bool
    #: ``op_ha_work.reason`` is filled (#10167, 4.20.1+).
    ha_reason: bool
    #: An HA restart writes ``VM.START`` events (#9202, 4.19.1+).
    ha_events: bool = True
    #: Has the ``enforce.post.requests.and.timestamps`` setting (#10899, 4.21.0+).
    post_enforcement: bool = False

    # -- host alerts (type 7) ----------------------------------------------------------------

    def host_down(self, host: HostRef) -> tuple[str, str]:
        """``Host down, <id>`` (investigation found the host Down)."""
        if self.new_form:
            body = f"Host {host_json(host)} is down. Starting HA on the VMs"
        else:
            body = f"Host is down: {host.id}-{host.name}. Starting HA on the VMs"
        return f"Host down, {host.id}", body

    def host_is_down(
        self, host: HostRef, zone: ZoneRef, pod: str, vm_names: list[str] | None
    ) -> tuple[str, str]:
        """``scheduleRestartForVmsOnHost``: same words in every release.

        ``vm_names`` is ``None`` when no VM is recorded on the host, else the HA-enabled names
        (the header is printed whenever the host had VMs, even if none is HA-enabled).
        """
        desc = f"name: {host.name} (id:{host.id}), availability zone: {zone.name}, pod: {pod}"
        body = f"Host [{desc}] is down."
        if vm_names is not None:
            body += "  Starting HA on the following VMs:" + "".join(f" {n}" for n in vm_names)
        return f"Host is down, {desc}", body

    def host_disconnected(self, host: HostRef, zone: ZoneRef, pod: str) -> tuple[str, str]:
        """Agent gone but host alive (previous state Up)."""
        ident = host.uuid if self.new_form else str(host.id)
        desc = f"name: {host.name} (id:{ident}), availability zone: {zone.name}, pod: {pod}"
        body = (
            f"If the agent for host [{desc}] is not restarted within alert.wait seconds, "
            "host will go to Alert state"
        )
        return f"Host disconnected, {desc}", body

    def host_alert_state(self, host: HostRef, zone: ZoneRef, pod: str | None) -> tuple[str, str]:
        """Host state could not be determined."""
        pod_name = pod if pod else "NO POD"
        if self.new_form:
            h, z = host_json(host), zone_json(zone)
            return (
                f"Host in ALERT state, {h}, availability zone: {z}, pod: {pod_name}",
                f"In availability zone {z}, host is in alert state: {h}",
            )
        return (
            f"Host in ALERT state, name: {host.name} (id:{host.id}), availability zone: "
            f"{zone.name}, pod: {pod_name}",
            f"In availability zone {zone.id}, host is in alert state: {host.id}-{host.name}",
        )

    # -- VM HA alerts (VM type: 8/9/10/19) ---------------------------------------------------

    def ha_starting(self, vm: VmRef) -> tuple[str, str]:
        """``restart()`` succeeded: subject = body."""
        text = f"HA starting VM: {vm.name} ({vm.instance_name})"
        return text, text

    def unable_to_restart(
        self, vm: VmRef, host: HostRef, zone: ZoneRef, pod: str
    ) -> tuple[str, str]:
        """Insufficient capacity to restart. Old form has no space before ``(id:``."""
        if self.new_form:
            hdesc = f"{host_json(host)}, availability zone: {zone.name}, pod: {pod}"
            body = (
                f"Insufficient capacity to restart VM, name: {vm.name}, id: {vm.id} uuid: "
                f"{vm.uuid} which was running on host {hdesc}"
            )
        else:
            hdesc = f"name: {host.name}(id:{host.id}), availability zone: {zone.name}, pod: {pod}"
            body = (
                f"Insufficient capacity to restart VM, name: {vm.name}, id: {vm.id} which was "
                f"running on host {hdesc}"
            )
        return f"Unable to restart {vm.name} which was running on host {hdesc}", body

    def vm_stopped_unexpectedly(
        self, vm: VmRef, host_id: int, zone_id: int, pod_id: int
    ) -> tuple[str, str]:
        """``scheduleRestart`` without investigation of a VM that is not HA-enabled."""
        return (
            f"VM (name: {vm.name}, id: {vm.id}) stopped unexpectedly on host id:{host_id}, "
            f"availability zone id:{zone_id}, pod id:{pod_id}",
            f"Virtual Machine {vm.name} (id: {vm.id}) running on host [{host_id}] stopped "
            "unexpectedly.",
        )

    # -- Host-HA framework (type 30) ---------------------------------------------------------

    def ha_fencing(self, host: HostRef, zone: ZoneRef) -> tuple[str, str]:
        """``HAAbstractHostProvider`` after a fence."""
        return (
            f"HA Fencing of host id={host.id}, in dc id={zone.id} performed",
            f"HA Fencing has been performed for host id={host.id}, uuid={host.uuid} in "
            f"datacenter id={zone.id}",
        )

    def ha_recovery(self, host: HostRef, zone: ZoneRef) -> tuple[str, str]:
        """``HAAbstractHostProvider`` after a recovery (reboot through OOBM)."""
        return (
            f"HA Recovery of host id={host.id}, in dc id={zone.id} performed",
            f"HA Recovery has been performed for host id={host.id}, uuid={host.uuid} in "
            f"datacenter id={zone.id}",
        )

    # -- VM state sync (type 27, suppressed by CloudStack itself) ----------------------------

    def vm_sync_stopped(self, vm: VmRef, state: str, vm_type: str) -> tuple[str, str]:
        """Out-of-context power-off."""
        if self.new_form:
            inst = json.dumps(
                {
                    "id": vm.id,
                    "instanceName": vm.instance_name,
                    "state": state,
                    "type": vm_type,
                    "uuid": vm.uuid,
                },
                separators=(",", ":"),
                sort_keys=True,
            )
            what = f"VM instance {inst}"
        else:
            what = f"VM {vm.name}({vm.instance_name})"
        return (
            "VM state sync alert",
            f"{what} state is sync-ed ({state} -> Stopped) from out-of-context transition.",
        )


#: The releases the simulator plays; keys are what ``--profile`` accepts.
PROFILES: dict[str, Profile] = {
    "4.19.2": Profile("4.19.2", "4.19.2.0", defect=True, new_form=False, ha_reason=False),
    "4.20.0": Profile("4.20.0", "4.20.0.0", defect=True, new_form=False, ha_reason=False),
    "4.20.1": Profile("4.20.1", "4.20.1.0", defect=False, new_form=True, ha_reason=True),
    # 4.21+/main print hosts and zones like 4.20.1 (cloudstack.md §6: "new form = 4.20.1 and
    # later"); kept as its own profile for the version string and future divergence.
    "4.22": Profile(
        "4.22", "4.22.0.0", defect=False, new_form=True, ha_reason=True, post_enforcement=True
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (``4.19.2`` or ``4.19.2.0`` both work)."""
    key = name.strip()
    while key not in PROFILES and key.endswith(".0"):
        key = key[:-2]
    if key not in PROFILES:
        raise ValueError(f"unknown simulator profile {name!r}: choose one of {', '.join(PROFILES)}")
    return PROFILES[key]
