"""Seeded alert history: months of host, VM, router, system-VM, HA-action and capacity alerts.

Most history is HA-family incidents (a host failure and its alerts, within two minutes) with
defect-shaped duplicate bursts; ``duplicate_ratio`` is the fraction of HA-family alerts that
are duplicate copies. Separate incidents of one host are more than an hour apart. A few
incidents were archived long ago, capacity alerts obey CloudStack's own suppression (one live
row per type and place), and some alerts have subjects of no known format.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any

from cloudstack_simulator.alerting import open_failure
from cloudstack_simulator.context import Context
from cloudstack_simulator.inventory import add_removed_host
from cloudstack_simulator.refs import host_refs, vm_ref
from cloudstack_simulator.state import Host, State, Vm
from cloudstack_simulator.truth import FailureTruth, Truth
from sidecar.model.constants import ALERT_TYPES, VM_ALERT_NAME_BY_KIND

#: Smallest gap between two incidents of one host (the reconciler's window is 10 minutes).
MIN_GAP = 3900.0
HOUR = 3600.0


@dataclass
class SeedReport:
    """What ``seed_history`` built."""

    alerts: int
    live: int
    archived: int
    incidents: int
    duplicates: int
    canonicals: int
    unknown: int
    suppressed: int
    duplicate_ratio: float
    seconds: float
    #: Decommissioned hosts added to hold the history's incidents.
    historic_hosts: int = 0
    #: Hours the history spans (0: the ``months`` asked for).
    span_hours: float = 0.0
    #: Genuine second restarts and expunged VMs (a busy cloud's history only).
    second_restarts: int = 0
    expunged: int = 0


#: An alert to write: (time, alert name, text kind, VM or None, copies it may have).
Planned = tuple[float, str, str, Vm | None, int]
#: An alert written: (time, alert name, text kind, VM or None).
Emitted = tuple[float, str, str, Vm | None]


@dataclass
class Slot:
    host: Host
    vms: list[Vm]


_IN_CLUSTER = " in cluster {cluster} pod {pod} of availability zone {zone}"
_CAPACITY = (
    ("ALERT.MEMORY", "System Alert: Low Available Memory" + _IN_CLUSTER),
    ("ALERT.CPU", "System Alert: Low Unallocated CPU" + _IN_CLUSTER),
    ("ALERT.STORAGE", "System Alert: Low Available Storage" + _IN_CLUSTER),
    ("ALERT.STORAGE.ALLOCATED", "System Alert: Remaining unallocated Storage is low" + _IN_CLUSTER),
    (
        "ALERT.NETWORK.PRIVATEIP",
        "System Alert: Number of unallocated private IPs is low in pod {pod} of availability "
        "zone {zone}",
    ),
    (
        "ALERT.NETWORK.PUBLICIP",
        "System Alert: Number of unallocated virtual network public IPs is low in availability "
        "zone {zone}",
    ),
    (
        "ALERT.STORAGE.SECONDARY",
        "System Alert: Low Available Secondary Storage in availability zone {zone}",
    ),
    ("ALERT.TYPE.SYNC", "VM state sync alert"),
)

_UNKNOWN = (
    ("ALERT.MANAGEMENT", "Management server node 10.1.1.{n} is up"),
    ("ALERT.STORAGE.MISC", "Failed to back up snapshot of volume ROOT-{n} to secondary storage"),
    ("ALERT.UPLOAD.FAILED", "Upload of template rocky9-build-{n} failed"),
    ("ALERT.CA.CERT", "Certificate expiring soon for {host}"),
    ("ALERT.COMPUTE.HOST", "Host {host} has been reconnected after an unexpected agent restart"),
    ("ALERT.USERVM", "Failed to start VM {vm} on the requested host"),
    ("ALERT.SERVICE.DOMAINROUTER", "Health checks failed: 2 failing checks on router {router}"),
)


class Builder:
    """Collects rows and truth for one ``seed_history`` call."""

    def __init__(self, ctx: Context, rng: random.Random) -> None:
        self.ctx = ctx
        self.rng = rng
        self.rows: list[tuple[int, str, str, str | None, int, int, str, bool]] = []
        self.texts: dict[tuple[object, ...], tuple[str, str]] = {}
        self.profile = ctx.profile
        self.slot_vms: dict[int, list[Vm]] = {}

    def uuid(self) -> str:
        return self.ctx.state.new_uuid()

    def add(
        self,
        when: float,
        name: str,
        text: tuple[str, str],
        where: Host | Vm,
        archived: bool = False,
    ) -> str:
        uuid = self.uuid()
        self.rows.append(
            (int(when), name, text[0], text[1], where.zone_id, where.pod_id, uuid, archived)
        )
        return uuid

    def text(self, kind: str, host: Host, vm: Vm | None = None) -> tuple[str, str]:
        """Subject and body, formatted once per (kind, host, vm) and shared afterwards."""
        key = (kind, host.id, vm.id if vm else 0)
        cached = self.texts.get(key)
        if cached is not None:
            return cached
        href, zref, pod = host_refs(self.ctx.state, host)
        p = self.profile
        vref = vm_ref(vm) if vm else None
        if kind == "host_down":
            out = p.host_down(href)
        elif kind == "host_is_down":
            names = [v.name for v in self._vms_of(host) if v.ha_enabled]
            out = p.host_is_down(href, zref, pod, names)
        elif kind == "ha_fencing":
            out = p.ha_fencing(href, zref)
        elif kind == "disconnected":
            out = p.host_disconnected(href, zref, pod)
        elif kind == "alert_state":
            out = p.host_alert_state(href, zref, pod)
        elif kind == "ha_starting":
            assert vref is not None
            out = p.ha_starting(vref)
        elif kind == "unable":
            assert vref is not None
            out = p.unable_to_restart(vref, href, zref, pod)
        else:
            raise ValueError(kind)
        self.texts[key] = out
        return out

    def _vms_of(self, host: Host) -> list[Vm]:
        return self.slot_vms.get(host.id, [])

    def flush(self) -> int:
        """Store the rows in the alert table in time order; returns how many are archived."""
        table = self.ctx.state.alerts
        self.rows.sort(key=lambda r: r[0])
        for when, name, subject, body, zone, pod, uuid, archived in self.rows:
            table.append_raw(
                uuid, ALERT_TYPES[name], name, subject, body, zone, pod, 0, when, when, archived
            )
        table.rebuild()
        return sum(1 for r in self.rows if r[7])

    def place(self, host: Host, vms: list[Vm]) -> None:
        """``host`` runs ``vms`` from now on (its next "Host is down" lists them)."""
        self.slot_vms[host.id] = vms
        self.texts.pop(("host_is_down", host.id, 0), None)


@dataclass
class Budget:
    """How ``alerts`` split into kinds, and the HA-family alerts still to write."""

    suppressed: int
    unknown: int
    canonicals: int
    duplicates: int
    canon_left: int
    dup_left: int

    @classmethod
    def split(
        cls, alerts: int, duplicate_ratio: float, unknown_ratio: float, suppressed_ratio: float
    ) -> Budget:
        """The split of ``alerts``; checks the request."""
        if alerts < 0 or not 0.0 <= duplicate_ratio < 1.0:
            raise ValueError("alerts must be >= 0 and duplicate_ratio in [0, 1)")
        suppressed = round(alerts * suppressed_ratio)
        unknown = round(alerts * unknown_ratio)
        n_ha = max(0, alerts - suppressed - unknown)
        duplicates = round(n_ha * duplicate_ratio)
        canonicals = n_ha - duplicates
        return cls(suppressed, unknown, canonicals, duplicates, canonicals, duplicates)

    def spend(self, canonicals: int, duplicates: int) -> None:
        """Count alerts written."""
        self.canon_left -= canonicals
        self.dup_left -= duplicates

    def report(self, b: Builder, incidents: int, started: float, **extra: Any) -> SeedReport:
        """Store ``b``'s rows and say what was built (``extra``: more SeedReport fields)."""
        archived = b.flush()
        duplicates = self.duplicates - self.dup_left
        ha_rows = self.canonicals - self.canon_left + duplicates
        return SeedReport(
            alerts=len(b.rows),
            live=len(b.rows) - archived,
            archived=archived,
            incidents=incidents,
            duplicates=duplicates,
            canonicals=self.canonicals - self.canon_left,
            unknown=self.unknown,
            suppressed=self.suppressed,
            duplicate_ratio=duplicates / ha_rows if ha_rows else 0.0,
            seconds=time.perf_counter() - started,
            **extra,
        )


