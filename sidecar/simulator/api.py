"""The API commands: parameter processing as upstream's dispatcher does it, then each command.

Order of checks follows ``ApiServer.handleRequest``: ``BaseListCmd.validateSpecificParameters``
(page/pagesize pairing), ``ParamProcessWorker`` (types, uuids, dates, lengths), then the
command itself (page size limit, filters, archive pre-check).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import TYPE_CHECKING, Any

from sidecar.constants import HTTP_INTERNAL_ERROR, HTTP_PARAM_ERROR, MAX_PAGE_SIZE
from sidecar.simulator.apispec import APIS
from sidecar.simulator.state import (
    Account,
    ApiKey,
    AsyncJob,
    Event,
    Host,
    Vm,
    key_row,
    like_matcher,
    page_with_unstable_ties,
)
from sidecar.simulator.verify import parse_param_date

if TYPE_CHECKING:
    from sidecar.simulator.core import Simulator

CS_SERVER_API = 9999
CS_INVALID_PARAMETER = 4350

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_JAVA_LONG = re.compile(r"[+-]?\d+")

HOST_DETAILS = ("all", "capacity", "events", "stats", "min")
VM_DETAILS = (
    "all", "group", "nics", "stats", "secgrp", "tmpl", "servoff", "diskoff", "backoff", "iso",
    "volume", "min", "affgrp",
)  # fmt: skip

#: Commands whose ``date`` parameters take the lenient forms of cloudstack.md §10.
LENIENT_DATES = frozenset({"listEvents", "archiveAlerts", "deleteAlerts"})

#: Entity a ``uuid`` parameter refers to, by parameter name; ``id``/``ids`` use the command's.
ENTITY_BY_PARAM = {
    "zoneid": "zone",
    "podid": "pod",
    "clusterid": "cluster",
    "hostid": "host",
    "virtualmachineid": "vm",
    "domainid": "domain",
    "projectid": "project",
    "jobid": "job",
    "startid": "event",
}
ENTITY_BY_COMMAND = {
    "listAlerts": "alert",
    "archiveAlerts": "alert",
    "deleteAlerts": "alert",
    "listHosts": "host",
    "listVirtualMachines": "vm",
    "listEvents": "event",
    "listZones": "zone",
    "listClusters": "cluster",
}


class ApiError(Exception):
    """An error answer. ``server_api=False`` is the servlet's plain 401 (no ``cserrorcode``,
    no ``X-Description``), as when ``verifyRequest`` returns false."""

    def __init__(
        self,
        status: int,
        text: str,
        cserrorcode: int | None = CS_SERVER_API,
        *,
        server_api: bool = True,
    ) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.cserrorcode = cserrorcode if server_api else None
        self.server_api = server_api


def invalid(text: str) -> ApiError:
    """``InvalidParameterValueException`` as ``handleRequest`` wraps it: 431, 4350."""
    return ApiError(HTTP_PARAM_ERROR, text, CS_INVALID_PARAMETER)


@dataclass
class Call:
    """One authenticated request."""

    command: str
    params: dict[str, str]
    method: str
    key: ApiKey
    account: Account

    @property
    def short(self) -> str:
        """``getCommandName()`` minus ``response``: the lowercased command."""
        return self.command.lower()


# --- parameter processing ----------------------------------------------------------------------


def _validate_paging(call: Call) -> None:
    raw_size = call.params.get("pagesize")
    size = None
    if raw_size is not None:
        if not _JAVA_LONG.fullmatch(raw_size):
            # Long.valueOf in validateSpecificParameters: an unhandled NumberFormatException.
            raise ApiError(HTTP_INTERNAL_ERROR, f'For input string: "{raw_size}"')
        size = int(raw_size)
    has_page = call.params.get("page") is not None
    if not has_page and size is not None and size != -1:
        raise ApiError(
            HTTP_PARAM_ERROR, '"page" parameter is required when "pagesize" is specified'
        )
    if size is None and has_page:
        raise ApiError(
            HTTP_PARAM_ERROR, '"pagesize" parameter is required when "page" is specified'
        )


def _translate(sim: Simulator, call: Call, spec: dict[str, Any], raw: str) -> int | None:
    """``ParamProcessWorker.translateUuidToInternalId``."""
    name = spec["name"]
    if raw == "-1":
        return -1
    pre3x = not spec.get("since")
    is_uuid = _UUID.fullmatch(raw) is not None
    if not pre3x and not is_uuid:
        return None  # newer APIs silently drop a non-uuid value
    if pre3x and not is_uuid and _JAVA_LONG.fullmatch(raw):
        value = int(raw)
        if value < 1:
            # validateNaturalNumber's ServerApiException is caught as a CloudRuntimeException.
            raise ApiError(
                HTTP_INTERNAL_ERROR, f"Internal error executing API command {call.short}"
            )
        return value
    kind = ENTITY_BY_PARAM.get(name) or ENTITY_BY_COMMAND.get(call.command, "")
    found = sim.state.find_uuid(kind, raw)
    if found is None:
        raise ApiError(
            HTTP_PARAM_ERROR,
            f"Unable to execute API command {call.short} due to invalid value. Invalid parameter "
            f"{name} value={raw} due to incorrect long value format, or entity does not exist or "
            "due to incorrect parameter annotation for the field in api cmd class.",
        )
    return found


def _integer(call: Call, name: str, raw: str, bits: int = 32) -> int:
    if not _JAVA_LONG.fullmatch(raw) or not -(2 ** (bits - 1)) <= int(raw) < 2 ** (bits - 1):
        raise ApiError(
            HTTP_PARAM_ERROR,
            f"Unable to execute API command {call.short} due to invalid value {raw} for "
            f"parameter {name}",
        )
    return int(raw)


def process(sim: Simulator, call: Call) -> dict[str, Any]:
    """Parse and check ``call.params`` against the command's declared parameters."""
    spec = APIS[call.command]
    if any(p["name"] == "pagesize" for p in spec["params"]):
        _validate_paging(call)
    out: dict[str, Any] = {}
    for param in spec["params"]:
        name = param["name"]
        raw = call.params.get(name)
        if raw is None:
            if param["required"]:
                raise ApiError(
                    HTTP_PARAM_ERROR,
                    f"Unable to execute API command {call.short} due to missing parameter {name}",
                )
            continue
        kind = param["type"]
        if kind == "boolean":
            out[name] = raw.lower() == "true"
        elif kind in ("integer", "int"):
            if raw.strip():
                out[name] = _integer(call, name, raw)
        elif kind in ("long", "short"):
            out[name] = _integer(call, name, raw, 64 if kind == "long" else 16)
        elif kind == "uuid":
            value = _translate(sim, call, param, raw)
            if value is not None:
                out[name] = value
        elif kind == "list":
            tokens = [t for t in raw.split(",") if t]
            if name == "ids":
                ids = []
                for token in tokens:
                    value = _translate(sim, call, param, token)
                    if value is not None:
                        ids.append(value)
                out[name] = ids
            else:
                out[name] = tokens
        elif kind == "date":
            parsed = parse_param_date(
                raw,
                end=name == "enddate",
                tz=sim.tz,
                lenient_forms=call.command in LENIENT_DATES,
            )
            if parsed is None:
                raise ApiError(
                    HTTP_PARAM_ERROR,
                    f"Unable to parse date {raw} for command {call.short}, please pass dates in "
                    "the format mentioned in the api documentation",
                )
            out[name] = parsed
        elif kind == "string":
            length = int(param.get("length", 255))
            if len(raw) > length:
                raise ApiError(
                    HTTP_PARAM_ERROR,
                    f"Unable to execute API command {call.short} due to invalid value. Value "
                    f"greater than max allowed length {length} for param: {name}",
                )
            out[name] = raw
        else:
            out[name] = raw
    return out


