"""One cycle of the service, and what it keeps between cycles.

A cycle: hosts -> new alerts (newest first, down to the last seen) -> VMs of failed hosts while
their HA is under way -> observations (host states, alerts, VM placements) -> plan -> archive
(lease holder only, unless dry run) -> metrics -> Alertmanager (when configured, after the
deadline's work: its own short timeout). Each cycle has a deadline so a hung call cannot stall
the scheduler.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sidecar.cloudstack.config import DEFAULT_REGION
from sidecar.cloudstack.errors import AuthenticationError, CloudStackError
from sidecar.cloudstack.listing import server_now
from sidecar.ledger import Ledger
from sidecar.model.plan import Plan, Snapshot, Summary
from sidecar.model.resources import Host
from sidecar.ops.context import Context, require_supported
from sidecar.ops.detection import failure_detection
from sidecar.ops.policy import policy_for
from sidecar.ops.service.acting import Archiver
from sidecar.ops.service.alertmanager import Alerting
from sidecar.ops.service.alerts import AlertMemory
from sidecar.ops.service.hosts import HOST_HISTORY, HostLister, HostStates, failed_host_ids
from sidecar.ops.service.metrics import Metrics
from sidecar.ops.service.session import Session
from sidecar.ops.service.vms import VmCache, VmPlacements
from sidecar.reconcile import build_plan
from sidecar.support.errors import EXIT_CLOUDSTACK, LedgerUnavailable, UserError
from sidecar.support.settings import default_state_dir

log = logging.getLogger(__name__)

#: Exit code of ``run --once`` when its cycle failed for a reason without its own code.
EXIT_CYCLE_FAILED = 1


@dataclass
class CycleResult:
    """What one cycle saw and did."""

    ok: bool
    message: str
    plan: Plan | None = None
    counts: dict[str, int] = field(default_factory=dict)
    duration: float = 0.0
    exit_code: int = 0
    hosts: list[Host] = field(default_factory=list)
    #: Why a failed cycle failed, one of the metrics' FAILURE_REASONS.
    reason: str = ""


def duplicates_by_family(plan: Plan) -> dict[str, int]:
    """Duplicates still to archive in ``plan``, per family (the metrics' duplicates gauge)."""
    out: dict[str, int] = {}
    for group in plan.groups:
        out[group.family] = out.get(group.family, 0) + len(group.duplicates)
    return out


def _plan_key(plan: Plan) -> str:
    """What makes a plan worth recording again (its decisions, not its timestamp)."""
    h = hashlib.sha1(usedforsecurity=False)
    for g in plan.groups:
        h.update(f"g|{g.group_id}|{g.canonical}|{','.join(g.duplicates)}\n".encode())
    for i in plan.ha_incidents:
        vms = ",".join(f"{v.vm}:{v.restarts}" for v in i.vms)
        h.update(f"i|{i.incident_id}|{i.rounds}|{vms}|{','.join(i.backlog)}\n".encode())
    return h.hexdigest()


class Service:
    """The service's cycles over the parts it keeps between them: client, caches, lease."""

    def __init__(self, ctx: Context, *, dry_run: bool, metrics: Metrics | None = None) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.dry_run = dry_run
        self.metrics = metrics or Metrics()
        self.metrics.dry_run(dry_run)
        self.policy = policy_for(self.settings)
        #: Whether the policy's detection time comes from the cloud (listConfigurations).
        self._detection_read = False
        #: Whether the first good cycle's long-lived state is out of the cyclic GC's way.
        self._settled = False
        self.ledger: Ledger = ctx.ledger()
        #: CloudStack's version, from ``verify``.
        self.version = ""
        #: Set on SIGTERM: archiving stops between batches, no new cycle starts.
        self.stopping = threading.Event()
        self.session = Session(ctx, on_call=self.metrics.api_call)
        self.hosts = HostLister()
        self.host_states = HostStates(self.ledger)
        self.alerts = AlertMemory(self.ledger, self.metrics)
        self.vms = VmCache()
        self.placements = VmPlacements(self.ledger)
        self.archiver = Archiver(self.settings, self.ledger, self.metrics, dry_run=dry_run,
                                 should_stop=self.stopping.is_set)
        self._last_plan_key = ""
        self.alerting = self._alerting()

    def _alerting(self) -> Alerting | None:
        """Alertmanager notifications, when ``alertmanager_url`` names any."""
        urls = self.settings.alertmanager_urls()
        if not urls:
            return None
        cs = self.ctx.cloudstack
        # The default section name says nothing about which cloud: the endpoint's host does.
        name = cs.region if cs.region != DEFAULT_REGION else urlsplit(cs.endpoint).hostname
        return Alerting(
            urls, self.metrics, cloudstack=name or cs.region,
            poll_interval=self.settings.poll_interval,
            cycle_deadline=self.settings.cycle_deadline,
            backlog_after=self.settings.ha_backlog_after, horizon=self.policy.ha_horizon,
            state_path=default_state_dir() / "alertmanager.json",
        )

    def close(self) -> None:
        """Close the CloudStack client, give the lease up (another sidecar may act at once) and
        close the ledger."""
        try:
            self.session.drop()
        except Exception as exc:  # nor on a connection that broke
            log.warning("could not close the CloudStack client: %s", exc)
        try:
            self.archiver.release()
        except Exception as exc:  # a clean stop must not fail on a vanished database
            log.warning("could not release the ledger lease: %s", exc)
        finally:
            self.ledger.close()

    async def verify(self) -> str:
        """Check reachability and credentials before READY=1; returns the CloudStack version."""
        async with self.ctx.client() as cs:
            self.version = await cs.version()
        require_supported(self.version)
        return self.version

    def run_cycle(self) -> CycleResult:
        """One cycle under a deadline; never raises (the scheduler must keep going)."""
        started = time.monotonic()
        try:
            result = self.session.run(
                asyncio.wait_for(self._cycle(), timeout=self.settings.cycle_deadline)
            )
        except TimeoutError:
            result = CycleResult(False, f"cycle exceeded its {self.settings.cycle_deadline:g} s "
                                        "deadline; the next cycle resumes", exit_code=1,
                                 reason="deadline")
        except AuthenticationError as exc:
            # The client probed: a key that works means the clock refused the signatures.
            until = ("signed requests are accepted again"
                     if exc.bracket is not None and exc.bracket.key_works
                     else "the credentials work again")
            result = CycleResult(False, f"{exc} — not acting until {until}",
                                 exit_code=EXIT_CLOUDSTACK, reason="authentication")
        except CloudStackError as exc:
            result = CycleResult(False, str(exc), exit_code=EXIT_CLOUDSTACK, reason="cloudstack")
        except LedgerUnavailable as exc:
            result = CycleResult(False, f"{exc}; the next cycle retries",
                                 exit_code=exc.exit_code, reason="ledger")
        except UserError as exc:
            result = CycleResult(False, str(exc), exit_code=exc.exit_code, reason="error")
        except Exception as exc:  # a bug: log it with its traceback, keep the service up
            log.exception("cycle failed")
            result = CycleResult(False, f"cycle failed: {type(exc).__name__}: {exc}",
                                 exit_code=EXIT_CYCLE_FAILED, reason="internal")
        if not result.ok:
            # A failed cycle may leave a broken connection or ledger work in a worker thread
            # behind: wait for the work and start the next cycle with a new client and loop.
            try:
                self.session.drop()
            except Exception:
                log.exception("could not close the cycle's event loop")
        result.duration = time.monotonic() - started
        if result.ok:
            log.info("cycle ok: %s (%.2f s)", result.message, result.duration)
        else:
            log.error("cycle failed: %s", result.message)
        summary: Summary | None = None
        if result.plan is not None:
            summary = dataclasses.replace(
                result.plan.summary, by_family=duplicates_by_family(result.plan)
            )
        self.metrics.cycle(result.ok, result.duration, summary,
                           reason=result.reason or "internal")
        self._notify(result)
        if result.ok and not self._settled:
            # The first cycle's inventory (40,000 VMs, their placements) lives on for many
            # cycles: keep it out of the full collections that would land in quiet cycles.
            gc.collect()
            gc.freeze()
            self._settled = True
        return result

    def _notify(self, result: CycleResult) -> None:
        """Alertmanager after the cycle, outside its deadline; a failed cycle without a plan
        re-sends what was sent (a CloudStack outage must not let open incidents expire)."""
        if self.alerting is None:
            return
        try:
            if result.plan is not None:
                self.session.run(self.alerting.cycle(result.plan, result.hosts,
                                                      self.alerts.live.keys()))
            else:
                self.session.run(self.alerting.resend())
        except Exception:  # a bug here must not stop the service: the cycle's work is done
            log.exception("alertmanager notification failed")

    async def _cycle(self) -> CycleResult:
        ledger = self.ledger
        mode = "dry-run" if self.dry_run else "apply"
        run_id = ledger.start_run("service", mode, endpoint=self.ctx.cloudstack.endpoint,
                                  cloudstack_version=self.version)
        counts: dict[str, int] = {}
        try:
            cs = await self.session.client()
            hosts = await self.hosts.fetch(cs)
            if not self._detection_read:
                # Once per process: ping and Host HA settings change rarely, and a quiet cycle
                # must stay at its few calls.
                detection = await failure_detection(cs, self.settings, hosts)
                self.policy = dataclasses.replace(self.policy, failure_detection=detection)
                self._detection_read = True
            now = server_now(cs)  # alert times are the server's: plan on its clock
            for change in self.host_states.observe(hosts, now):
                log.info("host %s (%s) is now %s%s", change.host_name, change.host_id,
                         change.state, f", HA {change.hastate}" if change.hastate else "")
                self.vms.forget_host(change.host_id)
            fresh = await self.alerts.poll(cs, now, counts)
            listed = await self.vms.refresh(cs, hosts, fresh, counts)
            self.placements.record(listed, now, counts)

            vm_index = self.vms.index()
            since = now - HOST_HISTORY  # the VMs' hosts over the hosts' history
            snapshot = Snapshot(
                taken_at=now, alerts=list(self.alerts.live.values()), hosts=hosts,
                vms=vm_index.source, host_history=self.host_states.history(since),
                vm_placements=self.placements.history(self.vms, since),
            )
            plan = build_plan(snapshot, self.policy, vm_index=vm_index)
            counts.update(plan.summary.to_json_counts())
            key = _plan_key(plan)
            if key != self._last_plan_key and (plan.groups or plan.ha_incidents):
                ledger.record_plan(run_id, plan)
                self._last_plan_key = key
            interrupted = await self.archiver.act(cs, run_id, plan, self.alerts, counts)
        except BaseException:
            try:
                ledger.finish_run(run_id, "error", counts)
            except LedgerUnavailable as exc:
                # Often the ledger is what failed: the cycle's own error is the one to report.
                log.warning("could not record the failed cycle in the ledger: %s", exc)
            raise
        ledger.finish_run(run_id, "interrupted" if interrupted else "ok", counts)
        return self._result(hosts, plan, counts, interrupted)

    def _result(
        self, hosts: list[Host], plan: Plan, counts: dict[str, int], interrupted: str
    ) -> CycleResult:
        """The cycle's one-line account, as the log and ``systemctl status`` show it."""
        if self.dry_run:
            role = "dry run"
        elif self.archiver.token is not None:
            role = "leader"
        else:
            role = "observer (another sidecar acts)"
        message = (
            f"{role}; {len(hosts)} hosts ({len(failed_host_ids(hosts))} failed), "
            f"{counts.get('new_alerts', 0)} new alerts, {plan.summary.duplicates} duplicates, "
            f"{counts.get('archived', 0)} archived, {plan.summary.ha_incidents} HA incidents"
        )
        if interrupted:
            # The unanswered batch stays ``sent``; the next cycle settles it.
            return CycleResult(False, f"{message}; archiving interrupted: {interrupted}", plan,
                               counts, exit_code=EXIT_CLOUDSTACK, hosts=hosts,
                               reason="interrupted")
        return CycleResult(True, message, plan, counts, hosts=hosts)

    def prune(self) -> None:
        """Drop observations past their retention (decisions and actions are kept)."""
        cutoff = datetime.now(UTC) - timedelta(days=self.settings.observation_retention_days)
        try:
            removed = self.ledger.prune_observations(cutoff)
            self.host_states.forget_history()  # it may hold pruned transitions
            self.placements.forget()  # and pruned placements
        except UserError as exc:
            log.error("pruning old observations failed: %s", exc)
            return
        if removed:
            log.info("pruned %d old observations", removed)
