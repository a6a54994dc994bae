"""The inventory commands: hosts and their HA, user VMs, zones and clusters."""

from __future__ import annotations

from typing import Any

from cloudstack_simulator.api.items import host_hostha, host_item, vm_item
from cloudstack_simulator.api.params import (
    like_any,
    list_response,
    paged,
    process,
    same_text,
    visible_accounts,
)
from cloudstack_simulator.api.request import Call, invalid
from cloudstack_simulator.context import Context

HOST_DETAILS = ("all", "capacity", "events", "stats", "min")
VM_DETAILS = (
    "all", "group", "nics", "stats", "secgrp", "tmpl", "servoff", "diskoff", "backoff", "iso",
    "volume", "min", "affgrp",
)  # fmt: skip


def _details(p: dict[str, Any], allowed: tuple[str, ...]) -> list[str]:
    details = p.get("details") or ["all"]
    for d in details:
        if d not in allowed:
            raise invalid(
                "The details parameter contains a non permitted value. The allowed values are "
                f"[{', '.join(allowed)}]"
            )
    return details


def list_hosts(ctx: Context, call: Call) -> dict[str, Any]:
    """listHosts: id ASC; ``details`` = all|capacity|events|stats|min."""
    p = process(ctx, call)
    details = _details(p, HOST_DETAILS)
    hosts = [h for h in ctx.state.hosts.values() if h.removed is None]
    if "id" in p:
        hosts = [h for h in hosts if h.id == p["id"]]
    if "name" in p:
        hosts = [h for h in hosts if same_text(h.name, p["name"])]
    if "type" in p:
        hosts = [h for h in hosts if same_text(h.type, p["type"])]
    if "state" in p:
        hosts = [h for h in hosts if same_text(h.status, p["state"])]
    if "resourcestate" in p:
        hosts = [h for h in hosts if same_text(h.resource_state, p["resourcestate"])]
    if "zoneid" in p:
        hosts = [h for h in hosts if h.zone_id == p["zoneid"]]
    if "podid" in p:
        hosts = [h for h in hosts if h.pod_id == p["podid"]]
    if "clusterid" in p:
        hosts = [h for h in hosts if h.cluster_id == p["clusterid"]]
    if "hypervisor" in p:
        hosts = [h for h in hosts if same_text(h.hypervisor, p["hypervisor"])]
    if "keyword" in p:
        kw = p["keyword"]
        hosts = [h for h in hosts if like_any(kw, h.name, h.status, h.type, ctx.profile.version)]
    if p.get("outofbandmanagementenabled") is True:
        hosts = []  # no host has out-of-band management configured
    if "outofbandmanagementpowerstate" in p and not same_text(
        "Disabled", p["outofbandmanagementpowerstate"]
    ):
        hosts = []
    if "virtualmachineid" in p:
        vm = ctx.state.vms.get(p["virtualmachineid"])
        cluster = ctx.state.hosts[vm.host_id].cluster_id if vm and vm.host_id else None
        hosts = [h for h in hosts if h.cluster_id == cluster and vm and h.id != vm.host_id]
    hosts.sort(key=lambda h: h.id)
    total, page = paged(hosts, p)
    return list_response(call.command, "host", total, [host_item(ctx, h, details) for h in page])


def list_virtual_machines(ctx: Context, call: Call) -> dict[str, Any]:
    """listVirtualMachines: user VMs only, id ASC; root admin needs listall=true for others'."""
    p = process(ctx, call)
    details = _details(p, VM_DETAILS)
    accounts = visible_accounts(call, p)
    vms = [v for v in ctx.state.vms.values() if v.vm_type == "User" and v.removed is None]
    if accounts is not None:
        vms = [v for v in vms if v.account in accounts]
    if "id" in p:
        vms = [v for v in vms if v.id == p["id"]]
    if "ids" in p:
        wanted = set(p["ids"])
        vms = [v for v in vms if v.id in wanted]
    if "name" in p:
        vms = [v for v in vms if like_any(p["name"], v.name)]
    if "state" in p:
        vms = [v for v in vms if same_text(v.state, p["state"])]
    if "hostid" in p:
        vms = [v for v in vms if v.host_id == p["hostid"]]
    if "haenable" in p:
        vms = [v for v in vms if v.ha_enabled == p["haenable"]]
    if "zoneid" in p:
        vms = [v for v in vms if v.zone_id == p["zoneid"]]
    if "podid" in p:
        vms = [v for v in vms if v.pod_id == p["podid"]]
    if "clusterid" in p:
        vms = [
            v
            for v in vms
            if v.host_id is not None and ctx.state.hosts[v.host_id].cluster_id == p["clusterid"]
        ]
    if "hypervisor" in p:
        vms = [v for v in vms if same_text("KVM", p["hypervisor"])]
    if "keyword" in p:
        vms = [v for v in vms if like_any(p["keyword"], v.name, v.display_name, v.state)]
    if p.get("displayvm") is False:
        vms = []
    vms.sort(key=lambda v: v.id)
    total, page = paged(vms, p)
    return list_response(
        call.command, "virtualmachine", total, [vm_item(ctx, v, details) for v in page]
    )