def page_bounds(parsed: dict[str, Any]) -> tuple[int, int | None]:
    """``getStartIndex``/``getPageSizeVal``: (offset, limit or None for unlimited)."""
    size = parsed.get("pagesize")
    page = parsed.get("page")
    if size is not None and size > MAX_PAGE_SIZE:
        raise invalid(f"Page size can't exceed max allowed page size value: {MAX_PAGE_SIZE}")
    if size == -1 and page is not None:
        raise invalid("Can't specify page parameter when pagesize is -1 (Unlimited)")
    if size == -1:
        return 0, None
    limit = MAX_PAGE_SIZE if size is None else max(0, size)
    start = limit * (page - 1) if page is not None and page > 0 else 0
    return start, limit


def list_response(
    command: str, key: str, total: int, items: list[dict[str, Any]]
) -> dict[str, Any]:
    """``{}`` when nothing matches, ``{"count": N}`` past the end, else count and items."""
    body: dict[str, Any] = {}
    if total:
        body["count"] = total
        if items:
            body[key] = items
    return {f"{command.lower()}response": body}


def _page(rows: list[Any], parsed: dict[str, Any]) -> tuple[int, list[Any]]:
    start, limit = page_bounds(parsed)
    if limit is None:
        return len(rows), rows
    return len(rows), rows[start : start + limit]


