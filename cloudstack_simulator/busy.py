"""A busy cloud's seeded history: hosts failing all the time, racks at once, HA queued behind.

Opt-in (``Simulator.seed_history(failures_per_hour=…)``); without it ``seed.py`` seeds the
quiet history it always did. The history is a timeline over the simulator's listed
hypervisors, as long as its failures need (``failures_per_hour`` sets the pace, the alert count
the length), ending two hours before now:

- Host failures are a Poisson process over the whole cloud. A share of them take a whole pod
  down at once; each host is noticed after its own ping timeout (``detection.detected_at``),
  so a rack's "Host is down" rounds are staggered over minutes.
- Every restart goes through one pool of ``ha.workers`` HA workers (approximately in the order
  the rounds queued them): a rack's restarts drain for minutes while other hosts' rounds land
  in between. Parallel copies of a restart come up to ``parallel_spread`` seconds later.
- VMs move: HA restarts them on a random host that is up, and a share of failures strike a
  host HA placed VMs on in the last :data:`SECOND_WINDOW` seconds (after the placement), so
  those VMs are restarted again: genuine second restarts, never duplicates.
- A share of the restarted VMs are expunged after their last alert (absent from
  ``listVirtualMachines``); the others end on the host HA last put them on.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from dataclasses import dataclass, field

from cloudstack_simulator.alerting import open_failure
from cloudstack_simulator.context import Context
from cloudstack_simulator.detection import Phases, detected_at, ping_of
from cloudstack_simulator.seed import (
    HOUR,
    MIN_GAP,
    Budget,
    Builder,
    Emitted,
    Planned,
    SeedReport,
    Slot,
    add_suppressed,
    add_unknown,
    plan_copies,
    stochastic_round,
    write_incident,
)
from cloudstack_simulator.state import Host, Vm
from sidecar.model.constants import VM_ALERT_NAME_BY_KIND

#: A host HA placed VMs on within this many seconds before it fails makes second restarts.
SECOND_WINDOW = 600.0
#: Seconds a crashed host stays down (then it may take VMs again).
DOWN_FOR = (900.0, 3600.0)
#: Seconds from the first round until a worker picks up its rows (``time.to.sleep``).
PICKUP = (25.0, 35.0)
#: Seconds one HA worker spends to fence, stop and start a VM.
RESTART = (8.0, 14.0)


@dataclass(frozen=True, slots=True)
class BusyCloud:
    """What makes a seeded history a busy cloud's; ``failures_per_hour`` turns it on."""

    #: Failure events per hour over the whole cloud (a rack failing at once is one event).
    failures_per_hour: float
    #: Share of events that take a whole pod down at once.
    rack_share: float = 0.02
    #: Parallel copies of one restart ("HA starting VM") come 1 to this many seconds later.
    parallel_spread: float = 40.0
    #: Share of the VMs HA restarted that are expunged afterwards.
    expunged_share: float = 0.05
    #: Share of events that strike a host HA placed VMs on in the last SECOND_WINDOW seconds.
    second_failure_share: float = 0.05

    def __post_init__(self) -> None:
        if not self.failures_per_hour > 0:
            raise ValueError("failures_per_hour must be positive")
        if not 1.0 <= self.parallel_spread <= 300.0:
            raise ValueError("parallel_spread must be 1 to 300 seconds")
        for name in ("rack_share", "expunged_share", "second_failure_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.rack_share + self.second_failure_share > 1.0:
            raise ValueError("rack_share + second_failure_share must be at most 1")


@dataclass
class _Plan:
    """One failure on the timeline (seconds from its start)."""

    host: Host
    kind: str
    died: float | None
    events: list[Planned]
    #: The host's VMs when it died (what its "Host is down" lists).
    vms: list[Vm]


@dataclass
class _Cloud:
    """Where every VM runs, and which host may fail or take a VM, as the timeline advances."""

    hosts: list[Host]
    #: Host id -> {VM id: VM} of the VMs it runs now.
    vms_on: dict[int, dict[int, Vm]]
    rng: random.Random
    workers: list[float]
    #: VM id -> the host it runs on now.
    where: dict[int, int] = field(init=False)
    by_id: dict[int, Host] = field(init=False)
    failed_at: dict[int, float] = field(default_factory=dict)
    down: dict[int, tuple[float, float]] = field(default_factory=dict)
    placed_at: dict[int, float] = field(default_factory=dict)
    recent: list[tuple[float, int]] = field(default_factory=list)
    #: VM id -> (VM, time of its last alert) for every VM HA restarted.
    restarted: dict[int, tuple[Vm, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {h.id: h for h in self.hosts}
        self.where = {vm_id: host for host, vms in self.vms_on.items() for vm_id in vms}

    def can_fail(self, host: Host, t: float) -> bool:
        """Not failed within MIN_GAP (so up again) and no VM placed on it after ``t``."""
        return (
            t - self.failed_at.get(host.id, -math.inf) >= MIN_GAP
            and self.placed_at.get(host.id, -math.inf) <= t
        )

    def is_down(self, host: Host, t: float) -> bool:
        died, up = self.down.get(host.id, (math.inf, math.inf))
        return died <= t < up

    def fail(self, host: Host, t: float, crash: bool) -> None:
        self.failed_at[host.id] = t
        if crash:
            self.down[host.id] = (t, t + self.rng.uniform(*DOWN_FOR))

    def destination(self, failed: Host, t: float) -> Host | None:
        """A random host that is up at ``t`` (tries a few, as a busy cloud has plenty)."""
        for _ in range(30):
            host = self.rng.choice(self.hosts)
            if host.id != failed.id and not self.is_down(host, t):
                return host
        return None

    def move(self, vm: Vm, source: Host, target: Host, t: float) -> None:
        del self.vms_on[source.id][vm.id]
        self.vms_on[target.id][vm.id] = vm
        self.where[vm.id] = target.id
        self.placed_at[target.id] = max(self.placed_at.get(target.id, t), t)
        self.recent.append((t, target.id))

    def lately_placed(self, t: float) -> list[Host]:
        """Hosts that may fail at ``t`` and that HA put a VM on within SECOND_WINDOW."""
        self.recent = [(at, h) for at, h in self.recent if at >= t - SECOND_WINDOW]
        ids = sorted({h for at, h in self.recent if at <= t})
        return [self.by_id[i] for i in ids if self.can_fail(self.by_id[i], t)]


def seed_busy(
    ctx: Context,
    alerts: int,
    busy: BusyCloud,
    *,
    duplicate_ratio: float = 0.3,
    unknown_ratio: float = 0.02,
    suppressed_ratio: float = 0.05,
    archived_ratio: float = 0.01,
) -> SeedReport:
    """Add about ``alerts`` historical alerts of a busy cloud (see the module docstring)."""
    budget = Budget.split(alerts, duplicate_ratio, unknown_ratio, suppressed_ratio)
    started = time.perf_counter()
    with ctx.lock:
        st = ctx.state
        rng = random.Random(f"busy:{ctx.seed}:{len(st.alerts)}")
        hosts = sorted(
            (h for h in st.hosts.values() if h.type == "Routing" and h.removed is None),
            key=lambda h: h.id,
        )
        vms_on: dict[int, dict[int, Vm]] = {h.id: {} for h in hosts}
        for vm in sorted(st.vms.values(), key=lambda v: v.id):
            if vm.removed is None and vm.host_id in vms_on:
                vms_on[vm.host_id][vm.id] = vm
        workers = [0.0] * int(st.settings["ha.workers"].value)
        cloud = _Cloud(hosts, vms_on, rng, workers)
        plans = _timeline(ctx, cloud, busy, budget.canonicals)

        # The timeline starts at 0: shift it to end two hours before now.
        now = ctx.clock.time()
        end = now - 2 * HOUR
        last = max((e[0] for p in plans for e in p.events), default=0.0)
        shift = end - last - busy.parallel_spread - 120.0
        b = Builder(ctx, rng)
        for plan in plans:
            canon, dup_left = len(plan.events), budget.dup_left
            ratio = dup_left / max(1, budget.canon_left)
            want = stochastic_round(ratio * canon, rng) if dup_left else 0
            copies = plan_copies(plan.events, min(want, dup_left))
            budget.spend(canon, sum(copies))
            _write(b, plan, copies, shift, busy, rng, rng.random() < archived_ratio)
        span = end - shift
        add_suppressed(b, ctx.truth, budget.suppressed, shift, span, rng)
        slots = [Slot(h, list(cloud.vms_on[h.id].values())) for h in hosts]
        add_unknown(b, ctx.truth, slots, budget.unknown, shift, span, rng)
        expunged = _expunge(ctx, cloud, busy, shift, now, rng)
        _settle(cloud)
        return budget.report(
            b,
            len(plans),
            started,
            span_hours=span / HOUR,
            second_restarts=len(ctx.truth.second_restarts),
            expunged=expunged,
        )


def _timeline(ctx: Context, cloud: _Cloud, busy: BusyCloud, canon_budget: int) -> list[_Plan]:
    """Failures in time order until their canonical alerts reach ``canon_budget``."""
    ping = ping_of(ctx.state)
    phases = Phases.of(ctx.seed, ping)
    agents = {h.id: cloud.rng.uniform(0.0, ping.interval) for h in cloud.hosts}
    pods: dict[int, list[Host]] = {}
    for host in cloud.hosts:
        pods.setdefault(host.pod_id, []).append(host)
    rate = busy.failures_per_hour / HOUR
    rng = cloud.rng
    plans: list[_Plan] = []
    t, canon = 0.0, 0
    while canon < canon_budget:
        t += rng.expovariate(rate)
        hit = _struck(cloud, busy, pods, t)
        crashes = [h for h, kind in hit if kind == "crash"]
        for host, kind in hit:
            cloud.fail(host, t, kind == "crash")
        # What ran on each struck host when it died: a rack-mate that is up again before
        # the queue reaches a VM may take it later, but was empty of it at the death.
        dead = {h.id: list(cloud.vms_on[h.id].values()) for h in crashes}
        # Each host of a rack is noticed after its own ping timeout; queue in that order.
        noticed = {h.id: detected_at(ping, phases, t, agents[h.id]) for h in crashes}
        for host, kind in sorted(hit, key=lambda hk: noticed.get(hk[0].id, t)):
            if kind == "crash":
                start = noticed[host.id] + rng.uniform(1.0, 6.0)
                plan = _crash(cloud, host, t, start, dead[host.id])
            else:
                name = "disconnected" if kind == "flap" else "alert_state"
                event = (t, "ALERT.COMPUTE.HOST", name, None, 2 if kind == "flap" else 1)
                plan = _Plan(host, kind, None, [event], [])
            plans.append(plan)
            canon += len(plan.events)
    return plans


def _struck(
    cloud: _Cloud, busy: BusyCloud, pods: dict[int, list[Host]], t: float
) -> list[tuple[Host, str]]:
    """The hosts one failure event at ``t`` strikes, with how: crash, flap or alert-state."""
    rng = cloud.rng
    roll = rng.random()
    if roll < busy.rack_share:
        rack = [h for h in pods[rng.choice(sorted(pods))] if cloud.can_fail(h, t)]
        if rack:
            return [(h, "crash") for h in rack]
    elif roll < busy.rack_share + busy.second_failure_share:
        lately = cloud.lately_placed(t)
        if lately:
            return [(rng.choice(lately), "crash")]
    for _ in range(20):
        host = rng.choice(cloud.hosts)
        if cloud.can_fail(host, t):
            kind = rng.random()
            return [(host, "crash" if kind < 0.88 else "flap" if kind < 0.96 else "alert-state")]
    return []


def _crash(cloud: _Cloud, host: Host, died: float, start: float, ran: list[Vm]) -> _Plan:
    """A host dead at ``died`` running ``ran``, reported down at ``start``: HA restarts them."""
    rng = cloud.rng
    events: list[Planned] = [
        (start, "ALERT.COMPUTE.HOST", "host_down", None, 2),
        (start + 1.0, "ALERT.COMPUTE.HOST", "host_is_down", None, 3),
    ]
    if host.ha_config and rng.random() < 0.6:
        events.append((start + 20.0, "ALERT.HA.ACTION", "ha_fencing", None, 0))
    # scheduleRestartForVmsOnHost queues system VMs first.
    vms = sorted(ran, key=lambda v: (v.vm_type == "User", v.id))
    for vm in vms:
        if not vm.ha_enabled:
            continue
        ready = start + 1.0 + rng.uniform(*PICKUP)
        began = max(ready, heapq.heappop(cloud.workers))
        done = began + rng.uniform(*RESTART)
        heapq.heappush(cloud.workers, done)
        target = None if rng.random() < 0.03 else cloud.destination(host, done)
        if target is not None:
            cloud.move(vm, host, target, done)
        cloud.restarted[vm.id] = (vm, done)
        text = "ha_starting" if target is not None else "unable"
        events.append((done, VM_ALERT_NAME_BY_KIND[vm.vm_type], text, vm, 2))
    return _Plan(host, "crash", died, events, vms)


def _write(
    b: Builder,
    plan: _Plan,
    copies: list[int],
    shift: float,
    busy: BusyCloud,
    rng: random.Random,
    archived: bool,
) -> None:
    """Write one planned failure and its copies at absolute times."""
    first = plan.events[0][0] + shift
    failure = open_failure(b.ctx, plan.host, f"history-{plan.kind}", first)
    failure.died = None if plan.died is None else plan.died + shift
    spread = list(range(1, int(busy.parallel_spread) + 1))
    emitted: list[Emitted] = []
    for (at, name, text, vm, _cap), n in zip(plan.events, copies, strict=True):
        when = at + shift
        emitted.append((when, name, text, vm))
        gaps: list[float]
        if text == "ha_starting":
            # Parallel workers finish seconds apart, never in the same second.
            gaps = [float(g) for g in sorted(rng.sample(spread, min(n, len(spread))))]
        elif text == "disconnected":
            gaps = [45.0 * (c + 1) for c in range(n)]
        else:
            gaps = [3.0 * (c + 1) + rng.uniform(0.0, 1.5) for c in range(n)]
        emitted.extend((when + gap, name, text, vm) for gap in gaps)
    b.place(plan.host, plan.vms)
    write_incident(b, b.ctx.truth, failure, plan.host, emitted, archived)


def _expunge(
    ctx: Context, cloud: _Cloud, busy: BusyCloud, shift: float, now: float, rng: random.Random
) -> int:
    """Expunge a share of the restarted VMs, each after its last alert; returns how many."""
    restarted = [cloud.restarted[i] for i in sorted(cloud.restarted)]
    chosen = rng.sample(restarted, round(len(restarted) * busy.expunged_share))
    for vm, last in sorted(chosen, key=lambda c: c[0].id):
        after = last + shift + busy.parallel_spread + 60.0
        del cloud.vms_on[cloud.where.pop(vm.id)][vm.id]
        vm.last_host_id = vm.host_id
        vm.host_id = None
        vm.state = "Expunging"
        vm.removed = rng.uniform(after, max(after, now - 60.0))
        ctx.truth.expunged_vms.append(vm.name)
    return len(chosen)


def _settle(cloud: _Cloud) -> None:
    """Every VM ends on the host HA last put it on."""
    for host_id, vms in cloud.vms_on.items():
        for vm in vms.values():
            if vm.host_id != host_id:
                vm.last_host_id = vm.host_id
                vm.host_id = host_id