def list_host_ha_resources(ctx: Context, call: Call) -> dict[str, Any]:
    """listHostHAResources: hosts with a Host-HA config; no paging."""
    p = process(ctx, call)
    hosts = [
        h
        for h in ctx.state.hosts.values()
        if h.ha_config and h.removed is None and h.type == "Routing"
    ]
    if "hostid" in p:
        hosts = [h for h in hosts if h.id == p["hostid"]]
    items = [{"hostid": h.uuid, **host_hostha(h)} for h in sorted(hosts, key=lambda h: h.id)]
    return list_response(call.command, "hostha", len(items), items)


def list_host_ha_providers(ctx: Context, call: Call) -> dict[str, Any]:
    """listHostHAProviders: ``kvmhaprovider`` for KVM, ``simulatorhaprovider`` for Simulator."""
    p = process(ctx, call)
    providers = {"kvm": "kvmhaprovider", "simulator": "simulatorhaprovider"}
    provider = providers.get(p["hypervisor"].lower())
    if provider is None:
        raise invalid(f"Unable to find a valid HA provider for hypervisor {p['hypervisor']}")
    return list_response(call.command, "haprovider", 1, [{"haprovider": provider}])


def list_zones(ctx: Context, call: Call) -> dict[str, Any]:
    """listZones."""
    p = process(ctx, call)
    zones = sorted(ctx.state.zones.values(), key=lambda z: z.id)
    if "id" in p:
        zones = [z for z in zones if z.id == p["id"]]
    if "name" in p:
        zones = [z for z in zones if same_text(z.name, p["name"])]
    if "keyword" in p:
        zones = [z for z in zones if like_any(p["keyword"], z.name)]
    if "networktype" in p and not same_text("Advanced", p["networktype"]):
        zones = []
    total, page = paged(zones, p)
    items = [
        {
            "id": z.uuid,
            "name": z.name,
            "description": f"simulated zone {z.name}",
            "dns1": "8.8.8.8",
            "internaldns1": "10.0.0.2",
            "networktype": "Advanced",
            "securitygroupsenabled": False,
            "allocationstate": "Enabled",
            "zonetoken": "ab9f3c2e-6a1d-3c5e-8f7b-2d4e6a8c0b1d",
            "dhcpprovider": "VirtualRouter",
            "localstorageenabled": False,
            "hasannotations": False,
            "tags": [],
        }
        for z in page
    ]
    return list_response(call.command, "zone", total, items)


def list_clusters(ctx: Context, call: Call) -> dict[str, Any]:
    """listClusters."""
    p = process(ctx, call)
    clusters = sorted(ctx.state.clusters.values(), key=lambda c: c.id)
    for name, attr in (("id", "id"), ("zoneid", "zone_id"), ("podid", "pod_id")):
        if name in p:
            clusters = [c for c in clusters if getattr(c, attr) == p[name]]
    if "name" in p:
        clusters = [c for c in clusters if same_text(c.name, p["name"])]
    if "keyword" in p:
        clusters = [c for c in clusters if like_any(p["keyword"], c.name)]
    total, page = paged(clusters, p)
    items = [
        {
            "id": c.uuid,
            "name": c.name,
            "podid": ctx.state.pods[c.pod_id].uuid,
            "podname": ctx.state.pods[c.pod_id].name,
            "zoneid": ctx.state.zones[c.zone_id].uuid,
            "zonename": ctx.state.zones[c.zone_id].name,
            "hypervisortype": "KVM",
            "clustertype": "CloudManaged",
            "allocationstate": "Enabled",
            "managedstate": "Managed",
            "cpuovercommitratio": "1.0",
            "memoryovercommitratio": "1.0",
            "hasannotations": False,
        }
        for c in page
    ]
    return list_response(call.command, "cluster", total, items)