# --- rendering helpers ---------------------------------------------------------------------


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


def _drop_none(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if v is not None}


def _like_any(keyword: str, *values: str | None) -> bool:
    matcher = like_matcher(keyword)
    for value in values:
        if value is None:
            continue
        if isinstance(matcher, str):
            if matcher in value.casefold():
                return True
        elif matcher.search(value):
            return True
    return False


def _ci(a: str | None, b: str) -> bool:
    return a is not None and a.rstrip(" ").casefold() == b.rstrip(" ").casefold()


def host_hostha(host: Host) -> dict[str, Any]:
    """The ``hostha`` object of a host (no HA config: disabled)."""
    if not host.ha_config:
        return {"haenable": False, "hastate": "Disabled"}
    return {
        "haenable": host.ha_enabled,
        "hastate": host.ha_state,
        "haprovider": "kvmhaprovider" if host.hypervisor == "KVM" else "simulatorhaprovider",
    }


def host_item(sim: Simulator, host: Host, details: Iterable[str] = ("all",)) -> dict[str, Any]:
    """A listHosts item; ``details=min`` keeps only the minimal fields (cloudstack.md §4.1)."""
    st = sim.state
    tz = sim.tz
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
        "version": sim.profile.version,
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
    return _drop_none(item)


def _host_control_state(sim: Simulator, vm: Vm) -> str | None:
    if vm.host_id is None:
        return None
    host = sim.state.hosts.get(vm.host_id)
    if host is None:
        return None
    if host.resource_state in ("Maintenance", "PrepareForMaintenance", "ErrorInMaintenance"):
        return "Maintenance"
    if host.resource_state == "Disabled":
        return "Disabled"
    if host.status == "Up":
        return "Enabled"
    return "Offline"


def vm_item(sim: Simulator, vm: Vm, details: Iterable[str] = ("all",)) -> dict[str, Any]:
    """A listVirtualMachines item as a root admin sees it (``instancename``, host fields)."""
    st = sim.state
    tz = sim.tz
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
        "hostcontrolstate": _host_control_state(sim, vm),
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
                "nic": [],
                "securitygroup": [],
                "affinitygroup": [],
                "tags": [],
                "details": {},
            }
        )
    return _drop_none(item)


def alert_item(sim: Simulator, row: int) -> dict[str, Any]:
    """A listAlerts item: ``description`` is the subject, ``sent`` is ``last_sent``."""
    table = sim.state.alerts
    i = row - 1
    return {
        "id": table.uuid[i],
        "type": table.type[i],
        "name": table.name[i],
        "description": table.subject[i],
        "sent": render_date(table.last_sent[i], sim.tz),
    }


def event_item(sim: Simulator, event: Event) -> dict[str, Any]:
    """A listEvents item."""
    return _drop_none(
        {
            "id": event.uuid,
            "username": event.username,
            "type": event.type,
            "level": event.level,
            "description": event.description,
            "account": event.account,
            "domainid": sim.state.domain_uuid,
            "domain": "ROOT",
            "resourceid": event.resource_id,
            "resourcetype": event.resource_type,
            "resourcename": event.resource_name,
            "created": render_date(event.created, sim.tz),
            "state": event.state,
            "parentid": event.parent_id,
        }
    )


def job_item(sim: Simulator, job: AsyncJob) -> dict[str, Any]:
    """An async job as listAsyncJobs and queryAsyncJobResult show it."""
    account = sim.state.accounts[job.account]
    return _drop_none(
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
            "created": render_date(job.created, sim.tz),
            "completed": render_date(job.completed, sim.tz),
            "jobid": job.uuid,
        }
    )


