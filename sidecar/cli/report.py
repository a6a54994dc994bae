"""``cloudstack-sidecar report``: what the service or cleanup would do now, and why (dry run)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console

from sidecar.cli.options import parse_families, require_format
from sidecar.cli.render import FORMATS, VIEWS, render_hosts, render_plan
from sidecar.ops.context import load_context
from sidecar.support.errors import UserError

#: Exit code when duplicates were found (for cron jobs and monitoring checks).
EXIT_DUPLICATES = 3
#: The plan's formats, and a page for people (``report`` only: cleanup prints no report).
REPORT_FORMATS = (*FORMATS, "html")


def report_command(
    fmt: str = typer.Option(
        "table", "--format", "-f",
        help="table, json, csv, markdown or html (one self-contained page, always every view).",
    ),
    view: str = typer.Option(
        "all", "--view", help="all, or hosts: each failed host's failures and duplicate HA "
        "rounds over the whole history."
    ),
    family: list[str] = typer.Option(
        [], "--family", help="Only these families, e.g. host-is-down (repeatable); default all."
    ),
    config: Path | None = typer.Option(None, "--config", help="Sidecar TOML settings file."),
    region: str | None = typer.Option(None, "--region", help="cloudstack.ini section."),
    ledger_url: str | None = typer.Option(None, "--ledger-url", help="Ledger database URL."),
) -> None:
    """Show duplicate groups and HA incidents without changing anything (exit 3 if any)."""
    require_format(fmt, REPORT_FORMATS)
    if view not in VIEWS:
        raise UserError(f"unknown view {view!r}: choose one of {', '.join(VIEWS)}")
    families = parse_families(family)
    from sidecar.ops.report import gather_plan, gather_report  # SQLAlchemy: not for --help

    ctx = load_context(config, region=region, overrides={"ledger_url": ledger_url})
    console = Console(soft_wrap=fmt != "table")
    if fmt == "html":
        from sidecar.cli.html import plan_html  # only this format draws

        plan, times = asyncio.run(gather_report(ctx, families=families))
        console.file.write(plan_html(plan, times))
    else:
        plan, _ = asyncio.run(gather_plan(ctx, families=families))
        (render_hosts if view == "hosts" else render_plan)(plan, fmt, console)
    if plan.archive:
        raise typer.Exit(EXIT_DUPLICATES)


def register(app: typer.Typer) -> None:
    """Add the ``report`` command."""
    app.command("report")(report_command)
