"""Failure scenarios played on the virtual clock, with upstream's HA mechanics.

A host crash goes like ``AgentManagerImpl.handleDisconnectWithInvestigation`` and
``HighAvailabilityManagerImpl`` (cloudstack.md §6, §8): ping timeout, the host goes Up ->
Alert, each investigation that finds it Down sends "Host down, <id>" and calls
``scheduleRestartForVmsOnHost`` ("Host is down, …" + one ``op_ha_work`` row per VM), a Host-HA
fence calls it once more, HA workers restart the VMs elsewhere ("HA starting VM: …", see
``ha.py``).

On a release with the defect every overlapping call repeats the alert and the rows, and
duplicate rows taken in parallel restart a VM twice; with the fix (4.20.1+) the repeats are
skipped. Every step is seeded, so a seed and a scenario always give the same story.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from cloudstack_simulator.alerting import open_failure, send_alert
from cloudstack_simulator.context import Context
from cloudstack_simulator.detection import Phases, detected_at, ping_of
from cloudstack_simulator.ha import MS_ID, HaManager, destination
from cloudstack_simulator.refs import host_refs
from cloudstack_simulator.state import HaWork, Host, Vm, stamp
from cloudstack_simulator.steps import ScenarioRun, Steps
from cloudstack_simulator.truth import FailureTruth

SCENARIOS = ("host-crash", "disconnect-flap", "mass-failure", "maintenance")
#: Seconds after a mass failure within which its unrelated and second host failures come.
BUSY_WINDOW = 900.0
#: Seconds after a mass failure when its ``expunge`` VMs are expunged (HA work is over).
EXPUNGE_AFTER = 2400.0


class ScenarioEngine:
    """Starts scenarios; every run shares one HA manager and its worker pool."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.runs: list[ScenarioRun] = []
        self.steps = Steps(ctx)
        self.ha = HaManager(ctx, self.steps)

    def start(self, name: str, **options: Any) -> ScenarioRun:
        """Start scenario ``name`` now (see :data:`SCENARIOS`)."""
        starters: dict[str, Callable[..., None]] = {
            "host-crash": self._host_crash,
            "disconnect-flap": self._disconnect_flap,
            "mass-failure": self._mass_failure,
            "maintenance": self._maintenance,
        }
        if name not in starters:
            raise ValueError(f"unknown scenario {name!r}: choose one of {', '.join(SCENARIOS)}")
        with self.ctx.lock:
            run = ScenarioRun(len(self.runs) + 1, name, [], self.ctx.clock.time(), options=options)
            self.runs.append(run)
            starters[name](run, **options)
        return run

    def _rng(self, run: ScenarioRun) -> random.Random:
        return random.Random(f"{self.ctx.seed}:{run.id}:{run.name}")

    def _pick_host(self, ref: str | int | None) -> Host:
        st = self.ctx.state
        if ref is not None:
            host = st.host_by(ref)
            if host is None or host.type != "Routing":
                raise ValueError(f"no hypervisor host {ref!r} in the simulator")
            return host
        candidates = self._up_with_ha_vms()
        if not candidates:
            raise ValueError("no Up hypervisor host with HA-enabled VMs is left to fail")
        return candidates[0]

    def _open_failure(self, run: ScenarioRun, host: Host, kind: str) -> FailureTruth:
        failure = open_failure(self.ctx, host, kind, self.ctx.clock.time())
        run.failures.append(failure)
        run.hosts.append(host.name)
        return failure

    def _host_crash(
        self,
        run: ScenarioRun,
        host: str | int | None = None,
        *,
        delay: float = 0.0,
        detect_after: float | None = None,
        stagger: bool = False,
        investigations: int = 2,
        fence: bool | None = None,
        fence_after: float = 20.0,
        pickup_delay: float = 30.0,
        parallel_rate: float = 0.25,
        recover_after: float | None = 900.0,
    ) -> None:
        """A hypervisor's agent dies with HA-enabled VMs on it.

        ``detect_after``: seconds from the death to the ping timeout (default: the
        ``ping.timeout × ping.interval`` served, 150 s); ``stagger``: instead, when the ping
        monitor would notice this host (``detection.detected_at``: its last ping, the
        management server's clock and monitor).
        """
        target = self._pick_host(host)
        self._crash(
            run,
            target,
            delay=delay,
            detect_after=None if stagger else self._ping_timeout(detect_after),
            investigations=investigations,
            fence=fence,
            fence_after=fence_after,
            opts={"pickup_delay": pickup_delay, "parallel_rate": parallel_rate},
            recover_after=recover_after,
        )

    def _ping_timeout(self, detect_after: float | None) -> float:
        """``detect_after`` or the ping timeout the simulator serves (150 s by default)."""
        return float(ping_of(self.ctx.state).limit) if detect_after is None else detect_after

    def _detection(self, host: Host, died: float) -> float:
        """Seconds from ``host``'s death at ``died`` until the ping monitor notices it."""
        ping = ping_of(self.ctx.state)
        agent = random.Random(f"{self.ctx.seed}:agent:{host.id}").uniform(0.0, ping.interval)
        return detected_at(ping, Phases.of(self.ctx.seed, ping), died, agent) - died

    def _crash(
        self,
        run: ScenarioRun,
        host: Host,
        *,
        delay: float,
        detect_after: float | None,
        investigations: int,
        fence: bool | None,
        fence_after: float,
        opts: dict[str, Any],
        recover_after: float | None,
    ) -> None:
        """``host``'s agent dies after ``delay``; ``detect_after`` None: its own ping timeout."""
        failure = self._open_failure(run, host, "host-crash")
        rng = random.Random(f"{self.ctx.seed}:{run.id}:{run.name}:{host.id}")
        profile = self.ctx.profile
        t0 = self.ctx.clock.time() + delay
        t1 = t0 + (self._detection(host, t0) if detect_after is None else detect_after)
        failure.died = t0
        do_fence = (host.ha_config and host.ha_enabled) if fence is None else fence

        def agent_dies() -> None:
            host.last_ping = stamp(self.ctx.clock.time())
            host.agent_alive = False
            self.steps.set_ha_state(host, "Suspect")

        def ping_timeout() -> None:
            self.steps.set_host_status(host, "Alert")
            host.disconnected = self.ctx.clock.time()
            self.steps.set_ha_state(host, "Checking")

        def investigation_done() -> None:
            if profile.defect or host.status != "Down":
                href, _, _ = host_refs(self.ctx.state, host)
                subject, body = profile.host_down(href)
                send_alert(self.ctx, "ALERT.COMPUTE.HOST", host, subject, body, failure)
            self.steps.set_host_status(host, "Down")

        def reschedule() -> None:
            if host.status == "Down":
                self.ha.schedule_restart_for_vms_on_host(run, failure, host, rng, opts)

        def fenced() -> None:
            self.steps.set_ha_state(host, "Fencing")
            self.steps.set_ha_state(host, "Fenced")
            href, zref, _ = host_refs(self.ctx.state, host)
            subject, body = profile.ha_fencing(href, zref)
            send_alert(self.ctx, "ALERT.HA.ACTION", host, subject, body, failure)

        def recover() -> None:
            self.steps.set_host_status(host, "Connecting")
            host.last_ping = stamp(self.ctx.clock.time())
            host.agent_alive = True

        def up() -> None:
            self.steps.set_host_status(host, "Up")
            host.last_ping = stamp(self.ctx.clock.time())
            if host.ha_config and host.ha_enabled:
                host.ha_state = "Available"
            if profile.ha_reason:
                # 4.20.1+ cancels Investigating HostDown rows once the host is Up again.
                for work in self.ctx.state.ha_work:
                    if (
                        work.host_id == host.id
                        and work.step == "Investigating"
                        and work.reason == "HostDown"
                    ):
                        work.step, work.outcome = "Cancelled", "host is Up again"

        self.steps.at(run, t0, agent_dies, f"{host.name}-agent-dies")
        self.steps.at(run, t1, ping_timeout, f"{host.name}-ping-timeout")
        for i in range(max(1, investigations)):
            done = t1 + 4.0 + 3.0 * i + 0.1
            self.steps.at(run, done, investigation_done, f"{host.name}-investigation-{i + 1}")
            self.steps.at(run, done + 0.5, reschedule, f"{host.name}-round-{i + 1}")
        if do_fence:
            self.steps.at(run, t1 + fence_after, fenced, f"{host.name}-fenced")
            self.steps.at(run, t1 + fence_after + 1.0, reschedule, f"{host.name}-fence-round")
        if recover_after is not None:
            self.steps.at(run, t0 + recover_after, recover, f"{host.name}-reconnect")
            self.steps.at(run, t0 + recover_after + 5.0, up, f"{host.name}-up")

    def _disconnect_flap(
        self,
        run: ScenarioRun,
        host: str | int | None = None,
        *,
        flaps: int = 3,
        interval: float = 45.0,
        down_for: float = 15.0,
    ) -> None:
        """A host whose agent keeps dropping and reconnecting (no HA: it never goes Down)."""
        target = self._pick_host(host)
        failure = self._open_failure(run, target, "disconnect-flap")
        profile = self.ctx.profile
        t0 = self.ctx.clock.time()

        def disconnected() -> None:
            if target.status == "Up":
                href, zref, pod = host_refs(self.ctx.state, target)
                subject, body = profile.host_disconnected(href, zref, pod)
                send_alert(self.ctx, "ALERT.COMPUTE.HOST", target, subject, body, failure)
            self.steps.set_host_status(target, "Disconnected")
            target.disconnected = self.ctx.clock.time()

        def connecting() -> None:
            self.steps.set_host_status(target, "Connecting")

        def up() -> None:
            self.steps.set_host_status(target, "Up")
            target.last_ping = stamp(self.ctx.clock.time())

        for k in range(flaps):
            base = t0 + k * interval
            self.steps.at(run, base, disconnected, f"{target.name}-flap-{k + 1}-down")
            self.steps.at(
                run, base + down_for, connecting, f"{target.name}-flap-{k + 1}-connecting"
            )
            self.steps.at(run, base + down_for + 2.0, up, f"{target.name}-flap-{k + 1}-up")

    def _mass_failure(
        self,
        run: ScenarioRun,
        pod: str | None = None,
        *,
        hosts: list[str] | None = None,
        detect_after: float | None = None,
        stagger: bool = False,
        investigations: int = 2,
        fence: bool | None = None,
        fence_after: float = 20.0,
        pickup_delay: float = 30.0,
        parallel_rate: float = 0.25,
        capacity: int | None = None,
        recover_after: float | None = 1800.0,
        unrelated: int = 0,
        second_failures: int = 0,
        expunge: int = 0,
    ) -> None:
        """A rack (pod) of hosts fails at once; VMs restart on the surviving hosts.

        Opt-in, what makes a busy cloud hard to read (defaults: none of it): ``stagger``
        detects each host after its own ping timeout; ``unrelated`` other hosts die at random
        within :data:`BUSY_WINDOW` seconds, their rounds landing among the rack's restarts;
        ``second_failures`` hosts that HA restarted the rack's VMs on die afterwards, so those
        VMs are restarted again (genuine second restarts); ``expunge`` VMs that HA restarted
        are expunged :data:`EXPUNGE_AFTER` seconds after the rack died.
        """
        st = self.ctx.state
        if hosts:
            targets = [self._pick_host(h) for h in hosts]
        else:
            first = self._pick_host(None)
            pod_id = first.pod_id
            if pod is not None:
                found = next((p for p in st.pods.values() if pod in (p.name, p.uuid)), None)
                if found is None:
                    raise ValueError(f"no pod {pod!r} in the simulator")
                pod_id = found.id
            targets = [
                h
                for h in sorted(st.hosts.values(), key=lambda h: h.id)
                if h.pod_id == pod_id and h.type == "Routing" and h.status == "Up"
            ]
        if capacity is not None:
            failed = {h.id for h in targets}
            for h in st.hosts.values():
                if h.id not in failed:
                    h.capacity = capacity
        rng = self._rng(run)
        crash: dict[str, Any] = {
            "detect_after": None if stagger else self._ping_timeout(detect_after),
            "investigations": investigations,
            "fence": fence,
            "fence_after": fence_after,
            "opts": {"pickup_delay": pickup_delay, "parallel_rate": parallel_rate},
            "recover_after": recover_after,
        }
        for host in targets:
            self._crash(run, host, delay=rng.uniform(0.0, 5.0), **crash)
        failed = {h.id for h in targets}
        extra = random.Random(f"{self.ctx.seed}:{run.id}:busy")
        others = [h for h in self._up_with_ha_vms() if h.id not in failed]
        for host in extra.sample(others, min(unrelated, len(others))):
            failed.add(host.id)
            self._crash(run, host, delay=extra.uniform(0.0, BUSY_WINDOW), **crash)
        t0 = self.ctx.clock.time()
        for k in range(second_failures):
            when = t0 + extra.uniform(BUSY_WINDOW / 3, BUSY_WINDOW)
            go = self._second_failure(run, failed, crash, extra, tries=10)
            self.steps.at(run, when, go, f"second-failure-{k + 1}")
        if expunge:
            go = self._expunge(run, expunge, extra)
            self.steps.at(run, t0 + EXPUNGE_AFTER, go, "expunge-restarted-vms")

    def _up_with_ha_vms(self) -> list[Host]:
        """Up hypervisors with a live agent and HA-enabled VMs, by id."""
        st = self.ctx.state
        return [
            h
            for h in sorted(st.hosts.values(), key=lambda h: h.id)
            if h.type == "Routing"
            and h.status == "Up"
            and h.removed is None
            and h.agent_alive
            and any(vm.ha_enabled for vm in st.vms_on_host(h.id))
        ]

    def _restarted_by(self, run: ScenarioRun) -> list[Vm]:
        """VMs this run's HA restarted ("HA starting VM" sent), still Running, by id."""
        st = self.ctx.state
        ours = {f.id for f in run.failures}
        ids = {
            w.instance_id
            for w in st.ha_work
            if w.failure_id in ours and w.outcome.startswith("restarted")
        }
        return [st.vms[i] for i in sorted(ids) if st.vms[i].state == "Running"]

    def _second_failure(
        self,
        run: ScenarioRun,
        failed: set[int],
        crash: dict[str, Any],
        rng: random.Random,
        tries: int,
    ) -> Callable[[], None]:
        """A step: a host this run's HA restarted VMs on dies now (else retried a minute on)."""

        def go() -> None:
            st = self.ctx.state
            placed = {vm.host_id for vm in self._restarted_by(run)}
            candidates = [
                h
                for h in self._up_with_ha_vms()
                if h.id in placed
                and h.id not in failed
                and all(vm.state == "Running" for vm in st.vms_on_host(h.id))
            ]
            if not candidates:
                if tries > 0:
                    again = self._second_failure(run, failed, crash, rng, tries - 1)
                    self.steps.at(run, self.ctx.clock.time() + 60.0, again, "second-failure-retry")
                return
            host = rng.choice(candidates)
            failed.add(host.id)
            self._crash(run, host, delay=0.0, **crash)

        return go

    def _expunge(self, run: ScenarioRun, count: int, rng: random.Random) -> Callable[[], None]:
        """A step: expunge ``count`` VMs this run's HA restarted that have no HA work left."""

        def go() -> None:
            st = self.ctx.state
            busy = {
                w.instance_id for w in st.ha_work if w.step not in ("Done", "Cancelled", "Error")
            }
            idle = [vm for vm in self._restarted_by(run) if vm.id not in busy]
            for vm in rng.sample(idle, min(count, len(idle))):
                self.steps.vm_changed(vm, state="Expunging", host_id=None, last_host_id=vm.host_id)
                vm.removed = self.ctx.clock.time()
                self.ctx.truth.expunged_vms.append(vm.name)

        return go

    def _maintenance(
        self, run: ScenarioRun, host: str | int | None = None, *, duration: float = 600.0
    ) -> None:
        """Planned maintenance: VMs are live-migrated away; no alert, no HA row."""
        target = self._pick_host(host)
        run.hosts.append(target.name)
        st = self.ctx.state
        t0 = self.ctx.clock.time()
        clock = self.ctx.clock

        def prepare() -> None:
            target.resource_state = "PrepareForMaintenance"
            for i, vm in enumerate(st.vms_on_host(target.id)):
                work = st.add_ha_work(
                    vm,
                    "Migration",
                    host_id=target.id,
                    step="Scheduled",
                    at=clock.time(),
                    reason="HostMaintenance" if self.ctx.profile.ha_reason else None,
                )
                self.steps.at(run, t0 + 5.0 + 4.0 * i, _migrate(vm, work), f"migrate-{vm.name}")

        def _migrate(vm: Vm, work: HaWork) -> Callable[[], None]:
            def go() -> None:
                work.step = "Migrating"
                work.taken = clock.time()
                work.mgmt_server_id = MS_ID
                dest = destination(self.ctx.state, vm, target)
                if dest is None:
                    work.step, work.outcome = "Error", "no host to migrate to"
                    return
                self.steps.vm_changed(vm, host_id=dest.id, last_host_id=target.id)
                self.steps.event(
                    "VM.MIGRATE", f"Migrating VM {vm.name} for host maintenance", vm=vm
                )
                work.step, work.outcome = "Done", "migrated"

            return go

        def in_maintenance() -> None:
            if not st.vms_on_host(target.id):
                target.resource_state = "Maintenance"
            else:
                target.resource_state = "ErrorInPrepareForMaintenance"

        def cancel() -> None:
            target.resource_state = "Enabled"

        count = len(st.vms_on_host(target.id))
        self.steps.at(run, t0, prepare, f"{target.name}-prepare-maintenance")
        self.steps.at(run, t0 + 10.0 + 4.0 * count, in_maintenance, f"{target.name}-maintenance")
        self.steps.at(run, t0 + duration, cancel, f"{target.name}-cancel-maintenance")