# --- commands ------------------------------------------------------------------------------


def list_alerts(sim: Simulator, call: Call) -> dict[str, Any]:
    """listAlerts: live alerts only, ``last_sent DESC`` with no tie-breaker."""
    p = process(sim, call)
    start, limit = page_bounds(p)
    row = p.get("id")
    table = sim.state.alerts
    view = table.select(
        row=row if row is not None else None,
        name=p.get("name"),
        type_=p.get("type"),
        keyword=p.get("keyword"),
    )
    total = len(view)
    stop = total if limit is None else start + limit
    if sim.tie_order == "shuffle" and limit is not None:
        keys = page_with_unstable_ties(view, start, stop, sim.next_salt())
    else:
        keys = view.slice(start, stop)
    items = [alert_item(sim, key_row(k)) for k in keys]
    return list_response(call.command, "alert", total, items)


def _archive_or_delete(sim: Simulator, call: Call, *, delete: bool) -> dict[str, Any]:
    with sim.lock:
        p = process(sim, call)
    ids: list[int] | None = p.get("ids")
    type_ = p.get("type")
    start: datetime | None = p.get("startdate")
    end: datetime | None = p.get("enddate")
    if ids is None and type_ is None and end is None:
        raise invalid("either ids, type, startdate or enddate must be specified")
    if start is not None and end is None:
        raise invalid("enddate must be specified with startdate parameter")
    table = sim.state.alerts
    # The DAO's pre-check and its updates are separate steps (no lock between them), so two
    # concurrent archivers of one id can both succeed, as upstream.
    with sim.lock:
        rows = table.rows_for_filters(
            ids, type_, start.timestamp() if start else None, end.timestamp() if end else None
        )
        ok = ids is None or len(rows) >= len(ids)
    if not ok:
        what = "delete" if delete else "archive"
        raise ApiError(
            HTTP_INTERNAL_ERROR,
            f"Unable to {what} Alerts, one or more parameters has invalid values",
        )
    with sim.lock:
        for row in rows:
            uuid = table.uuid[row - 1]
            if delete:
                if table.delete(row):
                    sim.stats.note_deleted(uuid)
            else:
                # UPDATE sets archived=1 whether or not a racing request already did.
                table.archive(row)
                sim.stats.note_archived(uuid)
    return {f"{call.short}response": {"success": True}}


def archive_alerts(sim: Simulator, call: Call) -> dict[str, Any]:
    """archiveAlerts: all-or-nothing by pre-check."""
    return _archive_or_delete(sim, call, delete=False)


def delete_alerts(sim: Simulator, call: Call) -> dict[str, Any]:
    """deleteAlerts: like archiveAlerts, but rows are removed."""
    return _archive_or_delete(sim, call, delete=True)


def _details(p: dict[str, Any], allowed: tuple[str, ...]) -> list[str]:
    details = p.get("details") or ["all"]
    for d in details:
        if d not in allowed:
            raise invalid(
                "The details parameter contains a non permitted value. The allowed values are "
                f"[{', '.join(allowed)}]"
            )
    return details


