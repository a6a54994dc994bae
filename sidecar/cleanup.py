"""``cloudstack-sidecar cleanup``: one-shot archiving of historical duplicate alerts.

Dry run unless ``--apply``. Each pass lists the HA alert names completely, plans, settles the
intents an interrupted run left (from the listing), archives in batches (write-ahead in the
ledger) and checks whether the live counts now match; pages shift under a lister while others
archive, delete or purge alerts, so any mismatch starts another pass (at most ``MAX_PASSES``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from sidecar.cloudstack import fanout
from sidecar.cloudstack.models import parse_cs_date
from sidecar.errors import UserError
from sidecar.progress import Reporter
from sidecar.reconcile import FAMILIES, Policy, build_plan
from sidecar.reconcile.model import Plan, Snapshot
from sidecar.render import FORMATS, render_plan, write_plan_json
from sidecar.runtime import Context, claim_lease, load_context, require_supported
from sidecar.settings import Settings
from sidecar.snapshot import (
    ELIGIBLE_NAMES,
    AlertListing,
    list_alerts_by_name,
    list_all_vms,
    list_hosts,
    server_now,
)

if TYPE_CHECKING:
    from sidecar.cloudstack.client import CloudStackClient
    from sidecar.ledger import Ledger

log = logging.getLogger(__name__)

#: Passes before giving up on convergence (each pass lists again).
MAX_PASSES = 4

#: Exit code when the cleanup ran but left work undone (failed actions, a lost lease, passes
#: exhausted): a rerun picks it up.
EXIT_INCOMPLETE = 1


def parse_families(values: Iterable[str]) -> frozenset[str] | None:
    """Validate ``--family`` values (``host-is-down`` or ``host_is_down``, comma lists too)."""
    chosen = {
        v.strip().lower().replace("-", "_")
        for raw in values
        for v in raw.split(",")
        if v.strip()
    }
    if not chosen:
        return None
    unknown = sorted(chosen - set(FAMILIES))
    if unknown:
        names = ", ".join(n.replace("_", "-") for n in sorted(FAMILIES))
        raise UserError(f"unknown family {', '.join(unknown)}: choose from {names}")
    return frozenset(chosen)


def policy_for(settings: Settings, families: frozenset[str] | None = None) -> Policy:
    """The reconciler policy from settings, optionally limited to some families."""
    policy = Policy.from_settings(settings)
    if families is not None:
        policy = dataclasses.replace(policy, families=families)
    return policy


def parse_when(value: str | None, flag: str) -> datetime | None:
    """Parse ``--since/--until``: ISO-8601 with an offset (``2025-01-31T00:00:00+00:00``)."""
    if not value:
        return None
    parsed = parse_cs_date(value.strip())
    if parsed is None:
        raise UserError(
            f"{flag} {value!r} is not a date and time with a time zone: "
            "use e.g. 2025-01-31T00:00:00+00:00"
        )
    return parsed


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
    reporter: Reporter,
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
    reporter: Reporter,
    should_stop: Callable[[], bool] | None,
) -> CleanupResult:
    settings = ctx.settings
    remaining = max_actions
    hosts = await list_hosts(cs)
    vms = await list_all_vms(cs)
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
            snapshot = Snapshot(taken_at=server_now(cs), alerts=listing.alerts, hosts=hosts,
                                vms=vms, host_history=ledger.host_history())
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
        from sidecar.apply import Applier  # imports SQLAlchemy: only when acting

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


def summary_table(result: CleanupResult, applied: bool) -> Table:
    """The end-of-run summary."""
    totals, summary = result.totals, result.plan.summary
    table = Table(title="Cleanup summary" + ("" if applied else " (dry run)"),
                  title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    rows: list[tuple[str, int]] = [
        ("alerts scanned", summary.alerts_scanned),
        ("duplicate groups", summary.groups),
        ("duplicates found", totals.get("found", summary.duplicates)),
    ]
    if applied:
        rows += [
            ("archived", totals.get("archived", 0)),
            ("already gone (archived or deleted by others)", totals.get("already_gone", 0)),
            ("failed (retried by the next run)", totals.get("failed", 0)),
            ("unanswered (settled by the next run)", totals.get("unsettled", 0)),
            ("over --max-actions (left for the next run)", totals.get("capped", 0)),
            ("intents of an earlier run settled", totals.get("resolved", 0)),
            ("archiveAlerts calls", totals.get("archive_calls", 0)),
            ("passes", totals.get("passes", 0)),
        ]
    rows.append(("unknown format / suppressed types left alone",
                 summary.untouched_unknown + summary.untouched_suppressed))
    for label, value in rows:
        table.add_row(label, str(value))
    return table


def cleanup_command(
    apply: bool = typer.Option(False, "--apply", help="Archive the duplicates (default: dry run)."),
    since: str | None = typer.Option(
        None, "--since", help="Only duplicates sent at or after (e.g. 2025-01-31T00:00:00+00:00)."
    ),
    until: str | None = typer.Option(None, "--until", help="Only duplicates sent at or before."),
    family: list[str] = typer.Option(
        [], "--family", help="Only these families, e.g. host-is-down (repeatable)."
    ),
    max_actions: int | None = typer.Option(
        None, "--max-actions", help="Safety cap on archive actions (default from settings, 10000)."
    ),
    no_limit: bool = typer.Option(False, "--no-limit", help="No cap on archive actions."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, json, csv or markdown."),
    config: Path | None = typer.Option(None, "--config", help="Sidecar TOML settings file."),
    region: str | None = typer.Option(None, "--region", help="cloudstack.ini section."),
    ledger_url: str | None = typer.Option(None, "--ledger-url", help="Ledger database URL."),
) -> None:
    """Find duplicate HA alerts in the whole history and (with --apply) archive them."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if max_actions is not None and max_actions < 1:
        raise UserError("--max-actions must be at least 1 (or use --no-limit)")
    families = parse_families(family)
    when_from, when_to = parse_when(since, "--since"), parse_when(until, "--until")
    if when_from is not None and when_to is not None and when_from > when_to:
        raise UserError("--since is after --until: swap them")
    ctx = load_context(config, region=region, overrides={"ledger_url": ledger_url})
    cap = None if no_limit else (max_actions or ctx.settings.max_actions)
    err = Console(stderr=True)
    result = asyncio.run(run_cleanup(
        ctx, apply=apply, families=families, since=when_from, until=when_to, max_actions=cap,
        reporter=Reporter(err),
    ))
    out = Console(soft_wrap=fmt != "table")
    if fmt == "table":
        if not apply:
            render_plan(result.plan, "table", out)
        out.print(summary_table(result, apply))
    elif fmt == "json" and apply:
        # {"plan": <the Plan contract>, "totals": ..., "complete": ..., "problem": ...}
        out.file.write('{"plan": ')
        write_plan_json(result.plan, out.file)
        out.file.write(
            f',\n"totals": {json.dumps(result.totals)},\n'
            f'"timings": {json.dumps(result.timings)},\n'
            f'"complete": {json.dumps(result.complete)},\n'
            f'"problem": {json.dumps(result.problem)}}}\n'
        )
    else:
        render_plan(result.plan, fmt, out)
    if result.problem:
        err.print(f"warning: {result.problem}", markup=False, highlight=False)
        raise typer.Exit(EXIT_INCOMPLETE)


def register(app: typer.Typer) -> None:
    """Add the ``cleanup`` command."""
    app.command("cleanup")(cleanup_command)
