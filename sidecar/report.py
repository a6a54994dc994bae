"""``cloudstack-sidecar report``: what the service or cleanup would do now, and why (dry run).

It reads exactly what ``cleanup`` reads (every live alert of the HA names, hosts, VMs, the
ledger's host history) and plans with the same policy, so its JSON is the plan a cleanup would
carry out. It makes no state-changing CloudStack call.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from sidecar.errors import UserError
from sidecar.render import FORMATS, render_plan
from sidecar.runtime import Context, load_context, require_supported

if TYPE_CHECKING:
    from sidecar.reconcile.model import Plan

#: Exit code when duplicates were found (for cron jobs and monitoring checks).
EXIT_DUPLICATES = 3


async def gather_plan(ctx: Context, *, families: frozenset[str] | None = None) -> tuple[Plan, str]:
    """List and plan, changing nothing in CloudStack; returns the plan and the version."""
    from sidecar.cleanup import policy_for
    from sidecar.reconcile import Snapshot, build_plan
    from sidecar.snapshot import (
        ELIGIBLE_NAMES,
        list_alerts_by_name,
        list_all_vms,
        list_hosts,
        server_now,
    )

    ledger = ctx.ledger()
    try:
        history = ledger.host_history()
        async with ctx.client() as cs:
            version = await cs.version()
            require_supported(version)
            listing = await list_alerts_by_name(cs, ELIGIBLE_NAMES)
            hosts = await list_hosts(cs)
            vms = await list_all_vms(cs)
            taken_at = server_now(cs)
        snapshot = Snapshot(
            taken_at=taken_at, alerts=listing.alerts, hosts=hosts, vms=vms, host_history=history
        )
        plan = build_plan(snapshot, policy_for(ctx.settings, families))
        # The run record is the audit trail of who looked (ledger only, never CloudStack).
        run_id = ledger.start_run(
            "report", "dry-run", endpoint=ctx.cloudstack.endpoint, cloudstack_version=version
        )
        ledger.finish_run(run_id, "ok", plan.summary.to_json_counts())
    finally:
        ledger.close()
    return plan, version


def report_command(
    fmt: str = typer.Option("table", "--format", "-f", help="table, json, csv or markdown."),
    family: list[str] = typer.Option(
        [], "--family", help="Only these families, e.g. host-is-down (repeatable); default all."
    ),
    config: Path | None = typer.Option(None, "--config", help="Sidecar TOML settings file."),
    region: str | None = typer.Option(None, "--region", help="cloudstack.ini section."),
    ledger_url: str | None = typer.Option(None, "--ledger-url", help="Ledger database URL."),
) -> None:
    """Show duplicate groups and HA incidents without changing anything (exit 3 if any)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    from sidecar.cleanup import parse_families

    families = parse_families(family)
    ctx = load_context(config, region=region, overrides={"ledger_url": ledger_url})
    plan, _ = asyncio.run(gather_plan(ctx, families=families))
    render_plan(plan, fmt, Console(soft_wrap=fmt != "table"))
    if plan.archive:
        raise typer.Exit(EXIT_DUPLICATES)


def register(app: typer.Typer) -> None:
    """Add the ``report`` command."""
    app.command("report")(report_command)