def list_hosts(sim: Simulator, call: Call) -> dict[str, Any]:
    """listHosts: id ASC; ``details`` = all|capacity|events|stats|min."""
    p = process(sim, call)
    details = _details(p, HOST_DETAILS)
    hosts = [h for h in sim.state.hosts.values() if h.removed is None]
    if "id" in p:
        hosts = [h for h in hosts if h.id == p["id"]]
    if "name" in p:
        hosts = [h for h in hosts if _ci(h.name, p["name"])]
    if "type" in p:
        hosts = [h for h in hosts if _ci(h.type, p["type"])]
    if "state" in p:
        hosts = [h for h in hosts if _ci(h.status, p["state"])]
    if "resourcestate" in p:
        hosts = [h for h in hosts if _ci(h.resource_state, p["resourcestate"])]
    if "zoneid" in p:
        hosts = [h for h in hosts if h.zone_id == p["zoneid"]]
    if "podid" in p:
        hosts = [h for h in hosts if h.pod_id == p["podid"]]
    if "clusterid" in p:
        hosts = [h for h in hosts if h.cluster_id == p["clusterid"]]
    if "hypervisor" in p:
        hosts = [h for h in hosts if _ci(h.hypervisor, p["hypervisor"])]
    if "keyword" in p:
        kw = p["keyword"]
        hosts = [h for h in hosts if _like_any(kw, h.name, h.status, h.type, sim.profile.version)]
    if p.get("outofbandmanagementenabled") is True:
        hosts = []  # no host has out-of-band management configured
    if "outofbandmanagementpowerstate" in p and not _ci(
        "Disabled", p["outofbandmanagementpowerstate"]
    ):
        hosts = []
    if "virtualmachineid" in p:
        vm = sim.state.vms.get(p["virtualmachineid"])
        cluster = sim.state.hosts[vm.host_id].cluster_id if vm and vm.host_id else None
        hosts = [h for h in hosts if h.cluster_id == cluster and vm and h.id != vm.host_id]
    hosts.sort(key=lambda h: h.id)
    total, page = _page(hosts, p)
    return list_response(call.command, "host", total, [host_item(sim, h, details) for h in page])


def _visible_accounts(call: Call, p: dict[str, Any]) -> set[str] | None:
    """Accounts whose resources a root admin sees: all with listall=true, else its own."""
    if "account" in p:
        return {p["account"]}
    if p.get("listall"):
        return None
    return {call.account.name}


def list_virtual_machines(sim: Simulator, call: Call) -> dict[str, Any]:
    """listVirtualMachines: user VMs only, id ASC; root admin needs listall=true for others'."""
    p = process(sim, call)
    details = _details(p, VM_DETAILS)
    accounts = _visible_accounts(call, p)
    vms = [v for v in sim.state.vms.values() if v.vm_type == "User" and v.removed is None]
    if accounts is not None:
        vms = [v for v in vms if v.account in accounts]
    if "id" in p:
        vms = [v for v in vms if v.id == p["id"]]
    if "ids" in p:
        wanted = set(p["ids"])
        vms = [v for v in vms if v.id in wanted]
    if "name" in p:
        vms = [v for v in vms if _like_any(p["name"], v.name)]
    if "state" in p:
        vms = [v for v in vms if _ci(v.state, p["state"])]
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
            if v.host_id is not None and sim.state.hosts[v.host_id].cluster_id == p["clusterid"]
        ]
    if "hypervisor" in p:
        vms = [v for v in vms if _ci("KVM", p["hypervisor"])]
    if "keyword" in p:
        vms = [v for v in vms if _like_any(p["keyword"], v.name, v.display_name, v.state)]
    if p.get("displayvm") is False:
        vms = []
    vms.sort(key=lambda v: v.id)
    total, page = _page(vms, p)
    return list_response(
        call.command, "virtualmachine", total, [vm_item(sim, v, details) for v in page]
    )


def list_events(sim: Simulator, call: Call) -> dict[str, Any]:
    """listEvents: ``created DESC, id DESC``; system events need listall=true."""
    p = process(sim, call)
    accounts = _visible_accounts(call, p)
    events = [e for e in sim.state.events if accounts is None or e.account in accounts]
    if "id" in p:
        events = [e for e in events if e.id == p["id"]]
    if "type" in p:
        events = [e for e in events if _ci(e.type, p["type"])]
    if "level" in p:
        events = [e for e in events if _ci(e.level, p["level"])]
    if "keyword" in p:
        events = [e for e in events if _like_any(p["keyword"], e.type, e.description, e.level)]
    if "startdate" in p:
        since = p["startdate"].timestamp()
        events = [e for e in events if e.created >= since]
    if "enddate" in p:
        until = p["enddate"].timestamp()
        events = [e for e in events if e.created <= until]
    if "resourceid" in p:
        events = [e for e in events if e.resource_id == p["resourceid"]]
    if "resourcetype" in p:
        events = [e for e in events if _ci(e.resource_type, p["resourcetype"])]
    if "startid" in p:
        parent = next((e.uuid for e in sim.state.events if e.id == p["startid"]), None)
        events = [e for e in events if e.id == p["startid"] or e.parent_id == parent]
    events.sort(key=lambda e: (e.created, e.id), reverse=True)
    total, page = _page(events, p)
    return list_response(call.command, "event", total, [event_item(sim, e) for e in page])


