"""The simulated cloud's inventory: accounts, a zone of pods and clusters, hosts, VMs, settings."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from cloudstack_simulator.state import (
    Account,
    AsyncJob,
    Cluster,
    Host,
    Pod,
    Setting,
    State,
    Vm,
    Zone,
    stamp,
)

_VM_ROLES = ("web", "app", "db", "cache", "api", "mq", "batch", "ci")
TENANTS = ("acme", "globex", "initech")
_SYSTEM_VM_PREFIX = {"DomainRouter": "r", "ConsoleProxy": "v", "SecondaryStorageVm": "s"}

#: Settings ``listConfigurations`` shows (HA-relevant ones, upstream defaults).
_SETTINGS = (
    ("ha.workers", "5", "Advanced", "Number of ha worker threads."),
    ("time.between.failures", "3600", "Advanced", "Time in seconds between VM restarts."),
    (
        "time.between.cleanup",
        "86400",
        "Advanced",
        "Time in seconds to wait before taking over a VM in transition state.",
    ),
    (
        "vm.ha.migration.max.retries",
        "5",
        "Advanced",
        "Total number of attempts for trying migration of a VM.",
    ),
    (
        "restart.retry.interval",
        "600",
        "Advanced",
        "Time in seconds between retries to restart a vm",
    ),
    ("alert.wait", "1800", "Alert", "Seconds to wait before alerting on a disconnected agent"),
    (
        "ping.interval",
        "60",
        "Advanced",
        "Interval to send application level pings to make sure the connection is still working",
    ),
    (
        "ping.timeout",
        "2.5",
        "Advanced",
        "Multiplier to ping.interval before announcing an agent has timed out",
    ),
    (
        "alert.purge.delay",
        "0",
        "Advanced",
        "Alerts older than specified number days will be purged. Set this value to 0 to never "
        "delete alerts",
    ),
    ("api.throttling.enabled", "false", "Advanced", "Enable/disable Api rate limit"),
    ("default.page.size", "500", "Advanced", "Default page size for API list* commands"),
)


@dataclass(frozen=True, slots=True)
class Layout:
    """How big the simulated cloud is and how it is set up."""

    hosts: int = 8
    vms_per_host: int = 6
    hosts_per_pod: int = 4
    non_ha_per_host: int = 1
    host_ha: bool = True
    system_vms: bool = True
    zone_name: str = "zone-a"


def build(state: State, now: float, layout: Layout) -> None:
    """Fill an empty ``state`` with the inventory of ``layout``, created over the past 400 days."""
    born = now - 400 * 86400
    state.domain_uuid = state.new_uuid()
    state.ms_uuid = state.new_uuid()
    for name in ("system", "admin", *TENANTS):
        account_id = state.next_id("account")
        state.accounts[name] = Account(
            account_id,
            state.new_uuid(),
            name,
            state.new_uuid(),
            name if name != "system" else "system",
        )
    zone = Zone(state.next_id("data_center"), state.new_uuid(), layout.zone_name)
    state.zones[zone.id] = zone
    per_pod = max(1, layout.hosts_per_pod)
    vms_per_host = layout.vms_per_host
    for index in range(layout.hosts):
        if index % per_pod == 0:
            pod = Pod(
                state.next_id("host_pod_ref"),
                state.new_uuid(),
                f"pod-{index // per_pod + 1}",
                zone.id,
            )
            state.pods[pod.id] = pod
            cluster = Cluster(
                state.next_id("cluster"),
                state.new_uuid(),
                f"cluster-{index // per_pod + 1}",
                pod.id,
                zone.id,
            )
            state.clusters[cluster.id] = cluster
        host = Host(
            id=state.next_id("host"),
            uuid=state.new_uuid(),
            name=f"kvm-{index + 1:02d}",
            zone_id=zone.id,
            pod_id=pod.id,
            cluster_id=cluster.id,
            ip=f"10.1.{index // per_pod + 1}.{index % per_pod + 11}",
            created=born + index * 3600,
            last_ping=stamp(now),
            ha_config=layout.host_ha,
            ha_enabled=layout.host_ha,
            ha_state="Available" if layout.host_ha else "Disabled",
            capacity=max(32, vms_per_host * 4),
        )
        state.hosts[host.id] = host
    routing = list(state.hosts.values())
    counter = itertools.count(1)
    for host in routing:
        for j in range(vms_per_host):
            n = next(counter)
            account = "admin" if n % 5 == 0 else TENANTS[n % len(TENANTS)]
            ha = j < vms_per_host - layout.non_ha_per_host
            name = f"{_VM_ROLES[(n - 1) % len(_VM_ROLES)]}-{n:03d}"
            add_vm(state, host, name, "User", account, ha, born + n * 600)
    if layout.system_vms:
        first, second = routing[0], routing[min(1, len(routing) - 1)]
        add_vm(state, first, "", "SecondaryStorageVm", "system", True, born)
        add_vm(state, second, "", "ConsoleProxy", "system", True, born)
        for i, tenant in enumerate(TENANTS):
            host = routing[(i + 2) % len(routing)]
            add_vm(state, host, "", "DomainRouter", tenant, True, born + 60 * i)
    for name, value, category, description in _SETTINGS:
        state.settings[name] = Setting(name, value, category, description)
    for host in routing[:2]:
        job = AsyncJob(
            id=state.next_id("async_job"),
            uuid=state.new_uuid(),
            cmd="org.apache.cloudstack.api.command.admin.ha.EnableHAForHostCmd",
            account="admin",
            created=now - 30 * 86400,
            completed=now - 30 * 86400 + 2,
            result={"hostha": {"hostid": host.uuid, "haenable": True, "status": True}},
            instance_type="Host",
            instance_uuid=host.uuid,
        )
        state.jobs[job.id] = job


def add_vm(
    state: State, host: Host, name: str, kind: str, account: str, ha: bool, created: float
) -> Vm:
    """A running VM of ``kind`` on ``host``; a system VM is named by its instance name."""
    vm_id = state.next_id("vm_instance")
    account_id = state.accounts[account].id
    if kind == "User":
        instance = f"i-{account_id}-{vm_id}-VM"
    else:
        instance = f"{_SYSTEM_VM_PREFIX[kind]}-{vm_id}-VM"
        name = instance
    vm = Vm(
        id=vm_id,
        uuid=state.new_uuid(),
        name=name,
        display_name=name,
        instance_name=instance,
        vm_type=kind,
        state="Running",
        host_id=host.id,
        last_host_id=host.id,
        ha_enabled=ha,
        zone_id=host.zone_id,
        pod_id=host.pod_id,
        account=account,
        created=created,
        last_updated=created,
    )
    state.vms[vm.id] = vm
    if kind in ("ConsoleProxy", "SecondaryStorageVm"):
        # A system VM's agent shows in listHosts as a host of its own type.
        sys_host = Host(
            id=state.next_id("host"),
            uuid=state.new_uuid(),
            name=instance,
            zone_id=host.zone_id,
            pod_id=host.pod_id,
            cluster_id=0,
            ip=f"10.1.250.{vm_id % 250}",
            created=created,
            last_ping=host.last_ping,
            type="SecondaryStorageVM" if kind == "SecondaryStorageVm" else "ConsoleProxy",
            hypervisor="",
            ha_config=False,
            ha_enabled=False,
            ha_state="Disabled",
        )
        state.hosts[sys_host.id] = sys_host
    return vm


def add_removed_host(state: State, name: str, vms: int, removed: float) -> Host:
    """A decommissioned hypervisor (not listed) with expunged VMs, for seeded history."""
    template = next(h for h in state.hosts.values() if h.type == "Routing")
    host_id = state.next_id("host")
    host = Host(
        id=host_id,
        uuid=state.new_uuid(),
        name=name,
        zone_id=template.zone_id,
        pod_id=template.pod_id,
        cluster_id=template.cluster_id,
        ip=f"10.1.200.{host_id % 250}",
        created=removed - 500 * 86400,
        last_ping=stamp(removed),
        status="Removed",
        removed=removed,
    )
    state.hosts[host.id] = host
    for j in range(vms):
        account = TENANTS[j % len(TENANTS)]
        vm = add_vm(state, host, f"old-{host.id}-{j + 1}", "User", account, True, host.created)
        vm.removed = removed
        vm.state = "Expunging"
        vm.host_id = None
        vm.last_host_id = host.id
    return host