def _slots(st: State, needed: int, vms_per_host: int, removed_at: float) -> tuple[list[Slot], int]:
    """Every listed hypervisor with its VMs, plus decommissioned ones until there are ``needed``."""
    slots = []
    for host in sorted(st.hosts.values(), key=lambda h: h.id):
        if host.type != "Routing" or host.removed is not None:
            continue
        vms = sorted(
            (v for v in st.vms.values() if v.host_id == host.id and v.removed is None),
            key=lambda v: (v.vm_type == "User", v.id),
        )
        slots.append(Slot(host, vms))
    added = 0
    while len(slots) < needed:
        added += 1
        host = add_removed_host(st, f"kvm-old-{added:03d}", max(1, vms_per_host), removed_at)
        vms = sorted((v for v in st.vms.values() if v.last_host_id == host.id), key=lambda v: v.id)
        slots.append(Slot(host, vms))
    return slots, added


def stochastic_round(value: float, rng: random.Random) -> int:
    """Stochastic rounding (keeps the expected total exact)."""
    base = math.floor(value)
    return base + (1 if rng.random() < value - base else 0)


def seed_history(
    ctx: Context,
    alerts: int,
    *,
    vms_per_host: int,
    duplicate_ratio: float = 0.3,
    months: int = 6,
    unknown_ratio: float = 0.02,
    suppressed_ratio: float = 0.05,
    archived_ratio: float = 0.01,
) -> SeedReport:
    """Add about ``alerts`` historical alerts; ``vms_per_host`` sizes decommissioned hosts."""
    budget = Budget.split(alerts, duplicate_ratio, unknown_ratio, suppressed_ratio)
    started = time.perf_counter()
    with ctx.lock:
        rng = random.Random(f"history:{ctx.seed}:{len(ctx.state.alerts)}")
        builder = Builder(ctx, rng)
        truth = ctx.truth
        now = ctx.clock.time()
        end = now - 2 * HOUR
        begin = now - months * 30 * 86400.0
        span = max(end - begin, 4 * MIN_GAP)

        vms_per_host = max(1, vms_per_host)
        avg_canon = 2.6 + vms_per_host
        incidents_wanted = int(budget.canonicals / avg_canon * 1.3) + 2
        per_slot_cap = max(1, int(span / (MIN_GAP * 2.0)))
        needed = math.ceil(incidents_wanted / per_slot_cap)
        slots, historic = _slots(ctx.state, needed, vms_per_host, end)
        for slot in slots:
            builder.slot_vms[slot.host.id] = slot.vms

        # Incident start times: per host, sorted uniform points spaced at least MIN_GAP apart.
        starts: list[tuple[float, int]] = []
        per_slot = math.ceil(incidents_wanted / len(slots))
        room = span - per_slot * MIN_GAP - 300.0
        if room <= 0:
            per_slot = max(1, int((span - 300.0) / MIN_GAP))
            room = span - per_slot * MIN_GAP - 300.0
        for index in range(len(slots)):
            points = sorted(rng.uniform(0.0, room) for _ in range(per_slot))
            starts.extend((begin + p + i * MIN_GAP, index) for i, p in enumerate(points))
        starts.sort()

        incidents = 0
        for start, index in starts:
            if budget.canon_left <= 0:
                break
            slot = slots[index]
            incidents += 1
            used_c, used_d = _incident(
                builder, truth, slot, start, budget.canon_left, budget.dup_left, rng, archived_ratio
            )
            budget.spend(used_c, used_d)

        add_suppressed(builder, truth, budget.suppressed, begin, span, rng)
        add_unknown(builder, truth, slots, budget.unknown, begin, span, rng)
        return budget.report(builder, incidents, started, historic_hosts=historic)


