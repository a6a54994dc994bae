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
from cloudstack_simulator.ha import MS_ID, HaManager, destination
from cloudstack_simulator.refs import host_refs
from cloudstack_simulator.state import HaWork, Host, Vm, stamp
from cloudstack_simulator.steps import ScenarioRun, Steps
from cloudstack_simulator.truth import FailureTruth

SCENARIOS = ("host-crash", "disconnect-flap", "mass-failure", "maintenance")


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
        rng = random.Random(f"{self.ctx.seed}:{run.id}:{run.name}:{host.id}")
        profile = self.ctx.profile
        t0 = self.ctx.clock.time() + delay
        t1 = t0 + detect_after
        do_fence = (host.ha_config and host.ha_enabled) if fence is None else fence

        def agent_dies() -> None:
            host.last_ping = stamp(self.ctx.clock.time())
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
