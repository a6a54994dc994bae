"""The HA queue played from the ``cloud`` database: rows in ``op_ha_work``, ``take()`` workers.

Unlike the pre-planned rows of ``ha.py`` (the scenarios' HA, mirrored into the database), here
the database is the truth: ``ha.workers`` workers take one row at a time with ``take()``'s exact
conditions (lowest id first), so a row another process cancelled is never executed, a taken one
is, and a mass failure leaves a backlog. A restart whose VM changed since queueing just ends the
row ``Done`` ("VM … has been changed"); two rows of one VM taken before either changed it both
restart the VM (a duplicate HA execution, counted in the truth).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cloudstack_simulator.alerting import open_failure, send_alert
from cloudstack_simulator.cloud_db import CloudDb
from cloudstack_simulator.context import Context
from cloudstack_simulator.ha import MAX_RETRIES, MS_ID, RESTART_RETRY_INTERVAL, destination
from cloudstack_simulator.refs import host_refs, vm_ref
from cloudstack_simulator.state import HaWork, Host, Vm, stamp
from cloudstack_simulator.truth import FailureTruth
from sidecar.model.constants import VM_ALERT_NAME_BY_KIND


def _epoch(value: Any) -> float | None:
    """A DATETIME read back (str from SQLite, datetime from MariaDB) as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    return float(value.replace(tzinfo=UTC).timestamp())


