"""The VMs the planner sees: a full inventory when VMs moved, else only failed hosts' VMs;
and where the ledger saw each VM."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import MappingProxyType

from sidecar.cloudstack.client import CloudStackClient
from sidecar.cloudstack.listing import list_all_vms, list_vms_of_hosts
from sidecar.ledger import Ledger
from sidecar.model.plan import VmPlacement
from sidecar.model.resources import Alert, Host, VirtualMachine
from sidecar.ops.service.hosts import failed_host_ids
from sidecar.reconcile import parse_subject
from sidecar.reconcile.indexes import VmIndex
from sidecar.support.gcpause import gc_paused

#: Families whose alerts mean VMs moved or failed to start: the VM inventory is refreshed.
VM_FAMILIES = frozenset({"ha_starting_vm", "unable_to_restart", "vm_stopped"})


class VmCache:
    """VMs by id, their planner index, and the failed hosts where HA may still be under way."""

    def __init__(self) -> None:
        self._vms: Mapping[str, VirtualMachine] = MappingProxyType({})
        #: VmIndex of ``vms``, kept while they do not change (``None``: build it again).
        self._index: VmIndex | None = None
        #: Failed hosts -> whether HA-enabled VMs were still recorded on them at the last look.
        self._ha_pending: dict[str, bool] = {}
        self._inventory_due = True

    @property
    def vms(self) -> Mapping[str, VirtualMachine]:
        """The VMs (inventory, refreshed where HA is under way), by id; read-only, so that
        the cached VmIndex changes with them (``_replace``)."""
        return self._vms

    def _replace(self, vms: dict[str, VirtualMachine]) -> None:
        self._vms = MappingProxyType(vms)
        self._index = None

    def index(self) -> VmIndex:
        """The planner's index of ``vms``: built once per VM inventory, not once per cycle."""
        if self._index is None:
            # 40,000 VMs: tens of thousands of acyclic containers kept for many cycles; left
            # to the young generations they push the next full collection into a quiet cycle.
            with gc_paused():
                self._index = VmIndex(tuple(self._vms.values()))
        return self._index

    def forget_host(self, host_id: str) -> None:
        """A host changed state: look at its VMs again if it is (still) failed."""
        self._ha_pending.pop(host_id, None)

    async def refresh(
        self, cs: CloudStackClient, hosts: list[Host], fresh: list[Alert],
        counts: dict[str, int],
    ) -> list[VirtualMachine]:
        """Bring the VMs up to date for this cycle's hosts and new alerts; returns the VMs
        this cycle listed (none in a quiet cycle)."""
        if self._inventory_due or any(
            parse_subject(a.description).family in VM_FAMILIES for a in fresh
        ):
            # VMs moved (or we just started): one full listing; it also tells where
            # HA is still under way.
            listed = await list_all_vms(cs)
            self._replace({vm.id: vm for vm in listed})
            self._inventory_due = False
            counts["vm_inventory"] = len(self._vms)
            self._note_ha_progress(hosts)
            return listed
        return await self._poll_failed_hosts(cs, hosts)

    def _note_ha_progress(self, hosts: list[Host]) -> None:
        """From the inventory: which failed hosts still hold HA-enabled VMs."""
        on_failed: dict[str, bool] = dict.fromkeys(failed_host_ids(hosts), False)
        for vm in self._vms.values():
            if vm.hostid in on_failed and vm.haenable:
                on_failed[vm.hostid] = True
        self._ha_pending = on_failed

    async def _poll_failed_hosts(
        self, cs: CloudStackClient, hosts: list[Host]
    ) -> list[VirtualMachine]:
        """VMs of failed hosts whose HA may still be under way (newly failed, or HA VMs left);
        returns those listed.

        Once a failed host holds no HA-enabled VM, HA is done there: it is not polled again
        until its state changes, so a quiet cycle costs no VM calls.
        """
        failed = failed_host_ids(hosts)
        for host_id in list(self._ha_pending):
            if host_id not in failed:
                del self._ha_pending[host_id]
        todo = [h for h in sorted(failed) if self._ha_pending.get(h, True)]
        if not todo:
            return []
        polled: list[VirtualMachine] = []
        moved: dict[str, VirtualMachine] | None = None  # the new inventory, if VMs moved
        for host_id, vms in (await list_vms_of_hosts(cs, todo)).items():
            polled.extend(vms)
            current = self._vms if moved is None else moved
            listed = {vm.id: vm for vm in vms}
            if listed != {k: v for k, v in current.items() if v.hostid == host_id}:
                # VMs that left the host are elsewhere now: drop their stale placement.
                moved = {k: v for k, v in current.items() if v.hostid != host_id}
                moved.update(listed)
            self._ha_pending[host_id] = any(vm.haenable for vm in vms)
        if moved is not None:
            self._replace(moved)  # only a change rebuilds the VmIndex
        return polled


class VmPlacements:
    """Where the ledger saw each VM: recorded after each VM listing, and kept for the planner
    until a listing changes the VMs (then read again: another sidecar may have recorded a
    move before this one)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        #: The placements read last, with the VM inventory they were read for.
        self._read: tuple[Mapping[str, VirtualMachine], list[VmPlacement]] | None = None

    def record(
        self, listed: Sequence[VirtualMachine], at: datetime, counts: dict[str, int]
    ) -> None:
        """The host changes among ``listed`` into the ledger (nothing without a change)."""
        if listed and (written := self._ledger.record_vm_placements(listed, at)):
            counts["vm_placements"] = written
            self._read = None

    def history(self, vms: VmCache, since: datetime) -> list[VmPlacement]:
        """The placements in effect at ``since`` or later, read again only after the VMs
        changed (a new inventory, or VMs that left a failed host) or were pruned."""
        if self._read is None or self._read[0] is not vms.vms:
            self._read = (vms.vms, self._ledger.vm_placements(since=since))
        return self._read[1]

    def forget(self) -> None:
        """Read the placements again next time (pruning may have removed some)."""
        self._read = None