def list_async_jobs(sim: Simulator, call: Call) -> dict[str, Any]:
    """listAsyncJobs: list key ``asyncjobs`` (plural)."""
    p = process(sim, call)
    accounts = _visible_accounts(call, p)
    jobs = [j for j in sim.state.jobs.values() if accounts is None or j.account in accounts]
    if "startdate" in p:
        since = p["startdate"].timestamp()
        jobs = [j for j in jobs if j.created >= since]
    if "keyword" in p:
        jobs = [j for j in jobs if _like_any(p["keyword"], j.cmd)]
    jobs.sort(key=lambda j: j.id)
    total, page = _page(jobs, p)
    return list_response(call.command, "asyncjobs", total, [job_item(sim, j) for j in page])


def query_async_job_result(sim: Simulator, call: Call) -> dict[str, Any]:
    """queryAsyncJobResult of a known job."""
    p = process(sim, call)
    job = sim.state.jobs.get(p.get("jobid", 0))
    if job is None:
        raise ApiError(
            HTTP_PARAM_ERROR,
            f"Unable to execute API command {call.short} due to missing parameter jobid",
        )
    return {f"{call.short}response": job_item(sim, job)}


def list_host_ha_resources(sim: Simulator, call: Call) -> dict[str, Any]:
    """listHostHAResources: hosts with a Host-HA config; no paging."""
    p = process(sim, call)
    hosts = [
        h
        for h in sim.state.hosts.values()
        if h.ha_config and h.removed is None and h.type == "Routing"
    ]
    if "hostid" in p:
        hosts = [h for h in hosts if h.id == p["hostid"]]
    items = [{"hostid": h.uuid, **host_hostha(h)} for h in sorted(hosts, key=lambda h: h.id)]
    return list_response(call.command, "hostha", len(items), items)


def list_host_ha_providers(sim: Simulator, call: Call) -> dict[str, Any]:
    """listHostHAProviders: ``kvmhaprovider`` for KVM, ``simulatorhaprovider`` for Simulator."""
    p = process(sim, call)
    providers = {"kvm": "kvmhaprovider", "simulator": "simulatorhaprovider"}
    provider = providers.get(p["hypervisor"].lower())
    if provider is None:
        raise invalid(f"Unable to find a valid HA provider for hypervisor {p['hypervisor']}")
    return list_response(call.command, "haprovider", 1, [{"haprovider": provider}])


def list_capabilities(sim: Simulator, call: Call) -> dict[str, Any]:
    """listCapabilities: ``capability`` is an object; api limits only while throttling is on."""
    process(sim, call)
    capability: dict[str, Any] = {
        "securitygroupsenabled": False,
        "dynamicrolesenabled": True,
        "cloudstackversion": sim.profile.version,
        "userpublictemplateenabled": True,
        "supportELB": "false",
        "projectinviterequired": False,
        "allowusercreateprojects": True,
        "customdiskofferingminsize": 1,
        "customdiskofferingmaxsize": 1024,
        "regionsecondaryenabled": False,
        "kvmsnapshotenabled": False,
        "allowuserviewdestroyedvm": False,
        "allowuserexpungerecovervm": False,
        "allowuserexpungerecovervolume": False,
        "allowuserviewalldomainaccounts": False,
        "kubernetesserviceenabled": False,
        "kubernetesclusterexperimentalfeaturesenabled": False,
        "defaultuipagesize": MAX_PAGE_SIZE,
        "instancesstatsretentiontime": 720,
        "instancesstatsuseronly": False,
        "instancesdisksstatsretentionenabled": False,
        "instancesdisksstatsretentiontime": 720,
    }
    if any(f.kind == "throttle" for f in sim.faults.active):
        capability["apilimitinterval"] = 1
        capability["apilimitmax"] = 25
    return {f"{call.short}response": {"capability": capability}}


