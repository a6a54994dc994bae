"""The API commands: each takes the simulator's :class:`Context` and one authenticated call.

One module per group of commands (``alerts``, ``inventory``, ``activity``, ``meta``) on top of
``params`` (upstream's parameter processing and paging) and ``items`` (rendering); this module
maps command names to them and runs one under the lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cloudstack_simulator.api.activity import list_async_jobs, list_events, query_async_job_result
from cloudstack_simulator.api.alerts import archive_alerts, delete_alerts, list_alerts
from cloudstack_simulator.api.inventory import (
    list_clusters,
    list_host_ha_providers,
    list_host_ha_resources,
    list_hosts,
    list_virtual_machines,
    list_zones,
)
from cloudstack_simulator.api.meta import list_apis, list_capabilities, list_configurations
from cloudstack_simulator.api.request import ApiError, Call
from cloudstack_simulator.context import Context

__all__ = ["COMMANDS", "ApiError", "Call", "dispatch"]

#: Command -> (handler, takes the lock itself). The map is case-sensitive, like upstream's.
COMMANDS: dict[str, tuple[Callable[[Context, Call], dict[str, Any]], bool]] = {
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


def dispatch(ctx: Context, call: Call) -> dict[str, Any]:
    """Run ``call`` and return the JSON object to send."""
    handler, self_locking = COMMANDS[call.command]
    if self_locking:
        return handler(ctx, call)
    with ctx.lock:
        return handler(ctx, call)
