"""CloudStack-shaped state: inventory rows, ``op_ha_work``, events, jobs, keys and alerts."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from cloudstack_simulator.alert_table import AlertTable
from sidecar.model.constants import ALERT_TYPES, SUPPRESSED_NAMES


def uuid4_from(bits: int) -> str:
    """A version-4 UUID made of 128 bits (version and variant bits set)."""
    n = (bits & ~(0xF000 << 64)) | (0x4000 << 64)
    n = (n & ~(0xC000 << 48)) | (0x8000 << 48)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def derived_uuid(*parts: object) -> str:
    """A version-4 UUID that is a function of ``parts`` (it draws nothing from the seeded
    generator, so the uuids that generator hands out stay what they were)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return uuid4_from(int.from_bytes(digest[:16], "big"))


def stamp(at: float) -> int:
    """Epoch milliseconds >> 10: how ``host.last_ping`` and ``op_ha_work.time_to_try`` keep time."""
    return int(at * 1000) >> 10


@dataclass(slots=True)
class Zone:
    id: int
    uuid: str
    name: str


@dataclass(slots=True)
class Pod:
    id: int
    uuid: str
    name: str
    zone_id: int


@dataclass(slots=True)
class Cluster:
    id: int
    uuid: str
    name: str
    pod_id: int
    zone_id: int


@dataclass(slots=True)
class Host:
    """A ``host`` row plus its Host-HA config (``ha_config`` False = no HA config row)."""

    id: int
    uuid: str
    name: str
    zone_id: int
    pod_id: int
    cluster_id: int
    ip: str
    created: float
    last_ping: int
    status: str = "Up"
    resource_state: str = "Enabled"
    type: str = "Routing"
    hypervisor: str = "KVM"
    disconnected: float | None = None
    removed: float | None = None
    update_count: int = 0
    ha_config: bool = True
    ha_enabled: bool = True
    ha_state: str = "Available"
    capacity: int = 32
    #: Simulator only: False from the agent's death until it reconnects. The management
    #: server still shows the host Up until the ping timeout, but a VM started there fails.
    agent_alive: bool = True


@dataclass(slots=True)
class Vm:
    """A ``vm_instance`` row (``name`` is what alert texts print)."""

    id: int
    uuid: str
    name: str
    display_name: str
    instance_name: str
    vm_type: str
    state: str
    host_id: int | None
    last_host_id: int | None
    ha_enabled: bool
    zone_id: int
    pod_id: int
    account: str
    created: float
    last_updated: float
    update_count: int = 0
    removed: float | None = None


@dataclass(slots=True)
class HaWork:
    """An ``op_ha_work`` row (upstream columns) plus two simulator-only notes."""

    id: int
    instance_id: int
    type: str
    vm_type: str
    state: str
    host_id: int
    created: float
    step: str
    time_to_try: int
    updated: int
    tried: int = 0
    mgmt_server_id: int | None = None
    taken: float | None = None
    reason: str | None = None
    #: Simulator only: the failure this row belongs to, and how the worker ended it.
    failure_id: int = 0
    outcome: str = ""

    def as_row(self) -> dict[str, object]:
        """The row with upstream's column names (plus ``failure_id``/``outcome``)."""
        return {
            "id": self.id,
            "instance_id": self.instance_id,
            "type": self.type,
            "vm_type": self.vm_type,
            "state": self.state,
            "mgmt_server_id": self.mgmt_server_id,
            "host_id": self.host_id,
            "created": self.created,
            "tried": self.tried,
            "taken": self.taken,
            "step": self.step,
            "time_to_try": self.time_to_try,
            "updated": self.updated,
            "reason": self.reason,
            "failure_id": self.failure_id,
            "outcome": self.outcome,
        }


@dataclass(slots=True)
class Event:
    id: int
    uuid: str
    type: str
    level: str
    description: str
    account: str
    created: float
    state: str = "Completed"
    resource_id: str | None = None
    resource_type: str | None = None
    resource_name: str | None = None
    parent_id: str | None = None
    username: str = "system"
    #: ``archiveEvents`` (or the UI) archived it: listEvents shows it only with archived=true.
    archived: bool = False


@dataclass(slots=True)
class AsyncJob:
    id: int
    uuid: str
    cmd: str
    account: str
    created: float
    status: int = 1
    result_code: int = 0
    result_type: str = "object"
    result: dict[str, object] | None = None
    completed: float | None = None
    instance_type: str | None = None
    instance_uuid: str | None = None


@dataclass(slots=True)
class Account:
    id: int
    uuid: str
    name: str
    user_uuid: str
    username: str


@dataclass(slots=True)
class ApiKey:
    """A user's API key pair and the role (set of allowed APIs; None = every API)."""

    key: str
    secret: str
    account: str
    role: frozenset[str] | None = None
    enabled: bool = True


@dataclass(slots=True)
class Setting:
    name: str
    value: str
    category: str
    description: str
    scope: str = "Global"
    isdynamic: bool = True
    component: str = "management-server"


