"""``cloudstack-sidecar run``: the systemd service (Type=notify) polling and reconciling.

One APScheduler interval job runs a cycle: hosts -> new alerts (newest first, down to the last
seen) -> VMs of failed hosts while their HA is under way -> observations -> plan -> archive
(lease holder only, unless dry run) -> metrics. Each cycle has a deadline so a hung call cannot
stall the scheduler, and the watchdog is pinged only after a cycle completes, so a hung cycle
trips it. SIGTERM/SIGINT reach a watcher thread (never scheduler code inside a signal handler),
which sends STOPPING=1, lets the running cycle finish and stops the scheduler.
"""

from __future__ import annotations

import asyncio
import dataclasses
import faulthandler
import gc
import hashlib
import logging
import math
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import typer

from sidecar import __version__
from sidecar.cloudstack.errors import AuthenticationError, CloudStackError
from sidecar.cloudstack.models import Alert, Host, VirtualMachine
from sidecar.errors import UserError
from sidecar.notify import Notifier
from sidecar.reconcile import build_plan, fingerprint_of, parse_subject
from sidecar.reconcile.incidents import VmIndex
from sidecar.reconcile.model import HostStateChange, Plan, Snapshot, Summary
from sidecar.runtime import Context, claim_lease, load_context, require_supported

if TYPE_CHECKING:
    # Imported where used (``--help`` and the other commands import this module): the
    # CloudStack client and the snapshot readers pull in httpx, the metrics prometheus_client,
    # the ledger and the applier SQLAlchemy and Alembic.
    from sidecar.cloudstack.client import CloudStackClient
    from sidecar.cloudstack.config import CloudStackConfig
    from sidecar.ledger import Ledger
    from sidecar.metrics import Metrics
    from sidecar.settings import Settings

log = logging.getLogger("sidecar.service")

#: How far back the service keeps live alerts in memory to merge new copies with their
#: canonical: as long as the planner's longest split (history_max_gap, one day).
ALERT_MEMORY = timedelta(hours=24)

#: Host-state history the planner gets each cycle (splits of host incidents).
HOST_HISTORY = timedelta(days=7)

#: Families whose alerts mean VMs moved or failed to start: the VM inventory is refreshed.
VM_FAMILIES = frozenset({"ha_starting_vm", "unable_to_restart", "vm_stopped"})

#: Seconds between full host listings. Other cycles ask for ``details=min``: CloudStack then
#: skips capacity, statistics and events and drops the zone, pod and cluster names (40 % fewer
#: bytes, and far less work on the management server); of those the sidecar needs only the
#: zone name (the planner tells hosts of one name apart by zone), taken from the last full
#: listing by zone id, like the pod name (kept so that ``Host`` objects stay the same).
HOST_DETAILS_REFRESH = 3600.0