class HaQueue:
    """``ha.workers`` HA workers taking ``op_ha_work`` rows from the database on the clock."""

    def __init__(
        self,
        ctx: Context,
        db: Callable[[], CloudDb],
        *,
        investigate_seconds: float = 20.0,
        start_seconds: float = 10.0,
    ) -> None:
        self.ctx = ctx
        self._db = db
        #: Investigation and fencing of a VM on a down host, then its start elsewhere.
        self.investigate_seconds = investigate_seconds
        self.start_seconds = start_seconds
        self._idle: set[int] | None = None
        self._works: dict[int, HaWork] = {}
        #: HA-enabled VM id -> the failure that queued it (for the truth's counts).
        self.queued: dict[int, FailureTruth] = {}

    @property
    def db(self) -> CloudDb:
        """The cloud database (created on first use)."""
        return self._db()

    def workers(self) -> int:
        """``ha.workers`` as the settings serve it."""
        return int(self.ctx.state.settings["ha.workers"].value)

    # -- queueing ------------------------------------------------------------------------------

    def fail_hosts(
        self, hosts: list[Host], rounds: int = 2, gap: float = 5.0
    ) -> list[FailureTruth]:
        """Hosts die now; ``rounds`` ``scheduleRestartForVmsOnHost`` calls each, ``gap`` s apart."""
        clock = self.ctx.clock
        now = clock.time()
        failures = []
        for i, host in enumerate(hosts):
            host.agent_alive = False
            if host.status != "Down":
                host.status, host.update_count = "Down", host.update_count + 1
            self.db.write_host(host)
            failure = open_failure(self.ctx, host, "ha-queue", now)
            failure.died = now
            failures.append(failure)
            for r in range(rounds):

                def call(h: Host = host, f: FailureTruth = failure) -> None:
                    self.schedule_restart_for_vms_on_host(h, f)

                clock.schedule(now + r * gap + i * 0.05, call, f"haq-host-{host.id}-round-{r}")
        return failures

    def schedule_restart_for_vms_on_host(self, host: Host, failure: FailureTruth) -> int:
        """``scheduleRestartForVmsOnHost(host, investigate=true, HostDown)``; rows created."""
        st = self.ctx.state
        vms = sorted(st.vms_on_host(host.id), key=lambda v: (v.vm_type == "User", v.id))
        if self.ctx.profile.defect:
            chosen = vms
        else:
            # The fix (#10624): skip a VM with a pending HA row on this host.
            pending = {
                int(r["instance_id"])
                for r in self.db.query(
                    "SELECT instance_id FROM op_ha_work WHERE host_id=? AND type='HA' "
                    "AND step NOT IN ('Done','Cancelled','Error')",
                    (host.id,),
                )
            }
            chosen = [vm for vm in vms if vm.id not in pending]
            if vms and not chosen:
                return 0
        href, zref, pod = host_refs(st, host)
        names = [vm.name for vm in chosen if vm.ha_enabled] if vms else None
        subject, body = self.ctx.profile.host_is_down(href, zref, pod, names)
        send_alert(self.ctx, "ALERT.COMPUTE.HOST", host, subject, body, failure)
        failure.rounds += 1
        created = 0
        for vm in chosen:
            if vm.ha_enabled:
                self.schedule_restart(vm, failure, investigate=True)
                created += 1
        return created

    def schedule_restart(self, vm: Vm, failure: FailureTruth, *, investigate: bool) -> HaWork:
        """``scheduleRestart``: one HA row (Investigating on the host-down path, else Scheduled)."""
        st = self.ctx.state
        now = self.ctx.clock.time()
        reason = ("HostDown" if investigate else "Unknown") if self.ctx.profile.ha_reason else None
        row = st.add_ha_restart(
            vm,
            step="Investigating" if investigate else "Scheduled",
            at=now,
            reason=reason,
            failure_id=failure.id,
        )
        self.db.owned.add(row.id)
        self.db.write_ha(row)
        self._works[row.id] = row
        failure.ha_work_ids.append(row.id)
        self.queued.setdefault(vm.id, failure)
        self.wake()
        return row

    # -- workers -------------------------------------------------------------------------------

    def wake(self) -> None:
        """``wakeupWorkers``: every idle worker looks for a row now."""
        if self._idle is None:
            self._idle = set(range(self.workers()))
        now = self.ctx.clock.time()
        for worker in sorted(self._idle):
            self._idle.discard(worker)
            self.ctx.clock.schedule(now, functools.partial(self._work, worker), f"ha-w-{worker}")

    def _work(self, worker: int) -> None:
        """One worker: take a row (or go idle until woken or a retry is due)."""
        now = self.ctx.clock.time()
        row = self.db.take(stamp(now), MS_ID, now)
        if row is None:
            assert self._idle is not None
            self._idle.add(worker)
            return
        self.refresh(int(row["id"]))
        vm = self.ctx.state.vms[int(row["instance_id"])]
        if vm.state != row["state"] or vm.update_count != int(row["updated"]):
            self.ctx.clock.schedule(now + 0.5, lambda: self._end(worker, row, "changed"), "ha-chg")
            return
        self.ctx.clock.schedule(
            now + self.investigate_seconds, lambda: self._restart(worker, row, vm), "ha-fence"
        )

    def _end(self, worker: int, row: dict[str, Any], outcome: str) -> None:
        """Row ``Done``; the worker looks for the next."""
        self.db.update_ha(int(row["id"]), step="Done")
        self.refresh(int(row["id"]), outcome)
        self._work(worker)

    def _restart(self, worker: int, row: dict[str, Any], vm: Vm) -> None:
        """Fence and stop the VM, then start it elsewhere (or retry later)."""
        clock, st = self.ctx.clock, self.ctx.state
        now = clock.time()
        self._vm(vm, state="Stopped", host_id=None, last_host_id=int(row["host_id"] or 0) or None)
        failed = st.hosts.get(int(row["host_id"] or 0))
        target = destination(st, vm, failed) if failed is not None else None
        row_id = int(row["id"])
        if target is None:
            tried = int(row["tried"] or 0) + 1
            if tried >= MAX_RETRIES:
                self.db.update_ha(row_id, step="Done", tried=tried)
            else:
                # processWork: back to untaken, tried+1, a later time_to_try, the VM's new state.
                due = now + RESTART_RETRY_INTERVAL
                self.db.update_ha(
                    row_id,
                    step="Scheduled",
                    tried=tried,
                    mgmt_server_id=None,
                    taken=None,
                    time_to_try=stamp(due),
                    updated=vm.update_count,
                    state=vm.state,
                )
                clock.schedule(due + 1.0, self.wake, f"ha-retry-{row_id}")
            self.refresh(row_id, "no destination")
            self._work(worker)
            return
        self.db.update_ha(row_id, step="Restarting")
        self._vm(vm, state="Starting", host_id=target.id)
        failure = self.queued.get(vm.id)
        if failure is not None:
            self.ctx.truth.ha_executions[(failure.id, vm.id)] += 1
            subject, body = self.ctx.profile.ha_starting(vm_ref(vm))
            name = VM_ALERT_NAME_BY_KIND[vm.vm_type]
            uuid = send_alert(self.ctx, name, vm, subject, body, failure)
            if uuid is not None:
                self.ctx.truth.note_restart(failure, vm.name, uuid, now)

        def running() -> None:
            self._vm(vm, state="Running")
            self.ctx.truth.ha_running_at[vm.id] = clock.time()
            self._end(worker, row, "restarted")

        clock.schedule(now + self.start_seconds, running, f"ha-start-{row_id}")

    def _vm(self, vm: Vm, **changes: Any) -> None:
        """``updateState``: columns, ``update_count``, and the mirror in ``vm_instance``."""
        for name, value in changes.items():
            setattr(vm, name, value)
        vm.update_count += 1
        vm.last_updated = self.ctx.clock.time()
        self.db.write_vm(vm)

    def refresh(self, row_id: int | None = None, outcome: str = "") -> None:
        """Copy database rows (one, or all the queue's) back into the in-memory view."""
        ids = [row_id] if row_id is not None else sorted(self._works)
        for rid in ids:
            work = self._works.get(rid)
            if work is None:
                continue
            row = self.db.ha_row(rid)
            work.step, work.tried, work.state = row["step"], int(row["tried"] or 0), row["state"]
            work.mgmt_server_id = row["mgmt_server_id"]
            work.taken = _epoch(row["taken"])
            work.time_to_try, work.updated = int(row["time_to_try"]), int(row["updated"])
            if outcome:
                work.outcome = outcome

    def outcome(self) -> dict[str, Any]:
        """Duplicate HA executions, when every queued HA VM ran again, VMs that never did."""
        truth = self.ctx.truth
        never = sorted(v for v in self.queued if self.ctx.state.vms[v].state != "Running")
        times = [truth.ha_running_at[v] for v in self.queued if v in truth.ha_running_at]
        start = min((f.started for f in self.queued.values()), default=0.0)
        return {
            "duplicate_executions": truth.duplicate_ha_executions(),
            "all_running_after": (max(times) - start) if times and not never else None,
            "never_ran_again": never,
        }
