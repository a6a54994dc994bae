"""The HA manager: ``op_ha_work`` rows for the VMs of a down host, and a pool of HA workers.

``HighAvailabilityManagerImpl`` as cloudstack.md §8 reads it: each ``scheduleRestartForVmsOnHost``
call sends "Host is down, …" and adds one Investigating row per VM; workers fence, stop and
restart the VM elsewhere ("HA starting VM: …"). On a release with the defect the repeated calls
repeat the alert and the rows, and a duplicate row taken in parallel restarts a VM twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from cloudstack_simulator.alerting import send_alert
from cloudstack_simulator.context import Context
from cloudstack_simulator.refs import host_refs, vm_ref
from cloudstack_simulator.state import HaWork, Host, State, Vm, stamp
from cloudstack_simulator.steps import ScenarioRun, Steps
from cloudstack_simulator.truth import FailureTruth
from sidecar.model.constants import VM_ALERT_NAME_BY_KIND

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


def destination(state: State, vm: Vm, failed: Host) -> Host | None:
    """A host to restart on: Up, Enabled, Routing, same zone, least loaded (then id).

    A host whose agent died but is still Up (not yet past its ping timeout) is skipped: the
    start there fails and the planner tries another host.
    """
    load: dict[int, int] = {}
    for other in state.vms.values():
        if other.host_id is not None and other.removed is None:
            load[other.host_id] = load.get(other.host_id, 0) + 1
    candidates = [
        h
        for h in state.hosts.values()
        if h.type == "Routing"
        and h.status == "Up"
        and h.agent_alive
        and h.resource_state == "Enabled"
        and h.removed is None
        and h.id != failed.id
        and h.zone_id == vm.zone_id
        and load.get(h.id, 0) < h.capacity
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda h: (load.get(h.id, 0), h.id))


class HaManager:
    """Schedules HA rows and plays the shared worker pool that takes them."""

    def __init__(self, ctx: Context, steps: Steps) -> None:
        self.ctx = ctx
        self.steps = steps
        self._workers = [0.0] * HA_WORKERS
        self._restarts: dict[tuple[int, int], _Restart] = {}

    def schedule_restart_for_vms_on_host(
        self,
        run: ScenarioRun,
        failure: FailureTruth,
        host: Host,
        rng: random.Random,
        opts: dict[str, Any],
    ) -> int:
        """``HighAvailabilityManagerImpl.scheduleRestartForVmsOnHost``; returns rows created."""
        st = self.ctx.state
        profile = self.ctx.profile
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
        href, zref, pod = host_refs(self.ctx.state, host)
        subject, body = profile.host_is_down(href, zref, pod, names)
        send_alert(self.ctx, "ALERT.COMPUTE.HOST", host, subject, body, failure)
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
        st = self.ctx.state
        now = self.ctx.clock.time()
        row = st.add_ha_restart(
            vm,
            step="Investigating",
            at=now,
            reason="HostDown" if self.ctx.profile.ha_reason else None,
            failure_id=failure.id,
        )
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

            self.steps.at(run, when, changed, f"ha-row-{row.id}-changed")

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
        clock = self.ctx.clock

        def take() -> None:
            row.taken = clock.time()
            row.mgmt_server_id = MS_ID

        def fence_and_stop() -> None:
            if vm.host_id != row.host_id:
                row.step, row.outcome = "Done", "VM is now no longer on host"
                return
            # Investigators cannot reach the VM: fence it off, then advanceStop(force).
            self.steps.vm_changed(vm, state="Stopped", host_id=None, last_host_id=host.id)
            row.step = "Scheduled"
            if not vm.ha_enabled:
                row.step, row.outcome = "Done", "VM is not HA enabled so we're done."

        def restart() -> None:
            if row.step != "Scheduled" or vm.state not in ("Stopped", "Starting", "Running"):
                return
            if vm.state == "Stopped":
                target = destination(self.ctx.state, vm, host)
                if target is None:
                    self._unable_to_restart(run, failure, vm, host, row)
                    return
                row.step = "Restarting"
                self.steps.vm_changed(vm, state="Starting", host_id=target.id)
                self._ha_event(vm, "Started")
            self.steps.at(run, clock.time() + duration * 0.4, finish, f"ha-row-{row.id}-done")

        def finish() -> None:
            if vm.state == "Starting":
                self.steps.vm_changed(vm, state="Running")
            row.step, row.outcome = "Done", "restarted"
            self._ha_started(failure, vm)
            plan.last_alert = max(plan.last_alert, clock.time())
            self._ha_event(vm, "Completed")

        self.steps.at(run, start, take, f"ha-row-{row.id}-taken")
        self.steps.at(run, start + duration * 0.3, fence_and_stop, f"ha-row-{row.id}-fence")
        self.steps.at(run, start + duration * 0.6, restart, f"ha-row-{row.id}-restart")

    def _unable_to_restart(
        self, run: ScenarioRun, failure: FailureTruth, vm: Vm, host: Host, row: HaWork
    ) -> None:
        href, zref, pod = host_refs(self.ctx.state, host)
        vref = vm_ref(vm)
        subject, body = self.ctx.profile.unable_to_restart(vref, href, zref, pod)
        send_alert(self.ctx, VM_ALERT_NAME_BY_KIND[vm.vm_type], vm, subject, body, failure)
        row.tried += 1
        if row.tried >= MAX_RETRIES:
            row.step, row.outcome = "Error", "gave up after max retries"
            return
        row.time_to_try = stamp(self.ctx.clock.time() + RESTART_RETRY_INTERVAL)
        row.updated = vm.update_count
        row.state = vm.state

        def retry() -> None:
            target = destination(self.ctx.state, vm, host)
            if target is None:
                self._unable_to_restart(run, failure, vm, host, row)
                return
            row.step = "Restarting"
            self.steps.vm_changed(vm, state="Starting", host_id=target.id)
            self._ha_event(vm, "Started")

            def done() -> None:
                self.steps.vm_changed(vm, state="Running")
                row.step, row.outcome = "Done", "restarted"
                self._ha_started(failure, vm)
                self._ha_event(vm, "Completed")

            self.steps.at(run, self.ctx.clock.time() + 5.0, done, f"ha-row-{row.id}-retry-done")

        # A worker picks the row up again after restart.retry.interval, within its 60 s sleep.
        pickup = random.Random(f"{self.ctx.seed}:retry:{row.id}:{row.tried}").uniform(1.0, 60.0)
        when = self.ctx.clock.time() + RESTART_RETRY_INTERVAL + pickup
        self.steps.at(run, when, retry, f"ha-row-{row.id}-retry")

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
        clock = self.ctx.clock
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
                self.steps.vm_changed(vm, state="Running")
                row.outcome = "restarted (parallel duplicate)"
                self._ha_started(failure, vm)
            else:
                row.outcome = "VM has been changed"

        self.steps.at(run, start, take, f"ha-row-{row.id}-taken")
        self.steps.at(run, start + (end - start) * 0.6, restart, f"ha-row-{row.id}-restart")
        self.steps.at(run, end, finish, f"ha-row-{row.id}-done")

    def _ha_started(self, failure: FailureTruth, vm: Vm) -> None:
        vref = vm_ref(vm)
        subject, body = self.ctx.profile.ha_starting(vref)
        uuid = send_alert(self.ctx, VM_ALERT_NAME_BY_KIND[vm.vm_type], vm, subject, body, failure)
        if uuid is not None:
            self.ctx.truth.note_restart(failure, vm.name, uuid, self.ctx.clock.time())

    def _ha_event(self, vm: Vm, state: str) -> None:
        if not self.ctx.profile.ha_events:
            return
        type_, started, completed = _EVENT_BY_KIND[vm.vm_type]
        self.steps.event(type_, started if state == "Started" else completed, state=state, vm=vm)