@dataclass
class State:
    """Everything the API serves; guarded by the simulator's lock."""

    uuid_rng: random.Random
    zones: dict[int, Zone] = field(default_factory=dict)
    pods: dict[int, Pod] = field(default_factory=dict)
    clusters: dict[int, Cluster] = field(default_factory=dict)
    hosts: dict[int, Host] = field(default_factory=dict)
    vms: dict[int, Vm] = field(default_factory=dict)
    ha_work: list[HaWork] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    jobs: dict[int, AsyncJob] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)
    keys: dict[str, ApiKey] = field(default_factory=dict)
    settings: dict[str, Setting] = field(default_factory=dict)
    alerts: AlertTable = field(default_factory=AlertTable)
    domain_uuid: str = ""
    ms_uuid: str = ""
    _next: dict[str, int] = field(default_factory=dict)

    def new_uuid(self) -> str:
        """A random (seeded) version-4 UUID."""
        return uuid4_from(self.uuid_rng.getrandbits(128))

    def next_id(self, table: str) -> int:
        """The next auto-increment id of ``table``."""
        value = self._next.get(table, 0) + 1
        self._next[table] = value
        return value

    # -- lookups ----------------------------------------------------------------------------

    def host_by(self, ref: str | int) -> Host | None:
        """A host by db id, uuid or name."""
        if isinstance(ref, int):
            return self.hosts.get(ref)
        for host in self.hosts.values():
            if ref in (host.uuid, host.name):
                return host
        return None

    def find_uuid(self, kind: str, text: str) -> int | None:
        """``findByUuidIncludingRemoved`` for the entity kinds the API takes as parameters."""
        wanted = text.lower()
        table: dict[int, object]
        if kind == "alert":
            return self.alerts.find_uuid(text)
        if kind == "event":
            return next((e.id for e in self.events if e.uuid == wanted), None)
        table = {
            "zone": self.zones,
            "pod": self.pods,
            "cluster": self.clusters,
            "host": self.hosts,
            "vm": self.vms,
            "job": self.jobs,
        }.get(kind, {})  # type: ignore[assignment]
        for row_id, obj in table.items():
            if getattr(obj, "uuid", None) == wanted:
                return row_id
        if kind == "domain" and wanted == self.domain_uuid:
            return 1
        if kind == "account":
            for account in self.accounts.values():
                if account.uuid == wanted:
                    return account.id
        return None

    def vms_on_host(self, host_id: int) -> list[Vm]:
        """``VMInstanceDao.listByHostId``: VMs whose ``host_id`` is this host, by id."""
        return [vm for vm in self.vms.values() if vm.host_id == host_id and vm.removed is None]

    def add_ha_work(
        self,
        vm: Vm,
        type_: str,
        *,
        host_id: int,
        step: str,
        at: float,
        tried: int = 0,
        reason: str | None = None,
        failure_id: int = 0,
    ) -> HaWork:
        """A new ``op_ha_work`` row for ``vm``, created at ``at`` and due at once."""
        row = HaWork(
            id=self.next_id("op_ha_work"),
            instance_id=vm.id,
            type=type_,
            vm_type=vm.vm_type,
            state=vm.state,
            host_id=host_id,
            created=at,
            step=step,
            time_to_try=stamp(at),
            updated=vm.update_count,
            tried=tried,
            reason=reason,
            failure_id=failure_id,
        )
        self.ha_work.append(row)
        return row

    def add_ha_restart(
        self, vm: Vm, *, step: str, at: float, reason: str | None, failure_id: int
    ) -> HaWork:
        """``scheduleRestart``'s row: host = VM's host (else last host, else 0), tries carried."""
        previous = [w for w in self.ha_work if w.instance_id == vm.id and w.type == "HA"]
        return self.add_ha_work(
            vm,
            "HA",
            host_id=vm.host_id if vm.host_id is not None else (vm.last_host_id or 0),
            step=step,
            at=at,
            tried=previous[-1].tried if previous and previous[-1].step != "Done" else 0,
            reason=reason,
            failure_id=failure_id,
        )

    def pending_ha(self, instance_id: int, host_id: int) -> list[HaWork]:
        """HA rows of a VM on a host not yet Done/Cancelled/Error (the fix's query)."""
        return [
            w
            for w in self.ha_work
            if w.instance_id == instance_id
            and w.host_id == host_id
            and w.type == "HA"
            and w.step not in ("Done", "Cancelled", "Error")
        ]

    # -- the alert manager -------------------------------------------------------------------

    def send_alert(
        self,
        name: str,
        *,
        zone_id: int,
        pod_id: int,
        cluster_id: int = 0,
        subject: str,
        body: str | None,
        at: float,
    ) -> int | None:
        """``AlertManagerImpl.sendAlert``: store the alert unless its type is suppressed and a
        live row of the same type number exists in that zone (pod/cluster); returns the row."""
        type_ = ALERT_TYPES[name]
        if name in SUPPRESSED_NAMES and self.alerts.live_suppressor(
            type_, zone_id, pod_id, cluster_id
        ):
            return None
        when = int(at)
        return self.alerts.insert(
            uuid=self.new_uuid(),
            type_=type_,
            name=name,
            subject=subject,
            content=body,
            zone=zone_id,
            pod=pod_id,
            cluster=cluster_id,
            created=when,
            last_sent=when,
        )
