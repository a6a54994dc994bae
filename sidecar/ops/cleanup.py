"""One-shot archiving of historical duplicate alerts (the ``cleanup`` command's use case).

Dry run unless ``apply``. Each pass lists the HA alert names completely, plans, settles the
intents an interrupted run left (from the listing), archives in batches (write-ahead in the
ledger) and checks whether the live counts now match; pages shift under a lister while others
archive, delete or purge alerts, so any mismatch starts another pass (at most ``MAX_PASSES``).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sidecar.cloudstack import fanout
from sidecar.cloudstack.listing import (
    ELIGIBLE_NAMES,
    AlertListing,
    list_alerts_by_name,
    server_now,
)
from sidecar.ledger.lease import claim_lease
from sidecar.model.plan import Plan, Snapshot
from sidecar.ops.context import Context, require_supported
from sidecar.ops.inventory import take_inventory
from sidecar.ops.policy import policy_for
from sidecar.ops.progress import Progress
from sidecar.reconcile import Policy, build_plan
from sidecar.support.errors import UserError
from sidecar.support.gcpause import gc_paused

if TYPE_CHECKING:
    from sidecar.cloudstack.client import CloudStackClient
    from sidecar.ledger import Ledger

log = logging.getLogger(__name__)

#: Passes before giving up on convergence (each pass lists again).
MAX_PASSES = 4

def restrict(
    plan: Plan,
    *,
    since: datetime | None,
    until: datetime | None,
    sent: Mapping[str, datetime | None],
) -> Plan:
    """Keep only duplicates whose own ``sent`` lies in [since, until].

    Canonicals are never archived whatever the window; a group keeps its canonical and loses
    the duplicates outside the window; groups left without duplicates are dropped.
    """
    if since is None and until is None:
        return plan

    def inside(alert_id: str) -> bool:
        when = sent.get(alert_id)
        return (
            when is not None
            and (since is None or when >= since)
            and (until is None or when <= until)
        )

    groups = []
    for group in plan.groups:
        kept = tuple(d for d in group.duplicates if inside(d))
        if kept == group.duplicates:
            groups.append(group)
        elif kept:
            groups.append(dataclasses.replace(group, duplicates=kept))
    archive = tuple(sorted(d for g in groups for d in g.duplicates))
    summary = dataclasses.replace(plan.summary, groups=len(groups), duplicates=len(archive))
    return dataclasses.replace(plan, groups=tuple(groups), archive=archive, summary=summary)


async def live_counts(cs: CloudStackClient, names: Iterable[str]) -> dict[str, int]:
    """The live count of each alert name, one cheap call each (pagesize 1)."""

    async def one(name: str) -> tuple[str, int]:
        body = await cs.request("listAlerts", {"name": name, "page": 1, "pagesize": 1})
        return name, int(body.get("count", 0))

    return dict(await fanout.gather(*(one(n) for n in names)))


@dataclass
class CleanupResult:
    """What a cleanup found (its first plan) and did (totals over every pass)."""

    plan: Plan
    totals: dict[str, int] = field(default_factory=dict)
    problem: str = ""
    """Why the run is incomplete, for the one-line message (empty when complete)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per phase over every pass (listing, planning, archiving, ledger)."""

    @property
    def complete(self) -> bool:
        """Nothing left that a rerun would do (a --max-actions cap is not a problem)."""
        return not self.problem


def _lap(timings: dict[str, float], phase: str, since: float) -> float:
    """Add the seconds since ``since`` to ``phase``; return now."""
    now = time.perf_counter()
    timings[phase] = round(timings.get(phase, 0.0) + now - since, 3)
    return now


def _new_totals() -> dict[str, int]:
    return {
        "found": 0, "archived": 0, "already_gone": 0, "failed": 0, "unsettled": 0,
        "capped": 0, "resolved": 0, "superseded": 0, "passes": 0, "archive_calls": 0,
        "pages": 0,
    }


async def run_cleanup(
    ctx: Context,
    *,
    apply: bool,
    families: frozenset[str] | None,
    since: datetime | None,
    until: datetime | None,
    max_actions: int | None,
    reporter: Progress,
    should_stop: Callable[[], bool] | None = None,
) -> CleanupResult:
    """The whole cleanup: list, plan, settle earlier intents, archive, until converged."""
    settings = ctx.settings
    policy = policy_for(settings, families)
    ledger: Ledger = ctx.ledger()
    totals = _new_totals()
    result: CleanupResult | None = None
    run_id: int | None = None
    outcome_label = "error"
    try:
        async with ctx.client() as cs:
            version = await cs.version()
            require_supported(version)
            run_id = ledger.start_run("cleanup", "apply" if apply else "dry-run",
                                      endpoint=ctx.cloudstack.endpoint, cloudstack_version=version)
            token: int | None = None
            if apply:
                token = claim_lease(ledger, settings.lease_ttl)
                if token is None:
                    raise UserError(
                        "another sidecar holds the ledger lease and is acting: stop it or wait "
                        f"{settings.lease_ttl:g} s for the lease to expire, then run again"
                    )
            try:
                result = await _passes(cs, ctx, ledger, run_id, token, policy, totals,
                                       since=since, until=until, max_actions=max_actions,
                                       reporter=reporter, should_stop=should_stop)
            finally:
                if token is not None:
                    ledger.release_lease()
        outcome_label = "ok" if result.complete else "incomplete"
    finally:
        if run_id is not None:
            ledger.finish_run(run_id, outcome_label, totals)
        ledger.close()
    assert result is not None
    return result


async def _passes(
    cs: CloudStackClient,
    ctx: Context,
    ledger: Ledger,
    run_id: int,
    token: int | None,
    policy: Policy,
    totals: dict[str, int],
    *,
    since: datetime | None,
    until: datetime | None,
    max_actions: int | None,
    reporter: Progress,
    should_stop: Callable[[], bool] | None,
) -> CleanupResult:
    settings = ctx.settings
    remaining = max_actions
    inventory = await take_inventory(cs, ledger, settings)
    policy = dataclasses.replace(policy, failure_detection=inventory.detection)
    first: Plan | None = None
    problem = ""
    timings: dict[str, float] = {}
    for _ in range(MAX_PASSES):
        totals["passes"] += 1
        clock = time.perf_counter()
        with reporter.step("listing alert pages") as step:
            listing: AlertListing = await list_alerts_by_name(
                cs, ELIGIBLE_NAMES, on_page=lambda _n: step.advance(1)
            )
        totals["pages"] += listing.pages
        clock = _lap(timings, "listing", clock)
        with reporter.step("planning", total=1) as step:
            snapshot = Snapshot(taken_at=server_now(cs), alerts=listing.alerts,
                                hosts=inventory.hosts, vms=inventory.vms,
                                host_history=ledger.host_history(),
                                vm_placements=inventory.placements)
            with gc_paused():
                plan = build_plan(snapshot, policy)
            if since is not None or until is not None:
                sent = {a.id: a.sent for a in listing.alerts}
                plan = restrict(plan, since=since, until=until, sent=sent)
                del sent
            del snapshot
            step.advance(1)
        clock = _lap(timings, "planning", clock)
        if first is None:
            first = plan
            totals["found"] = len(plan.archive)
        if token is None:
            break  # dry run: the plan is the answer
        from sidecar.ops.applier import Applier  # imports SQLAlchemy: only when acting

        applier = Applier(
            cs, ledger, run_id=run_id, token=token, batch_size=settings.archive_batch_size,
            renew_lease=lambda: ledger.acquire_lease(settings.lease_ttl),
            should_stop=should_stop, record_groups=True,
        )
        # Intents of an interrupted run first: a complete listing says which alerts are gone.
        resolved = await applier.resolve(plan, listing.lazy_ids() if listing.consistent else None)
        totals["resolved"] += len(resolved.done) + len(resolved.already_gone)
        totals["superseded"] += len(resolved.superseded)
        if not plan.archive:
            problem = ""
            break
        if remaining is not None and remaining <= 0:
            totals["capped"] = len(plan.archive)
            break
        # Merge groups go on record with their intents, batch by batch (record_groups).
        ledger.record_plan(run_id, plan, groups=False)
        wanted = set(plan.archive)
        alerts = {a.id: a for a in listing.alerts if a.id in wanted}
        del wanted
        # Only the duplicates are needed from here on: free the rest of the listing (most of
        # a million alerts) before the ledger work needs memory. Counts per name stay.
        listing.alerts = []
        cap = len(plan.archive) if remaining is None else min(remaining, len(plan.archive))
        with reporter.step("archiving duplicates", total=cap) as step:
            applier.on_progress = step.advance
            # The plan and the duplicates stay alive until the end of the pass: keep them out
            # of the cyclic GC, whose full collections would otherwise walk them again and
            # again while the ledger writes (1M alerts: 10 collections of 0.6 s each).
            gc.collect()
            gc.freeze()
            try:
                done = await applier.apply(plan, alerts, max_actions=remaining)
            finally:
                gc.unfreeze()
        clock = _lap(timings, "archiving", clock)
        timings["ledger_during_archiving"] = round(
            timings.get("ledger_during_archiving", 0.0) + applier.ledger_seconds, 3)
        for key in ("archived", "already_gone", "failed", "unsettled"):
            totals[key] += len(getattr(done, key))
        totals["capped"] = done.capped
        totals["archive_calls"] += done.api_calls
        if remaining is not None:
            remaining -= done.settled
        if done.lost_lease:
            problem = "lost the ledger lease to another sidecar; it continues the work"
            break
        if done.stopped:
            problem = "stopped before the end; run the cleanup again to finish"
            break
        if done.capped:
            break
        if done.error:
            problem = f"archiving failed ({done.error}); run the cleanup again to finish"
            continue  # the next pass settles the unanswered batch from a fresh listing
        # Converged when the listing was complete, every planned alert was settled and each
        # live count dropped by exactly that: a fresh listing would plan nothing (archiving
        # duplicates never creates new ones). Otherwise pages shifted under us: list again.
        by_name: dict[str, int] = {}
        for alert_id in (*done.archived, *done.already_gone):
            name = alerts[alert_id].name
            by_name[name] = by_name.get(name, 0) + 1
        live = await live_counts(cs, ELIGIBLE_NAMES)
        expected = {n: listing.counts.get(n, 0) - by_name.get(n, 0) for n in ELIGIBLE_NAMES}
        if listing.consistent and live == expected and not done.failed:
            problem = ""
            break
        problem = f"still changing after {MAX_PASSES} passes; run the cleanup again"
    assert first is not None
    if totals["failed"] and not problem:
        problem = (f"{totals['failed']} archive actions failed (see `cloudstack-sidecar ledger "
                   "show --kind archive`); run the cleanup again to retry them")
    return CleanupResult(plan=first, totals=totals, problem=problem, timings=timings)