def list_apis(sim: Simulator, call: Call) -> dict[str, Any]:
    """listApis: only what the key's role allows, shaped like ``cloudstack-apis-4.18.json``."""
    p = process(sim, call)
    allowed = [name for name in sorted(APIS) if call.key.role is None or name in call.key.role]
    if "name" in p:
        if p["name"] not in allowed:
            raise ApiError(
                HTTP_INTERNAL_ERROR,
                "Api Discovery plugin was unable to find an api by that name or process any apis",
            )
        allowed = [p["name"]]
    items = [APIS[name] for name in allowed]
    return list_response(call.command, "api", len(items), items)


def list_zones(sim: Simulator, call: Call) -> dict[str, Any]:
    """listZones."""
    p = process(sim, call)
    zones = sorted(sim.state.zones.values(), key=lambda z: z.id)
    if "id" in p:
        zones = [z for z in zones if z.id == p["id"]]
    if "name" in p:
        zones = [z for z in zones if _ci(z.name, p["name"])]
    if "keyword" in p:
        zones = [z for z in zones if _like_any(p["keyword"], z.name)]
    if "networktype" in p and not _ci("Advanced", p["networktype"]):
        zones = []
    total, page = _page(zones, p)
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


def list_clusters(sim: Simulator, call: Call) -> dict[str, Any]:
    """listClusters."""
    p = process(sim, call)
    clusters = sorted(sim.state.clusters.values(), key=lambda c: c.id)
    for name, attr in (("id", "id"), ("zoneid", "zone_id"), ("podid", "pod_id")):
        if name in p:
            clusters = [c for c in clusters if getattr(c, attr) == p[name]]
    if "name" in p:
        clusters = [c for c in clusters if _ci(c.name, p["name"])]
    if "keyword" in p:
        clusters = [c for c in clusters if _like_any(p["keyword"], c.name)]
    total, page = _page(clusters, p)
    items = [
        {
            "id": c.uuid,
            "name": c.name,
            "podid": sim.state.pods[c.pod_id].uuid,
            "podname": sim.state.pods[c.pod_id].name,
            "zoneid": sim.state.zones[c.zone_id].uuid,
            "zonename": sim.state.zones[c.zone_id].name,
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


def list_configurations(sim: Simulator, call: Call) -> dict[str, Any]:
    """listConfigurations: ``name`` is a substring match (compare exactly client-side)."""
    p = process(sim, call)
    settings = sorted(sim.state.settings.values(), key=lambda s: s.name)
    if "name" in p:
        settings = [s for s in settings if _like_any(p["name"], s.name)]
    if "category" in p:
        settings = [s for s in settings if _ci(s.category, p["category"])]
    if "keyword" in p:
        settings = [s for s in settings if _like_any(p["keyword"], s.name)]
    total, page = _page(settings, p)
    items = [
        {
            "category": s.category,
            "name": s.name,
            "value": s.value,
            "defaultvalue": s.value,
            "description": s.description,
            "scope": s.scope.lower() if p.get("zoneid") or p.get("clusterid") else s.scope,
            "isdynamic": s.isdynamic,
            "component": s.component,
        }
        for s in page
    ]
    return list_response(call.command, "configuration", total, items)


#: Command -> (handler, takes the lock itself). The map is case-sensitive, like upstream's.
COMMANDS: dict[str, tuple[Callable[[Simulator, Call], dict[str, Any]], bool]] = {
    "listAlerts": (list_alerts, False),
    "archiveAlerts": (archive_alerts, True),
    "deleteAlerts": (delete_alerts, True),
    "listHosts": (list_hosts, False),
    "listVirtualMachines": (list_virtual_machines, False),
    "listEvents": (list_events, False),
    "listAsyncJobs": (list_async_jobs, False),
    "queryAsyncJobResult": (query_async_job_result, False),
    "listHostHAResources": (list_host_ha_resources, False),
    "listHostHAProviders": (list_host_ha_providers, False),
    "listCapabilities": (list_capabilities, False),
    "listApis": (list_apis, False),
    "listZones": (list_zones, False),
    "listClusters": (list_clusters, False),
    "listConfigurations": (list_configurations, False),
}


def dispatch(sim: Simulator, call: Call) -> dict[str, Any]:
    """Run ``call`` and return the JSON object to send."""
    handler, self_locking = COMMANDS[call.command]
    if self_locking:
        return handler(sim, call)
    with sim.lock:
        return handler(sim, call)