def _incident(
    b: Builder,
    truth: Truth,
    slot: Slot,
    start: float,
    canon_left: int,
    dup_left: int,
    rng: random.Random,
    archived_ratio: float,
) -> tuple[int, int]:
    """One host incident; returns (canonical alerts, duplicate alerts) written."""
    host = slot.host
    roll = rng.random()
    kind = "crash" if roll < 0.88 else ("flap" if roll < 0.96 else "alert-state")
    events: list[Planned] = []
    if kind == "crash":
        events.append((start, "ALERT.COMPUTE.HOST", "host_down", None, 2))
        events.append((start + 1.0, "ALERT.COMPUTE.HOST", "host_is_down", None, 3))
        if host.ha_config and rng.random() < 0.6:
            events.append((start + 20.0, "ALERT.HA.ACTION", "ha_fencing", None, 0))
        offset = 30.0
        for member in slot.vms:
            if not member.ha_enabled:
                continue
            offset += rng.uniform(2.0, 6.0)
            which = "unable" if rng.random() < 0.03 else "ha_starting"
            events.append((start + offset, VM_ALERT_NAME_BY_KIND[member.vm_type], which, member, 2))
    elif kind == "flap":
        events.append((start, "ALERT.COMPUTE.HOST", "disconnected", None, 2))
    else:
        events.append((start, "ALERT.COMPUTE.HOST", "alert_state", None, 1))
    canon = min(len(events), canon_left)
    events = events[:canon]
    want = stochastic_round(dup_left / max(1, canon_left) * canon, rng) if dup_left > 0 else 0
    copies = plan_copies(events, min(want, dup_left))
    archived = rng.random() < archived_ratio
    failure = open_failure(b.ctx, host, f"history-{kind}", start)
    emitted: list[Emitted] = []
    for i, (at, alert_name, kind_of_text, subject_vm, _cap) in enumerate(events):
        emitted.append((at, alert_name, kind_of_text, subject_vm))
        for c in range(copies[i]):
            gap = (
                (3.0 * (c + 1) + rng.uniform(0.0, 1.5))
                if kind_of_text != "disconnected"
                else 45.0 * (c + 1)
            )
            emitted.append((at + gap, alert_name, kind_of_text, subject_vm))
    write_incident(b, truth, failure, host, emitted, archived)
    return canon, sum(copies)


