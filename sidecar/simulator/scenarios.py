"""Failure scenarios played on the virtual clock, with upstream's HA mechanics.

A host crash goes like ``AgentManagerImpl.handleDisconnectWithInvestigation`` and
``HighAvailabilityManagerImpl`` (cloudstack.md §6, §8): ping timeout, the host goes Up ->
Alert, each investigation that finds it Down sends "Host down, <id>" and calls
``scheduleRestartForVmsOnHost`` ("Host is down, …" + one ``op_ha_work`` row per VM), a Host-HA
fence calls it once more, HA workers restart the VMs elsewhere ("HA starting VM: …").

On a release with the defect every overlapping call repeats the alert and the rows, and
duplicate rows taken in parallel restart a VM twice; with the fix (4.20.1+) the repeats are
skipped. Every step is seeded, so a seed and a scenario always give the same story.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sidecar.constants import VM_ALERT_NAME_BY_KIND
from sidecar.simulator.profiles import HostRef, VmRef, ZoneRef
from sidecar.simulator.state import Event, HaWork, Host, Vm
from sidecar.simulator.truth import FailureTruth

if TYPE_CHECKING:
    from sidecar.simulator.core import Simulator

SCENARIOS = ("host-crash", "disconnect-flap", "mass-failure", "maintenance")

#: ``ha.workers`` default: HA rows are processed by this many threads.
HA_WORKERS = 5
#: ``vm.ha.migration.max.retries``.
MAX_RETRIES = 5
#: ``restart.retry.interval`` (seconds).
RESTART_RETRY_INTERVAL = 600.0
#: Management server id (``mshost.msid``) shown in ``op_ha_work.mgmt_server_id``.
MS_ID = 345051497536

_EVENT_BY_KIND = {
    "User": ("VM.START", "Restarting VM for HA", "Successfully completed restarting VM for HA"),
    "DomainRouter": ("ROUTER.START", "restarting router VM for HA", "router VM restarted for HA"),
    "ConsoleProxy": (
        "PROXY.START",
        "restarting console proxy VM for HA",
        "console proxy VM restarted for HA",
    ),
    "SecondaryStorageVm": (
        "SSVM.START",
        "restarting secondary storage VM for HA",
        "secondary storage VM restarted for HA",
    ),
}


@dataclass
class ScenarioRun:
    """A started scenario: its hosts, failures and whether every step has run."""

    id: int
    name: str
    hosts: list[str]
    started: float
    failures: list[FailureTruth] = field(default_factory=list)
    pending: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """True once every scheduled step ran."""
        return self.pending == 0

    @property
    def host(self) -> str:
        """The (first) host of the scenario."""
        return self.hosts[0] if self.hosts else ""

    def __str__(self) -> str:
        return ", ".join(self.hosts)


@dataclass
class _Restart:
    """The first HA row of a VM in one failure and when its worker runs it."""

    row: HaWork
    start: float
    duration: float
    last_alert: float = 0.0
    next_changed: float = 0.0

    @property
    def finish(self) -> float:
        return self.start + self.duration


class ScenarioEngine:
    """Starts scenarios and owns the shared HA worker pool."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.runs: list[ScenarioRun] = []
        self._workers = [0.0] * HA_WORKERS
        self._restarts: dict[tuple[int, int], _Restart] = {}

    # -- helpers --------------------------------------------------------------------------

    @property
    def _state(self) -> Any:
        return self.sim.state

    def _rng(self, run: ScenarioRun) -> random.Random:
        return random.Random(f"{self.sim.seed}:{run.id}:{run.name}")

    def _at(self, run: ScenarioRun, when: float, fn: Callable[[], None], label: str) -> None:
        run.pending += 1

        def step() -> None:
            try:
                fn()
            finally:
                run.pending -= 1

        self.sim.clock.schedule(when, step, label)

    def refs(self, host: Host) -> tuple[HostRef, ZoneRef, str]:
        """Alert-text views of a host, its zone and its pod name."""
        st = self._state
        zone = st.zones[host.zone_id]
        pod = st.pods.get(host.pod_id)
        return (
            HostRef(host.id, host.uuid, host.name, host.type),
            ZoneRef(zone.id, zone.uuid, zone.name),
            pod.name if pod else "",
        )

    def emit(
        self,
        failure: FailureTruth | None,
        name: str,
        host_or_vm: Host | Vm,
        subject: str,
        body: str,
    ) -> str | None:
        """Send an alert through the alert manager and record it in the truth."""
        st = self._state
        pod_id = host_or_vm.pod_id
        row = st.send_alert(
            name,
            zone_id=host_or_vm.zone_id,
            pod_id=pod_id,
            subject=subject,
            body=body,
            at=self.sim.clock.time(),
        )
        if row is None:
            return None
        uuid = st.alerts.uuid[row - 1]
        if failure is not None:
            self.sim.truth.record(failure, uuid, subject, int(self.sim.clock.time()))
        else:
            self.sim.truth.other_ids.add(uuid)
        return uuid

    def event(
        self,
        type_: str,
        description: str,
        *,
        state: str = "Completed",
        vm: Vm | None = None,
        host: Host | None = None,
        level: str = "INFO",
    ) -> None:
        """Append a system-account event."""
        st = self._state
        resource = vm or host
        st.events.append(
            Event(
                id=st.next_id("event"),
                uuid=st.new_uuid(),
                type=type_,
                level=level,
                description=description,
                account="system",
                created=self.sim.clock.time(),
                state=state,
                resource_id=resource.uuid if resource else None,
                resource_type=("VirtualMachine" if vm else "Host") if resource else None,
                resource_name=resource.name if resource else None,
            )
        )

    def set_host_status(self, host: Host, status: str) -> None:
        if host.status != status:
            host.status = status
            host.update_count += 1

    def set_ha_state(self, host: Host, hastate: str) -> None:
        if host.ha_config and host.ha_enabled and host.ha_state != hastate:
            old = host.ha_state
            host.ha_state = hastate
            if hastate in ("Recovering", "Fencing", "Fenced"):
                self.event(
                    "HA.STATE.TRANSITION",
                    f"Transitioned host HA state from:{old} to:{hastate} due to event:"
                    f"{'Fenced' if hastate == 'Fenced' else 'Fencing'} for the host id:{host.id}",
                    host=host,
                )

    def _vm_changed(self, vm: Vm, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(vm, name, value)
        vm.update_count += 1
        vm.last_updated = self.sim.clock.time()

    # -- the HA manager ------------------------------------------------------------------------

    def schedule_restart_for_vms_on_host(
        self,
        run: ScenarioRun,
        failure: FailureTruth,
        host: Host,
        rng: random.Random,
        opts: dict[str, Any],
    ) -> int:
        """``HighAvailabilityManagerImpl.scheduleRestartForVmsOnHost``; returns rows created."""
        st = self._state
        profile = self.sim.profile
        vms = st.vms_on_host(host.id)
        ordered: list[Vm] = []
        for vm in vms:
            if vm.vm_type == "User":
                ordered.append(vm)
            else:
                ordered.insert(0, vm)  # reorderedVMList.add(0, vm): system VMs first
        if profile.defect:
            chosen = ordered
        else:
            # The fix (#10624): skip a VM with pending HA work on this host.
            chosen = [vm for vm in ordered if not st.pending_ha(vm.id, host.id)]
            if vms and not chosen:
                return 0  # "suspected to be a duplicate of a recent alert": no alert
        names = [vm.name for vm in vms if vm.ha_enabled and vm in chosen] if vms else None
        href, zref, pod = self.refs(host)
        subject, body = profile.host_is_down(href, zref, pod, names)
        self.emit(failure, "ALERT.COMPUTE.HOST", host, subject, body)
        failure.rounds += 1
        created = 0
        for vm in chosen:
            if vm.host_id is not None and vm.host_id != host.id:
                continue  # "VM is not on down host … VM HA is done"
            self._schedule_restart(run, failure, vm, host, rng, opts)
            created += 1
        return created

    def _schedule_restart(
        self,
        run: ScenarioRun,
        failure: FailureTruth,
        vm: Vm,
        host: Host,
        rng: random.Random,
        opts: dict[str, Any],
    ) -> None:
        """``scheduleRestart(vm, investigate=true)``: one Investigating row, then a worker."""
        st = self._state
        now = self.sim.clock.time()
        previous = [w for w in st.ha_work if w.instance_id == vm.id and w.type == "HA"]
        row = HaWork(
            id=st.next_id("op_ha_work"),
            instance_id=vm.id,
            type="HA",
            vm_type=vm.vm_type,
            state=vm.state,
            host_id=vm.host_id if vm.host_id is not None else (vm.last_host_id or 0),
            created=now,
            step="Investigating",
            time_to_try=int(now * 1000) >> 10,
            updated=vm.update_count,
            tried=previous[-1].tried if previous and previous[-1].step != "Done" else 0,
            reason="HostDown" if self.sim.profile.ha_reason else None,
            failure_id=failure.id,
        )
        st.ha_work.append(row)
        failure.ha_work_ids.append(row.id)
        key = (failure.id, vm.id)
        first = self._restarts.get(key)
        if first is None:
            earliest = now + float(opts["pickup_delay"])
            slot = min(range(HA_WORKERS), key=lambda i: self._workers[i])
            start = max(earliest, self._workers[slot])
            duration = rng.uniform(8.0, 14.0)
            self._workers[slot] = start + duration
            plan = _Restart(row, start, duration)
            self._restarts[key] = plan
            self._plan_primary(run, failure, vm, host, plan, rng)
        elif vm.ha_enabled and rng.random() < float(opts["parallel_rate"]):
            self._plan_parallel(run, failure, vm, row, first, rng)
        else:
            first.next_changed = max(first.next_changed, first.finish) + rng.uniform(1.0, 4.0)
            when = first.next_changed

            def changed() -> None:
                row.taken = when
                row.mgmt_server_id = MS_ID
                row.step = "Done"
                row.outcome = "VM has been changed"

            self._at(run, when, changed, f"ha-row-{row.id}-changed")

    def _target(self, vm: Vm, failed: Host) -> Host | None:
        """A host to restart on: Up, Enabled, Routing, same zone, least loaded (then id)."""
        st = self._state
        load: dict[int, int] = {}
        for other in st.vms.values():
            if other.host_id is not None and other.removed is None:
                load[other.host_id] = load.get(other.host_id, 0) + 1
        candidates = [
            h
            for h in st.hosts.values()
            if h.type == "Routing"
            and h.status == "Up"
            and h.resource_state == "Enabled"
            and h.removed is None
            and h.id != failed.id
            and h.zone_id == vm.zone_id
            and load.get(h.id, 0) < h.capacity
        ]
        if not candidates:
            return None
        return min(candidates, key=lambda h: (load.get(h.id, 0), h.id))

    def _plan_primary(
        self,
        run: ScenarioRun,
        failure: FailureTruth,
        vm: Vm,
        host: Host,
        plan: _Restart,
        rng: random.Random,
    ) -> None:
        row = plan.row
        start, duration = plan.start, plan.duration
        clock = self.sim.clock

        def take() -> None:
            row.taken = clock.time()
            row.mgmt_server_id = MS_ID

        def fence_and_stop() -> None:
            if vm.host_id != row.host_id:
                row.step, row.outcome = "Done", "VM is now no longer on host"
                return
            # Investigators cannot reach the VM: fence it off, then advanceStop(force).
            self._vm_changed(vm, state="Stopped", host_id=None, last_host_id=host.id)
            row.step = "Scheduled"
            if not vm.ha_enabled:
                row.step, row.outcome = "Done", "VM is not HA enabled so we're done."

        def restart() -> None:
            if row.step != "Scheduled" or vm.state not in ("Stopped", "Starting", "Running"):
                return
            if vm.state == "Stopped":
                target = self._target(vm, host)
                if target is None:
                    self._unable_to_restart(run, failure, vm, host, row)
                    return
                row.step = "Restarting"
                self._vm_changed(vm, state="Starting", host_id=target.id)
                self._ha_event(vm, "Started")
            self._at(run, clock.time() + duration * 0.4, finish, f"ha-row-{row.id}-done")

        def finish() -> None:
            if vm.state == "Starting":
                self._vm_changed(vm, state="Running")
            row.step, row.outcome = "Done", "restarted"
            self._ha_started(failure, vm)
            plan.last_alert = max(plan.last_alert, clock.time())
            self._ha_event(vm, "Completed")

        self._at(run, start, take, f"ha-row-{row.id}-taken")
        self._at(run, start + duration * 0.3, fence_and_stop, f"ha-row-{row.id}-fence")
        self._at(run, start + duration * 0.6, restart, f"ha-row-{row.id}-restart")

    def _unable_to_restart(
        self, run: ScenarioRun, failure: FailureTruth, vm: Vm, host: Host, row: HaWork
    ) -> None:
        href, zref, pod = self.refs(host)
        vref = VmRef(vm.id, vm.uuid, vm.name, vm.instance_name)
        subject, body = self.sim.profile.unable_to_restart(vref, href, zref, pod)
        self.emit(failure, VM_ALERT_NAME_BY_KIND[vm.vm_type], vm, subject, body)
        row.tried += 1
        if row.tried >= MAX_RETRIES:
            row.step, row.outcome = "Error", "gave up after max retries"
            return
        row.time_to_try = int((self.sim.clock.time() + RESTART_RETRY_INTERVAL) * 1000) >> 10
        row.updated = vm.update_count
        row.state = vm.state

        def retry() -> None:
            target = self._target(vm, host)
            if target is None:
                self._unable_to_restart(run, failure, vm, host, row)
                return
            row.step = "Restarting"
            self._vm_changed(vm, state="Starting", host_id=target.id)
            self._ha_event(vm, "Started")

            def done() -> None:
                self._vm_changed(vm, state="Running")
                row.step, row.outcome = "Done", "restarted"
                self._ha_started(failure, vm)
                self._ha_event(vm, "Completed")

            self._at(run, self.sim.clock.time() + 5.0, done, f"ha-row-{row.id}-retry-done")

        # A worker picks the row up again after restart.retry.interval, within its 60 s sleep.
        pickup = random.Random(f"{self.sim.seed}:retry:{row.id}:{row.tried}").uniform(1.0, 60.0)
        when = self.sim.clock.time() + RESTART_RETRY_INTERVAL + pickup
        self._at(run, when, retry, f"ha-row-{row.id}-retry")

    def _plan_parallel(
        self,
        run: ScenarioRun,
        failure: FailureTruth,
        vm: Vm,
        row: HaWork,
        first: _Restart,
        rng: random.Random,
    ) -> None:
        """A duplicate row taken by a second worker while the first still runs: the VM is
        restarted twice and "HA starting VM" is sent twice (seconds apart)."""
        clock = self.sim.clock
        start = first.start + rng.uniform(0.5, first.duration * 0.25)
        end = max(start + first.duration, first.finish + 1.5, first.last_alert + 1.5)
        first.last_alert = end

        def take() -> None:
            row.taken = clock.time()
            row.mgmt_server_id = MS_ID
            row.step = "Scheduled"

        def restart() -> None:
            row.step = "Restarting"

        def finish() -> None:
            row.step = "Done"
            if vm.state in ("Running", "Starting"):
                self._vm_changed(vm, state="Running")
                row.outcome = "restarted (parallel duplicate)"
                self._ha_started(failure, vm)
            else:
                row.outcome = "VM has been changed"

        self._at(run, start, take, f"ha-row-{row.id}-taken")
        self._at(run, start + (end - start) * 0.6, restart, f"ha-row-{row.id}-restart")
        self._at(run, end, finish, f"ha-row-{row.id}-done")

    def _ha_started(self, failure: FailureTruth, vm: Vm) -> None:
        vref = VmRef(vm.id, vm.uuid, vm.name, vm.instance_name)
        subject, body = self.sim.profile.ha_starting(vref)
        self.emit(failure, VM_ALERT_NAME_BY_KIND[vm.vm_type], vm, subject, body)
        failure.add_restart(vm.name)

    def _ha_event(self, vm: Vm, state: str) -> None:
        if not self.sim.profile.ha_events:
            return
        type_, started, completed = _EVENT_BY_KIND[vm.vm_type]
        self.event(type_, started if state == "Started" else completed, state=state, vm=vm)

    # -- scenarios -------------------------------------------------------------------------

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
        with self.sim.lock:
            run = ScenarioRun(len(self.runs) + 1, name, [], self.sim.clock.time(), options=options)
            self.runs.append(run)
            starters[name](run, **options)
        return run

    def _pick_host(self, ref: str | int | None) -> Host:
        st = self._state
        if ref is not None:
            host = st.host_by(ref)
            if host is None or host.type != "Routing":
                raise ValueError(f"no hypervisor host {ref!r} in the simulator")
            return host
        for host in sorted(st.hosts.values(), key=lambda h: h.id):
            if (
                host.type == "Routing"
                and host.status == "Up"
                and host.removed is None
                and any(vm.ha_enabled for vm in st.vms_on_host(host.id))
            ):
                return host
        raise ValueError("no Up hypervisor host with HA-enabled VMs is left to fail")

    def _open_failure(self, run: ScenarioRun, host: Host, kind: str) -> FailureTruth:
        failure = self.sim.truth.new_failure(
            kind=kind,
            host=host.name,
            host_id=host.uuid,
            host_db_id=host.id,
            zone=self._state.zones[host.zone_id].name,
            started=self.sim.clock.time(),
            profile=self.sim.profile.name,
        )
        run.failures.append(failure)
        run.hosts.append(host.name)
        return failure

    def _host_crash(
        self,
        run: ScenarioRun,
        host: str | int | None = None,
        *,
        delay: float = 0.0,
        detect_after: float = 150.0,
        investigations: int = 2,
        fence: bool | None = None,
        fence_after: float = 20.0,
        pickup_delay: float = 30.0,
        parallel_rate: float = 0.25,
        recover_after: float | None = 900.0,
    ) -> None:
        """A hypervisor's agent dies with HA-enabled VMs on it."""
        target = self._pick_host(host)
        self._crash(
            run,
            target,
            delay=delay,
            detect_after=detect_after,
            investigations=investigations,
            fence=fence,
            fence_after=fence_after,
            opts={"pickup_delay": pickup_delay, "parallel_rate": parallel_rate},
            recover_after=recover_after,
        )

    def _crash(
        self,
        run: ScenarioRun,
        host: Host,
        *,
        delay: float,
        detect_after: float,
        investigations: int,
        fence: bool | None,
        fence_after: float,
        opts: dict[str, Any],
        recover_after: float | None,
    ) -> None:
        failure = self._open_failure(run, host, "host-crash")
        rng = random.Random(f"{self.sim.seed}:{run.id}:{run.name}:{host.id}")
        profile = self.sim.profile
        t0 = self.sim.clock.time() + delay
        t1 = t0 + detect_after
        do_fence = (host.ha_config and host.ha_enabled) if fence is None else fence

        def agent_dies() -> None:
            host.last_ping = int(self.sim.clock.time() * 1000) >> 10
            self.set_ha_state(host, "Suspect")

        def ping_timeout() -> None:
            self.set_host_status(host, "Alert")
            host.disconnected = self.sim.clock.time()
            self.set_ha_state(host, "Checking")

        def investigation_done() -> None:
            if profile.defect or host.status != "Down":
                href, _, _ = self.refs(host)
                subject, body = profile.host_down(href)
                self.emit(failure, "ALERT.COMPUTE.HOST", host, subject, body)
            self.set_host_status(host, "Down")

        def reschedule() -> None:
            if host.status == "Down":
                self.schedule_restart_for_vms_on_host(run, failure, host, rng, opts)

        def fenced() -> None:
            self.set_ha_state(host, "Fencing")
            self.set_ha_state(host, "Fenced")
            href, zref, _ = self.refs(host)
            subject, body = profile.ha_fencing(href, zref)
            self.emit(failure, "ALERT.HA.ACTION", host, subject, body)

        def recover() -> None:
            self.set_host_status(host, "Connecting")
            host.last_ping = int(self.sim.clock.time() * 1000) >> 10

        def up() -> None:
            self.set_host_status(host, "Up")
            host.last_ping = int(self.sim.clock.time() * 1000) >> 10
            if host.ha_config and host.ha_enabled:
                host.ha_state = "Available"
            if profile.ha_reason:
                # 4.20.1+ cancels Investigating HostDown rows once the host is Up again.
                for work in self._state.ha_work:
                    if (
                        work.host_id == host.id
                        and work.step == "Investigating"
                        and work.reason == "HostDown"
                    ):
                        work.step, work.outcome = "Cancelled", "host is Up again"

        self._at(run, t0, agent_dies, f"{host.name}-agent-dies")
        self._at(run, t1, ping_timeout, f"{host.name}-ping-timeout")
        for i in range(max(1, investigations)):
            done = t1 + 4.0 + 3.0 * i + 0.1
            self._at(run, done, investigation_done, f"{host.name}-investigation-{i + 1}")
            self._at(run, done + 0.5, reschedule, f"{host.name}-round-{i + 1}")
        if do_fence:
            self._at(run, t1 + fence_after, fenced, f"{host.name}-fenced")
            self._at(run, t1 + fence_after + 1.0, reschedule, f"{host.name}-fence-round")
        if recover_after is not None:
            self._at(run, t0 + recover_after, recover, f"{host.name}-reconnect")
            self._at(run, t0 + recover_after + 5.0, up, f"{host.name}-up")

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
        profile = self.sim.profile
        t0 = self.sim.clock.time()

        def disconnected() -> None:
            if target.status == "Up":
                href, zref, pod = self.refs(target)
                subject, body = profile.host_disconnected(href, zref, pod)
                self.emit(failure, "ALERT.COMPUTE.HOST", target, subject, body)
            self.set_host_status(target, "Disconnected")
            target.disconnected = self.sim.clock.time()

        def connecting() -> None:
            self.set_host_status(target, "Connecting")

        def up() -> None:
            self.set_host_status(target, "Up")
            target.last_ping = int(self.sim.clock.time() * 1000) >> 10

        for k in range(flaps):
            base = t0 + k * interval
            self._at(run, base, disconnected, f"{target.name}-flap-{k + 1}-down")
            self._at(run, base + down_for, connecting, f"{target.name}-flap-{k + 1}-connecting")
            self._at(run, base + down_for + 2.0, up, f"{target.name}-flap-{k + 1}-up")

    def _mass_failure(
        self,
        run: ScenarioRun,
        pod: str | None = None,
        *,
        hosts: list[str] | None = None,
        detect_after: float = 150.0,
        investigations: int = 2,
        fence: bool | None = None,
        fence_after: float = 20.0,
        pickup_delay: float = 30.0,
        parallel_rate: float = 0.25,
        capacity: int | None = None,
        recover_after: float | None = 1800.0,
    ) -> None:
        """A rack (pod) of hosts fails at once; VMs restart on the surviving hosts."""
        st = self._state
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
        opts = {"pickup_delay": pickup_delay, "parallel_rate": parallel_rate}
        for host in targets:
            self._crash(
                run,
                host,
                delay=rng.uniform(0.0, 5.0),
                detect_after=detect_after,
                investigations=investigations,
                fence=fence,
                fence_after=fence_after,
                opts=opts,
                recover_after=recover_after,
            )

    def _maintenance(
        self, run: ScenarioRun, host: str | int | None = None, *, duration: float = 600.0
    ) -> None:
        """Planned maintenance: VMs are live-migrated away; no alert, no HA row."""
        target = self._pick_host(host)
        run.hosts.append(target.name)
        st = self._state
        t0 = self.sim.clock.time()
        clock = self.sim.clock

        def prepare() -> None:
            target.resource_state = "PrepareForMaintenance"
            for i, vm in enumerate(st.vms_on_host(target.id)):
                work = HaWork(
                    id=st.next_id("op_ha_work"),
                    instance_id=vm.id,
                    type="Migration",
                    vm_type=vm.vm_type,
                    state=vm.state,
                    host_id=target.id,
                    created=clock.time(),
                    step="Scheduled",
                    time_to_try=int(clock.time() * 1000) >> 10,
                    updated=vm.update_count,
                    reason="HostMaintenance" if self.sim.profile.ha_reason else None,
                )
                st.ha_work.append(work)
                self._at(run, t0 + 5.0 + 4.0 * i, _migrate(vm, work), f"migrate-{vm.name}")

        def _migrate(vm: Vm, work: HaWork) -> Callable[[], None]:
            def go() -> None:
                work.step = "Migrating"
                work.taken = clock.time()
                work.mgmt_server_id = MS_ID
                dest = self._target(vm, target)
                if dest is None:
                    work.step, work.outcome = "Error", "no host to migrate to"
                    return
                self._vm_changed(vm, host_id=dest.id, last_host_id=target.id)
                self.event("VM.MIGRATE", f"Migrating VM {vm.name} for host maintenance", vm=vm)
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
        self._at(run, t0, prepare, f"{target.name}-prepare-maintenance")
        self._at(run, t0 + 10.0 + 4.0 * count, in_maintenance, f"{target.name}-maintenance")
        self._at(run, t0 + duration, cancel, f"{target.name}-cancel-maintenance")
