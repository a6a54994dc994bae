"""Hosts and every VM, as ``report`` and ``cleanup`` list them, and where the ledger saw each VM."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sidecar.cloudstack.listing import list_all_vms, list_hosts, server_now
from sidecar.model.plan import VmPlacement
from sidecar.model.resources import Host, VirtualMachine
from sidecar.ops.detection import failure_detection
from sidecar.support.settings import Settings

if TYPE_CHECKING:
    from sidecar.cloudstack.client import CloudStackClient
    from sidecar.ledger import Ledger


@dataclass(frozen=True)
class Inventory:
    """The hosts, the VMs, and the ledger's VM placements with this listing's moves in them."""

    hosts: list[Host]
    vms: list[VirtualMachine]
    placements: list[VmPlacement]
    detection: float
    """How soon this cloud can report a host down (``sidecar.ops.detection``), seconds."""


async def take_inventory(cs: CloudStackClient, ledger: Ledger, settings: Settings) -> Inventory:
    """List the hosts and every VM, record the VMs' host changes, read every placement, and
    learn the cloud's detection time."""
    hosts = await list_hosts(cs)
    vms = await list_all_vms(cs)
    # An observation, as the service records one after each VM listing: a dry run (report,
    # cleanup without --apply) changes nothing in CloudStack, but the ledger is the sidecar's
    # own record of what it saw, and a move seen now may explain a restart planned later.
    ledger.record_vm_placements(vms, server_now(cs))
    detection = await failure_detection(cs, settings, hosts)
    return Inventory(hosts, vms, ledger.vm_placements(), detection)