def plan_copies(events: list[Planned], want: int) -> list[int]:
    """Copies per event (at most its capacity) until ``want`` are placed."""
    copies = [0] * len(events)
    capacity = [e[4] for e in events]
    # Fill copies round-robin, "Host is down" rounds first (the main duplicate source).
    order = sorted(range(len(events)), key=lambda i: (events[i][2] != "host_is_down", i))
    while want > 0 and any(copies[i] < capacity[i] for i in order):
        for i in order:
            if want == 0:
                break
            if copies[i] < capacity[i]:
                copies[i] += 1
                want -= 1
    return copies


def write_incident(
    b: Builder,
    truth: Truth,
    failure: FailureTruth,
    host: Host,
    emitted: list[Emitted],
    archived: bool,
) -> None:
    """Write one failure's alerts (in time order) and file them in the truth."""
    emitted.sort(key=lambda e: e[0])
    written: list[str] = []
    for when, name, text_kind, vm in emitted:
        text = b.text(text_kind, host, vm)
        uuid = b.add(when, name, text, vm or host, archived)
        truth.record(failure, uuid, text[0], int(when))
        if text_kind == "ha_starting" and vm is not None:
            truth.note_restart(failure, vm.name, uuid, int(when))
        written.append(uuid)
    failure.close()
    if archived:
        failure.archived = True
        truth.forget(set(written))


def add_suppressed(
    b: Builder, truth: Truth, count: int, begin: float, span: float, rng: random.Random
) -> None:
    """Capacity / sync alerts: one live row per type and place, older ones archived."""
    st = b.ctx.state
    if count <= 0:
        return
    places: list[tuple[str, str, Host]] = []
    zone = next(iter(st.zones.values()))
    for name, template in _CAPACITY:
        for cluster in st.clusters.values():
            pod = st.pods[cluster.pod_id]
            host = next(
                (h for h in st.hosts.values() if h.cluster_id == cluster.id and h.removed is None),
                None,
            )
            if host is None:
                continue
            subject = template.format(cluster=cluster.name, pod=pod.name, zone=zone.name)
            places.append((name, subject, host))
            if "{cluster}" not in template:
                break
    by_place: dict[int, list[float]] = {}
    for _ in range(count):
        by_place.setdefault(rng.randrange(len(places)), []).append(begin + rng.uniform(0, span))
    for index, times in by_place.items():
        name, subject, host = places[index]
        times.sort()
        for n, when in enumerate(times):
            live = n == len(times) - 1 and rng.random() < 0.7
            uuid = b.add(when, name, (subject, subject), host, archived=not live)
            truth.suppressed_ids.add(uuid)
            if not live:
                truth.archived_ids.add(uuid)


def add_unknown(
    b: Builder,
    truth: Truth,
    slots: list[Slot],
    count: int,
    begin: float,
    span: float,
    rng: random.Random,
) -> None:
    """Alerts with subjects of no known format; some come in bursts of identical copies."""
    st = b.ctx.state
    routers: list[Vm | None] = [v for v in st.vms.values() if v.vm_type == "DomainRouter"]
    routers = routers or [None]
    made = 0
    while made < count:
        slot = rng.choice(slots)
        name, template = rng.choice(_UNKNOWN)
        vm = rng.choice(slot.vms) if slot.vms else None
        router = rng.choice(routers)
        subject = template.format(
            n=rng.randrange(2, 250),
            host=slot.host.name,
            vm=vm.name if vm else "vm-1",
            router=router.name if router else "r-4-VM",
        )
        when = begin + rng.uniform(0, span)
        burst = min(count - made, rng.choice((1, 1, 1, 2, 3)))
        for k in range(burst):
            uuid = b.add(when + 20.0 * k, name, (subject, subject), slot.host)
            truth.unknown_ids.add(uuid)
        made += burst
