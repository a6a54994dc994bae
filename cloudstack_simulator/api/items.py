"""The items list commands answer with, rendered as CloudStack's Gson renders them."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timezone, tzinfo
from typing import Any

from cloudstack_simulator.context import Context
from cloudstack_simulator.state import AsyncJob, Event, Host, Vm, derived_uuid

_TWO = tuple(f"{n:02d}" for n in range(60))
_DAY_PREFIX: dict[int, str] = {}
_OFFSETS: dict[tzinfo, tuple[int, str]] = {}


def render_date(ts: float | None, tz: tzinfo) -> str | None:
    """Gson's ``yyyy-MM-dd'T'HH:mm:ssZ`` in the management server's zone."""
    if ts is None:
        return None
    if not isinstance(tz, timezone):
        return datetime.fromtimestamp(int(ts), tz).strftime("%Y-%m-%dT%H:%M:%S%z")
    # Fixed offsets (the usual case) skip strftime: listAlerts renders 500 dates a page.
    known = _OFFSETS.get(tz)
    if known is None:
        seconds = int(tz.utcoffset(None).total_seconds())
        minutes = abs(seconds) // 60
        known = (seconds, f"{'-' if seconds < 0 else '+'}{minutes // 60:02d}{minutes % 60:02d}")
        _OFFSETS[tz] = known
    local = int(ts) + known[0]
    day, rest = divmod(local, 86400)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        t = time.gmtime(day * 86400)
        prefix = f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}T"
        _DAY_PREFIX[day] = prefix
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return prefix + _TWO[hours] + ":" + _TWO[minutes] + ":" + _TWO[secs] + known[1]


def drop_none(item: dict[str, Any]) -> dict[str, Any]:
    """Gson leaves null fields out."""
    return {k: v for k, v in item.items() if v is not None}


def host_hostha(host: Host) -> dict[str, Any]:
    """The ``hostha`` object of a host (no HA config: disabled)."""
    if not host.ha_config:
        return {"haenable": False, "hastate": "Disabled"}
    return {
        "haenable": host.ha_enabled,
        "hastate": host.ha_state,
        "haprovider": "kvmhaprovider" if host.hypervisor == "KVM" else "simulatorhaprovider",
    }


def host_item(ctx: Context, host: Host, details: Iterable[str] = ("all",)) -> dict[str, Any]:
    """A listHosts item; ``details=min`` keeps only the minimal fields (cloudstack.md §4.1)."""
    st = ctx.state
    tz = ctx.tz
    wanted = set(details)
    minimal = wanted == {"min"}
    zone = st.zones[host.zone_id]
    pod = st.pods.get(host.pod_id)
    cluster = st.clusters.get(host.cluster_id)
    item: dict[str, Any] = {
        "id": host.uuid,
        "name": host.name,
        "state": host.status,
        "disconnected": render_date(host.disconnected, tz),
        "type": host.type,
        "ipaddress": host.ip,
        "zoneid": zone.uuid,
        "podid": pod.uuid if pod else None,
        "version": ctx.profile.version,
        "hypervisor": host.hypervisor if host.type == "Routing" else None,
        # last_ping holds ms>>10 and Gson renders it as epoch milliseconds (the 1970 quirk).
        "lastpinged": render_date(host.last_ping / 1000.0, tz),
        "managementserverid": st.ms_uuid,
        "clusterid": cluster.uuid if cluster else None,
        "created": render_date(host.created, tz),
        "removed": render_date(host.removed, tz),
        "resourcestate": host.resource_state,
        "hostha": host_hostha(host),
        "outofbandmanagement": {"enabled": False, "powerstate": "Disabled"},
    }
    if not minimal:
        item.update(
            {
                "zonename": zone.name,
                "podname": pod.name if pod else None,
                "clustername": cluster.name if cluster else None,
                "clustertype": "CloudManaged" if cluster else None,
                "hahost": False,
                "hypervisorversion": "4.19" if host.type == "Routing" else None,
                "islocalstorageactive": False,
                "hasannotations": False,
                "capabilities": "hvm,snapshot" if host.type == "Routing" else None,
            }
        )
        if wanted & {"all", "capacity"} and host.type == "Routing":
            item.update({"cpunumber": 32, "cpuspeed": 2400, "memorytotal": 274877906944})
        if wanted & {"all", "events"}:
            item["events"] = (
                "PingTimeout; AgentDisconnected; HostDown; ShutdownRequested; AgentConnected; "
                "Ping; Remove; ManagementServerDown; StartAgentRebalance"
            )
    return drop_none(item)


def _host_control_state(ctx: Context, vm: Vm) -> str | None:
    if vm.host_id is None:
        return None
    host = ctx.state.hosts.get(vm.host_id)
    if host is None:
        return None
    if host.resource_state in ("Maintenance", "PrepareForMaintenance", "ErrorInMaintenance"):
        return "Maintenance"
    if host.resource_state == "Disabled":
        return "Disabled"
    if host.status == "Up":
        return "Enabled"
    return "Offline"


def vm_nic(ctx: Context, vm: Vm) -> dict[str, Any]:
    """The VM's one NIC, on its account's isolated guest network of the zone (derived from the
    seeded uuids, so the same seed gives the same NICs)."""
    zone = ctx.state.zones[vm.zone_id]
    network = derived_uuid("network", zone.uuid, vm.account)
    nic = derived_uuid("nic", vm.uuid)
    vlan = 1000 + int(network[:4], 16) % 3000
    host_part = vm.id + 1  # 10.1.0.1 is the network's gateway
    mac = nic[-8:]
    return {
        "id": nic,
        "networkid": network,
        "networkname": f"{vm.account}-network",
        "netmask": "255.255.0.0",
        "gateway": "10.1.0.1",
        "ipaddress": f"10.1.{host_part >> 8 & 255}.{host_part & 255}",
        "isdefault": True,
        "macaddress": f"02:00:{mac[0:2]}:{mac[2:4]}:{mac[4:6]}:{mac[6:8]}",
        "broadcasturi": f"vlan://{vlan}",
        "isolationuri": f"vlan://{vlan}",
        "traffictype": "Guest",
        "type": "Isolated",
        "secondaryip": [],
        "extradhcpoption": [],
    }


def vm_item(ctx: Context, vm: Vm, details: Iterable[str] = ("all",)) -> dict[str, Any]:
    """A listVirtualMachines item as a root admin sees it (``instancename``, host fields)."""
    st = ctx.state
    tz = ctx.tz
    zone = st.zones[vm.zone_id]
    host = st.hosts.get(vm.host_id) if vm.host_id is not None else None
    account = st.accounts[vm.account]
    item: dict[str, Any] = {
        "id": vm.uuid,
        "name": vm.name,
        "displayname": vm.display_name,
        "created": render_date(vm.created, tz),
        "lastupdated": render_date(vm.last_updated, tz),
        "state": vm.state,
        "haenable": vm.ha_enabled,
        "zoneid": zone.uuid,
        "hostcontrolstate": _host_control_state(ctx, vm),
        "instancename": vm.instance_name,
        "hostid": host.uuid if host else None,
        "hostname": host.name if host else None,
    }
    if set(details) != {"min"}:
        item.update(
            {
                "account": account.name,
                "userid": account.user_uuid,
                "username": account.username,
                "domainid": st.domain_uuid,
                "domain": "ROOT",
                "displayvm": True,
                "zonename": zone.name,
                "templateid": "5c9f5b5e-1d4f-4d61-9a8f-0c5a3d2b7e11",
                "templatename": "Rocky Linux 9",
                "templatedisplaytext": "Rocky Linux 9 (64-bit)",
                "passwordenabled": False,
                "serviceofferingid": "0f3b2c1d-7e6a-4b5c-9d8e-1a2b3c4d5e6f",
                "serviceofferingname": "Medium Instance",
                "cpunumber": 2,
                "cpuspeed": 1000,
                "memory": 4096,
                "guestosid": "e53f7606-5fdf-11ea-9a56-1e006800018c",
                "ostypeid": "e53f7606-5fdf-11ea-9a56-1e006800018c",
                "osdisplayname": "Rocky Linux 9",
                "rootdeviceid": 0,
                "rootdevicetype": "ROOT",
                "hypervisor": host.hypervisor if host else "KVM",
                "isdynamicallyscalable": False,
                "nic": [vm_nic(ctx, vm)],
                "securitygroup": [],
                "affinitygroup": [],
                "tags": [],
                "details": {},
            }
        )
    return drop_none(item)


def alert_item(ctx: Context, row: int) -> dict[str, Any]:
    """A listAlerts item: ``description`` is the subject, ``sent`` is ``last_sent``."""
    table = ctx.state.alerts
    i = row - 1
    return {
        "id": table.uuid[i],
        "type": table.type[i],
        "name": table.name[i],
        "description": table.subject[i],
        "sent": render_date(table.last_sent[i], ctx.tz),
    }


def event_item(ctx: Context, event: Event) -> dict[str, Any]:
    """A listEvents item."""
    return drop_none(
        {
            "id": event.uuid,
            "username": event.username,
            "type": event.type,
            "level": event.level,
            "description": event.description,
            "account": event.account,
            "domainid": ctx.state.domain_uuid,
            "domain": "ROOT",
            "resourceid": event.resource_id,
            "resourcetype": event.resource_type,
            "resourcename": event.resource_name,
            "created": render_date(event.created, ctx.tz),
            "state": event.state,
            "parentid": event.parent_id,
            # EventJoinDaoImpl sets it only when true; Gson drops the null.
            "archived": True if event.archived else None,
        }
    )


def job_item(ctx: Context, job: AsyncJob) -> dict[str, Any]:
    """An async job as listAsyncJobs and queryAsyncJobResult show it."""
    account = ctx.state.accounts[job.account]
    return drop_none(
        {
            "accountid": account.uuid,
            "userid": account.user_uuid,
            "cmd": job.cmd,
            "jobstatus": job.status,
            "jobprocstatus": 0,
            "jobresultcode": job.result_code,
            "jobresulttype": job.result_type,
            "jobresult": job.result,
            "jobinstancetype": job.instance_type,
            "jobinstanceid": job.instance_uuid,
            "created": render_date(job.created, ctx.tz),
            "completed": render_date(job.completed, ctx.tz),
            "jobid": job.uuid,
        }
    )