#: listHosts keys that change at every agent ping and that ``Host`` does not keep.
_VOLATILE_HOST_KEYS = frozenset({"lastpinged"}) - {f.name for f in dataclasses.fields(Host)}

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
    """State kept between cycles: recent alerts, VMs, HA progress, the ledger and metrics."""

    def __init__(self, ctx: Context, *, dry_run: bool, metrics: Metrics | None = None) -> None:
        from sidecar.cleanup import policy_for
        from sidecar.metrics import Metrics

        self.ctx = ctx
        self.settings = ctx.settings
        self.dry_run = dry_run
        self.metrics = metrics or Metrics()
        self.policy = policy_for(self.settings)
        self.ledger: Ledger = ctx.ledger()
        #: Live alerts of the last ALERT_MEMORY, by id.
        self.alerts: dict[str, Alert] = {}
        #: Newest ``sent`` seen per alert name: new alerts are stamped later.
        self.watermarks: dict[str, datetime] = {}
        self._vms: Mapping[str, VirtualMachine] = MappingProxyType({})
        #: VmIndex of ``vms``, kept while they do not change (``None``: build it again).
        self._vm_index: VmIndex | None = None
        #: Failed hosts -> whether HA-enabled VMs were still recorded on them at the last look.
        self.ha_pending: dict[str, bool] = {}
        self.inventory_due = True
        self.version = ""
        self.primed = False
        self.cycles = 0
        self.token: int | None = None
        self.last_plan_key = ""
        self.stopping = threading.Event()
        #: Zone and pod names by id from the last full host listing, and when (monotonic) it
        #: was made.
        self.zone_names: dict[str, str] = {}
        self.pod_names: dict[str, str] = {}
        self._names_listed_at = -math.inf
        # The event loop and CloudStack client kept from one cycle to the next (one SSL context,
        # one connection pool); a failed cycle drops them, and the next one starts afresh.
        self._runner: asyncio.Runner | None = None
        self._cs: CloudStackClient | None = None
        self._cs_made_for: tuple[CloudStackConfig, Settings] | None = None
        # What the ledger's host tables held at the newest host observation ``_host_mark``
        # (``None``: unknown): each host's last recorded (state, HA state), and the recent
        # transitions as (mark, since, transitions).
        self._host_mark: tuple[int, datetime | None] | None = None
        self._host_states: dict[str, tuple[str, str]] = {}
        self._history: (
            tuple[tuple[int, datetime | None], datetime, list[HostStateChange]] | None
        ) = None
        #: Last cycle's listHosts rows and their Host objects, by host id.
        self._host_rows: dict[str, tuple[dict[str, Any], Host]] = {}

    @property
    def vms(self) -> Mapping[str, VirtualMachine]:
        """The VMs the planner sees (inventory, refreshed where HA is under way), by id.

        Read-only: assign a new dict to change them, so that the cached VmIndex goes with it.
        """
        return self._vms

    @vms.setter
    def vms(self, vms: dict[str, VirtualMachine]) -> None:
        self._vms = MappingProxyType(vms)
        self._vm_index = None

    def vm_index(self) -> VmIndex:
        """The planner's index of ``vms``: built once per VM inventory, not once per cycle."""
        if self._vm_index is None:
            self._vm_index = VmIndex(tuple(self._vms.values()))
        return self._vm_index

    def close(self) -> None:
        """Close the CloudStack client, give the lease up (another sidecar may act at once) and
        close the ledger."""
        try:
            self._drop_runtime()
        except Exception as exc:  # nor on a connection that broke
            log.warning("could not close the CloudStack client: %s", exc)
        try:
            if self.token is not None:
                self.ledger.release_lease()
                self.token = None
        except Exception as exc:  # a clean stop must not fail on a vanished database
            log.warning("could not release the ledger lease: %s", exc)
        finally:
            self.ledger.close()

    def _drop_runtime(self) -> None:
        """Close the kept client and event loop (as ``asyncio.run`` would: pending tasks are
        cancelled, ledger work in worker threads is waited for)."""
        runner, cs = self._runner, self._cs
        self._runner, self._cs, self._cs_made_for = None, None, None
        if runner is None:
            return
        try:
            if cs is not None:
                runner.run(cs.aclose())
        except Exception as exc:  # the connection may be the broken thing
            log.debug("closing the CloudStack client failed: %s", exc)
        finally:
            runner.close()

    async def _client(self) -> CloudStackClient:
        """The kept client; a new one when the credentials, endpoint or settings changed."""
        wanted = (self.ctx.cloudstack, self.ctx.settings)
        if self._cs is not None and self._cs_made_for == wanted:
            return self._cs
        if self._cs is not None:
            old, self._cs = self._cs, None
            try:
                await old.aclose()
            except Exception as exc:  # the new client does not need the old connections
                log.debug("closing the previous CloudStack client failed: %s", exc)
        cs = self.ctx.client(on_call=self.metrics.api_call)
        await cs.__aenter__()
        self._cs, self._cs_made_for = cs, wanted
        return cs

    async def verify(self) -> str:
        """Check reachability and credentials before READY=1; returns the CloudStack version."""
        async with self.ctx.client() as cs:
            self.version = await cs.version()
        require_supported(self.version)
        return self.version

    # -- one cycle --------------------------------------------------------------------------

    def run_cycle(self) -> CycleResult:
        """One cycle under a deadline; never raises (the scheduler must keep going)."""
        started = time.monotonic()
        self.cycles += 1
        if self._runner is None:
            self._runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
        try:
            result = self._runner.run(
                asyncio.wait_for(self._cycle(), timeout=self.settings.cycle_deadline)
            )
        except TimeoutError:
            result = CycleResult(False, f"cycle exceeded its {self.settings.cycle_deadline:g} s "
                                        "deadline; the next cycle resumes", exit_code=1)
        except AuthenticationError as exc:
            result = CycleResult(False, f"{exc} — not acting until the credentials work again",
                                 exit_code=exc.exit_code)
        except (CloudStackError, UserError) as exc:
            result = CycleResult(False, str(exc), exit_code=exc.exit_code)
        except Exception as exc:  # a bug: log it with its traceback, keep the service up
            log.exception("cycle failed")
            result = CycleResult(False, f"cycle failed: {type(exc).__name__}: {exc}",
                                 exit_code=EXIT_CYCLE_FAILED)
        if not result.ok:
            # A failed cycle may leave a broken connection or ledger work in a worker thread
            # behind: wait for the work and start the next cycle with a new client and loop.
            try:
                self._drop_runtime()
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
        self.metrics.cycle(result.ok, result.duration, summary)
        return result

    async def _cycle(self) -> CycleResult:
        from sidecar.snapshot import FAILED_HOST_STATES, list_all_vms, server_now

        ledger = self.ledger
        mode = "dry-run" if self.dry_run else "apply"
        run_id = ledger.start_run("service", mode, endpoint=self.ctx.cloudstack.endpoint,
                                  cloudstack_version=self.version)
        counts: dict[str, int] = {}
        outcome = "error"
        try:
            cs = await self._client()
            hosts = await self._list_hosts(cs)
            now = server_now(cs)  # alert times are the server's: plan on its clock
            for change in self._observe_hosts(hosts, now):
                log.info("host %s (%s) is now %s%s", change.host_name, change.host_id,
                         change.state, f", HA {change.hastate}" if change.hastate else "")
                self._forget_host(change)
            fresh = await self._poll_alerts(cs, now, counts)
            if self.inventory_due or any(
                parse_subject(a.description).family in VM_FAMILIES for a in fresh
            ):
                # VMs moved (or we just started): one full listing; it also tells where
                # HA is still under way.
                self.vms = {vm.id: vm for vm in await list_all_vms(cs)}
                self.inventory_due = False
                counts["vm_inventory"] = len(self.vms)
                self._note_ha_progress(hosts)
            else:
                await self._poll_failed_hosts(cs, hosts)

            vm_index = self.vm_index()
            snapshot = Snapshot(
                taken_at=now, alerts=list(self.alerts.values()), hosts=hosts,
                vms=vm_index.source, host_history=self._host_history(now - HOST_HISTORY),
            )
            plan = build_plan(snapshot, self.policy, vm_index=vm_index)
            counts.update(plan.summary.to_json_counts())
            key = _plan_key(plan)
            if key != self.last_plan_key and (plan.groups or plan.ha_incidents):
                ledger.record_plan(run_id, plan)
                self.last_plan_key = key
            interrupted = await self._act(cs, run_id, plan, counts)
            outcome = "interrupted" if interrupted else "ok"
        finally:
            ledger.finish_run(run_id, outcome, counts)
        if self.dry_run:
            role = "dry run"
        else:
            role = "leader" if self.token is not None else "observer (another sidecar acts)"
        failed = sum(1 for h in hosts if h.state in FAILED_HOST_STATES)
        message = (
            f"{role}; {len(hosts)} hosts ({failed} failed), {counts.get('new_alerts', 0)} new "
            f"alerts, {plan.summary.duplicates} duplicates, "
            f"{counts.get('archived', 0)} archived, {plan.summary.ha_incidents} HA incidents"
        )
        if interrupted:
            # The unanswered batch stays ``sent``; the next cycle settles it.
            return CycleResult(False, f"{message}; archiving interrupted: {interrupted}", plan,
                               counts, exit_code=5)
        return CycleResult(True, message, plan, counts)

    async def _poll_alerts(
        self, cs: CloudStackClient, now: datetime, counts: dict[str, int]
    ) -> list[Alert]:
        """New alerts of the HA names into memory and the ledger; returns those new to memory."""
        from sidecar.snapshot import ELIGIBLE_NAMES, list_new_alerts

        horizon = now - ALERT_MEMORY
        # First cycle: page back to the horizon to fill the memory; later, stop at known ones.
        known = self.ledger.seen_alert_ids if self.primed else (lambda ids: set())
        by_name = await list_new_alerts(
            cs, ELIGIBLE_NAMES, known=known, not_before=horizon,
            watermarks=self.watermarks if self.primed else None,
        )
        self.primed = True
        fresh: list[Alert] = []
        for name, alerts in by_name.items():
            for alert in alerts:
                if alert.sent is not None:
                    mark = self.watermarks.get(name)
                    if mark is None or alert.sent > mark:
                        self.watermarks[name] = alert.sent
                if alert.id not in self.alerts:
                    fresh.append(alert)
                    self.alerts[alert.id] = alert
        self.alerts = {
            k: a for k, a in self.alerts.items() if a.sent is None or a.sent >= horizon
        }
        if fresh:
            unseen = {a.id for a in fresh} - self.ledger.seen_alert_ids([a.id for a in fresh])
            fingerprints = {
                a.id: "|".join(fingerprint_of(a.name, a.description)) for a in fresh
            }
            self.ledger.observe_alerts(fresh, fingerprints, now)
            # Unseen rows older than the memory are history a page happened to show (after
            # archiving, older rows move up): recorded, but not news.
            new = [a for a in fresh if a.id in unseen and (a.sent is None or a.sent >= horizon)]
            self.metrics.alerts_seen(new)
            counts["new_alerts"] = len(new)
            for a in new:
                log.info("new alert %s %s: %s", a.id, a.name, a.description)
        return [a for a in fresh if a.sent is None or a.sent >= horizon]

    async def _list_hosts(self, cs: CloudStackClient) -> list[Host]:
        """Hypervisor hosts (type Routing): ``details=min`` while the zone and pod names are
        known and recent, with each host's ``zonename`` and ``podname`` filled in from them
        (the same ``Host`` objects as a full listing gives)."""
        query = {"type": "Routing"}
        if self.zone_names and time.monotonic() - self._names_listed_at < HOST_DETAILS_REFRESH:
            rows = await cs.list_all("listHosts", "host", {**query, "details": "min"})
            named = ((self.zone_names, "zoneid", "zonename"), (self.pod_names, "podid", "podname"))
            if all(
                {str(r.get(key) or "") for r in rows} <= names.keys() | {""}
                for names, key, _ in named
            ):
                for r in rows:
                    for names, key, name in named:
                        place = str(r.get(key) or "")
                        if place:
                            r.setdefault(name, names[place])
                return self._hosts_of(rows)
            # A zone or pod we have not seen: a full listing names it.
        rows = await cs.list_all("listHosts", "host", query)
        hosts = self._hosts_of(rows)
        self.zone_names = {h.zoneid: h.zonename for h in hosts if h.zoneid}
        self.pod_names = {h.podid: h.podname for h in hosts if h.podid}
        self._names_listed_at = time.monotonic()
        return hosts

    def _hosts_of(self, rows: list[dict[str, Any]]) -> list[Host]:
        """``Host`` objects of listHosts rows; a row equal to last cycle's keeps its object.

        The kept rows and hosts are the old ones, so that a quiet cycle leaves no new
        long-lived objects behind (they would bring the GC's full collections closer).
        """
        before, kept = self._host_rows, {}
        hosts: list[Host] = []
        for row in rows:
            for key in _VOLATILE_HOST_KEYS:
                row.pop(key, None)
            host_id = str(row.get("id") or "")
            last = before.get(host_id)
            if last is None or last[0] != row:
                last = (row, Host.from_api(row))
            kept[host_id] = last
            hosts.append(last[1])
        self._host_rows = kept
        return hosts

    def _newest_host_observation(self) -> tuple[int, datetime | None]:
        """(id, time) of the ledger's newest host observation, (0, None) without any.

        Every change of a host's recorded state adds an observation, so while this stays the
        same, so do the ledger's host tables (the time tells a new row from a pruned one
        whose id SQLite gave out again).
        """
        newest = self.ledger.host_transitions(limit=1)
        return (int(newest[-1]["id"]), newest[-1]["observed_at"]) if newest else (0, None)

    def _observe_hosts(self, hosts: list[Host], now: datetime) -> list[HostStateChange]:
        """Record the hosts' state changes in the ledger (as ``Ledger.observe_hosts``); returns
        them.

        Skips the ledger's host tables when every host is in the state the ledger held for it
        at the last look and no host observation was added since, by us or another sidecar.
        """
        mark = self._newest_host_observation()
        if mark != self._host_mark:
            self._host_states, self._history = {}, None
        states = {h.id: (h.state, h.hostha.hastate) for h in hosts if h.id}
        if mark == self._host_mark and states.items() <= self._host_states.items():
            return []
        changes = self.ledger.observe_hosts(hosts, now)
        # The ledger now holds what we saw. Our own rows moved the mark on; when it moved by
        # exactly their number, nobody else wrote in between.
        self._host_states = states
        self._host_mark = mark
        if changes:
            after = self._newest_host_observation()
            self._host_mark = after if after[0] == mark[0] + len(changes) else None
        return changes

    def _host_history(self, since: datetime) -> list[HostStateChange]:
        """Host transitions since ``since``, read again only after new observations."""
        cached = self._history
        if cached is not None and cached[0] == self._host_mark and since >= cached[1]:
            return [c for c in cached[2] if c.at >= since]
        history = self.ledger.host_history(since=since)
        self._history = None if self._host_mark is None else (self._host_mark, since, history)
        return history

    def _forget_host(self, change: HostStateChange) -> None:
        """A host changed state: look at its VMs again if it is (still) failed."""
        self.ha_pending.pop(change.host_id, None)

    def _note_ha_progress(self, hosts: list[Host]) -> None:
        """From the inventory: which failed hosts still hold HA-enabled VMs."""
        from sidecar.snapshot import FAILED_HOST_STATES

        failed = {h.id for h in hosts if h.state in FAILED_HOST_STATES}
        on_failed: dict[str, bool] = dict.fromkeys(failed, False)
        for vm in self.vms.values():
            if vm.hostid in on_failed and vm.haenable:
                on_failed[vm.hostid] = True
        self.ha_pending = on_failed

    async def _poll_failed_hosts(self, cs: CloudStackClient, hosts: list[Host]) -> None:
        """VMs of failed hosts whose HA may still be under way (newly failed, or HA VMs left).

        Once a failed host holds no HA-enabled VM, HA is done there: it is not polled again
        until its state changes, so a quiet cycle costs no VM calls.
        """
        from sidecar.snapshot import FAILED_HOST_STATES, list_vms_of_hosts

        failed = {h.id for h in hosts if h.state in FAILED_HOST_STATES}
        for host_id in list(self.ha_pending):
            if host_id not in failed:
                del self.ha_pending[host_id]
        todo = [h for h in sorted(failed) if self.ha_pending.get(h, True)]
        if not todo:
            return
        moved: dict[str, VirtualMachine] | None = None  # the new inventory, if VMs moved
        for host_id, vms in (await list_vms_of_hosts(cs, todo)).items():
            current = self.vms if moved is None else moved
            listed = {vm.id: vm for vm in vms}
            if listed != {k: v for k, v in current.items() if v.hostid == host_id}:
                # VMs that left the host are elsewhere now: drop their stale placement.
                moved = {k: v for k, v in current.items() if v.hostid != host_id}
                moved.update(listed)
            self.ha_pending[host_id] = any(vm.haenable for vm in vms)
        if moved is not None:
            self.vms = moved  # unchanged VMs keep their VmIndex

    async def _act(
        self, cs: CloudStackClient, run_id: int, plan: Plan, counts: dict[str, int]
    ) -> str:
        """Archive the plan's duplicates through the ledger, as the lease holder only.

        Returns why archiving stopped early (empty when it did not).
        """
        from sidecar.apply import Applier

        if self.dry_run:
            self.metrics.lease(False)
            return ""
        settings, ledger = self.settings, self.ledger
        self.token = claim_lease(ledger, settings.lease_ttl)
        self.metrics.lease(self.token is not None)
        if self.token is None:
            return ""
        unresolved = ledger.unresolved_actions()
        if not plan.archive and not unresolved:
            return ""
        applier = Applier(
            cs, ledger, run_id=run_id, token=self.token, batch_size=settings.archive_batch_size,
            renew_lease=lambda: ledger.acquire_lease(settings.lease_ttl),
            should_stop=self.stopping.is_set,
        )
        if unresolved:
            # A run that died left intents: settle them (is each alert still live?) first.
            resolved = await applier.resolve(plan)
            counts["resolved"] = len(resolved.done) + len(resolved.already_gone)
        done = await applier.apply(plan, self.alerts, max_actions=settings.max_actions)
        counts.update(done.counts())
        groups = plan.group_of()
        by_family: dict[str, int] = {}
        for alert_id in [*done.archived, *done.already_gone]:
            self.alerts.pop(alert_id, None)
            family = groups[alert_id].family
            by_family[family] = by_family.get(family, 0) + 1
        for family, n in by_family.items():
            self.metrics.archived(family, n)
        if done.archived:
            log.info("archived %d duplicate alerts (%s)", len(done.archived),
                     ", ".join(f"{n} {f}" for f, n in sorted(by_family.items())))
        if done.lost_lease:
            self.token = None
        return done.error

    def prune(self) -> None:
        """Drop observations past their retention (decisions and actions are kept)."""
        cutoff = datetime.now(UTC) - timedelta(days=self.settings.observation_retention_days)
        try:
            removed = self.ledger.prune_observations(cutoff)
            self._history = None  # it may hold pruned transitions
        except UserError as exc:
            log.error("pruning old observations failed: %s", exc)
            return
        if removed:
            log.info("pruned %d old observations", removed)


