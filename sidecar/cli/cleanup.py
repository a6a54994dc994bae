"""``cloudstack-sidecar cleanup``: one-shot archiving of historical duplicate alerts.

Dry run unless ``--apply``; the work itself is ``sidecar.ops.cleanup.run_cleanup``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from sidecar.cli.options import parse_families, parse_when, require_format
from sidecar.cli.progress import Reporter
from sidecar.cli.render import FORMATS, render_plan, write_plan_json
from sidecar.ops.context import load_context
from sidecar.support.errors import UserError

if TYPE_CHECKING:
    from sidecar.ops.cleanup import CleanupResult

#: Exit code when the cleanup ran but left work undone (failed actions, a lost lease, passes
#: exhausted): a rerun picks it up.
EXIT_INCOMPLETE = 1


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
        ("host failures / HA incidents (whole history)", summary.ha_incidents),
        ("duplicate HA rounds (whole history)", summary.duplicate_rounds),
        ("VMs restarted more than once (whole history)", summary.vms_restarted_more_than_once),
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
    require_format(fmt, FORMATS)
    if max_actions is not None and max_actions < 1:
        raise UserError("--max-actions must be at least 1 (or use --no-limit)")
    families = parse_families(family)
    when_from, when_to = parse_when(since, "--since"), parse_when(until, "--until")
    if when_from is not None and when_to is not None and when_from > when_to:
        raise UserError("--since is after --until: swap them")
    from sidecar.ops.cleanup import run_cleanup  # the ledger's SQLAlchemy: not for --help

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