# -- the scheduler and signals --------------------------------------------------------------


def _ignore(_signum: int, _frame: Any) -> None:
    """Python-level handler: the wake-up fd carries the signal to the watcher thread."""


class SignalWatcher:
    """Turns SIGTERM/SIGINT into a call of ``on_signal`` on a thread of its own.

    A signal handler runs between two bytecodes of the main thread, possibly while it holds a
    lock the scheduler or logging needs; stopping the scheduler from there can deadlock. The
    C-level handler writes the signal number to a socket (``signal.set_wakeup_fd``) and this
    thread does the work.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, on_signal: Callable[[int], None]) -> None:
        self._on_signal = on_signal
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._old = {s: signal.signal(s, _ignore) for s in self.SIGNALS}
        self._thread = threading.Thread(target=self._run, name="signal-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        wanted = {int(s) for s in self.SIGNALS}
        while True:
            try:
                data = self._reader.recv(64)
            except OSError:
                return
            if not data:
                return
            for number in data:
                if number in wanted:
                    self._on_signal(number)

    def close(self) -> None:
        """Restore the previous handlers and stop the thread."""
        signal.set_wakeup_fd(self._old_fd)
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._writer.close()
        self._thread.join(timeout=5)
        self._reader.close()


def serve(service: Service, *, notifier: Notifier) -> int:
    """Run cycles on a BlockingScheduler until SIGTERM/SIGINT; returns the exit code."""
    from apscheduler.events import (
        EVENT_JOB_ERROR,
        EVENT_JOB_MAX_INSTANCES,
        EVENT_JOB_MISSED,
        EVENT_SCHEDULER_STARTED,
    )
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.base import SchedulerNotRunningError
    from apscheduler.schedulers.blocking import BlockingScheduler

    settings = service.settings
    scheduler = BlockingScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=2)},
        job_defaults={"coalesce": True, "max_instances": 1,
                      "misfire_grace_time": int(settings.misfire_grace_time)},
        timezone="UTC",
    )

    def cycle_job() -> None:
        if service.stopping.is_set():
            return
        result = service.run_cycle()
        notifier.status(("ok: " if result.ok else "failed: ") + result.message)
        # Ping only after a cycle completes (ok or not): a hung cycle must trip the watchdog.
        notifier.watchdog()

    scheduler.add_job(
        cycle_job, "interval", seconds=settings.poll_interval,
        jitter=settings.poll_interval * settings.poll_jitter, id="cycle",
        next_run_time=datetime.now(UTC), replace_existing=True,
    )
    scheduler.add_job(service.prune, "interval", hours=6, id="prune", replace_existing=True)

    started = threading.Event()

    def on_event(event: Any) -> None:
        if event.code == EVENT_SCHEDULER_STARTED:
            started.set()
            return
        log.warning("scheduler event %s for job %s", event.code, getattr(event, "job_id", "?"))

    scheduler.add_listener(
        on_event,
        EVENT_SCHEDULER_STARTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES,
    )

    def on_signal(signum: int) -> None:
        if service.stopping.is_set():
            return
        service.stopping.set()
        log.info("received %s; finishing the running cycle", signal.Signals(signum).name)
        notifier.stopping("stopping: finishing the running cycle")
        started.wait()
        try:
            # Joins the running cycle (it stops between archive batches and is bounded by
            # its deadline), then start() returns on the main thread.
            scheduler.shutdown(wait=True)
        except SchedulerNotRunningError:
            pass

    watcher = SignalWatcher(on_signal)
    # Everything loaded so far (modules, settings, the client) lives as long as the process:
    # keep it out of the cyclic GC's full collections, which otherwise land in a quiet cycle
    # every few dozen cycles and double its CPU.
    gc.collect()
    gc.freeze()
    try:
        scheduler.start()
    finally:
        watcher.close()
    log.info("stopped")
    return 0


def run_command(
    config: Path | None = typer.Option(None, "--config", help="Sidecar TOML settings file."),
    region: str | None = typer.Option(None, "--region", help="cloudstack.ini section."),
    ledger_url: str | None = typer.Option(None, "--ledger-url", help="Ledger database URL."),
    dry_run: bool | None = typer.Option(
        None, "--dry-run/--apply", help="Observe and plan only (default: settings dry_run)."
    ),
    once: bool = typer.Option(False, "--once", help="Run one cycle and exit (for timers)."),
    metrics_address: str | None = typer.Option(
        None, "--metrics-address", help="Serve Prometheus metrics, e.g. 127.0.0.1:9465."
    ),
    log_format: str | None = typer.Option(None, "--log-format", help="text or json."),
    log_level: str | None = typer.Option(None, "--log-level", help="DEBUG, INFO, WARNING, ERROR."),
    poll_interval: float | None = typer.Option(None, "--interval", help="Seconds between cycles."),
) -> None:
    """Run the sidecar service: poll, reconcile and archive duplicates every interval."""
    from sidecar.logs import setup_logging
    from sidecar.metrics import Metrics

    try:
        faulthandler.enable()  # a watchdog SIGABRT then dumps every thread's stack to the journal
    except (AttributeError, ValueError, OSError):
        pass  # stderr is not a file (embedded use): no dump, nothing else changes
    ctx = load_context(config, region=region, overrides={
        "ledger_url": ledger_url, "dry_run": dry_run, "metrics_address": metrics_address,
        "log_format": log_format, "log_level": log_level, "poll_interval": poll_interval,
    })
    settings = ctx.settings
    setup_logging(settings.log_level, settings.log_format)
    # Alembic narrates every ledger migration check at INFO: one line per event is ours.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    notifier = Notifier()
    metrics = Metrics()
    server = metrics.start_server(settings.metrics_address) if settings.metrics_address else None
    service: Service | None = None
    try:
        service = Service(ctx, dry_run=settings.dry_run, metrics=metrics)  # opens the ledger
        version = asyncio.run(service.verify())
        log.info("cloudstack-sidecar %s started: CloudStack %s at %s, ledger %s, %s%s",
                 __version__, version, ctx.cloudstack.endpoint, service.ledger.display_url,
                 "dry run" if settings.dry_run else "acting",
                 f", metrics on {server.url}" if server is not None else "")
        notifier.ready(f"CloudStack {version}; first cycle starting")
        if once:
            result = service.run_cycle()
            notifier.status(("ok: " if result.ok else "failed: ") + result.message)
            if not result.ok:
                raise UserError(result.message, exit_code=result.exit_code or 1)
            code = 0
        else:
            code = serve(service, notifier=notifier)
    finally:
        if service is not None:
            service.close()
        if server is not None:
            server.shutdown()
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add the ``run`` command."""
    app.command("run")(run_command)
