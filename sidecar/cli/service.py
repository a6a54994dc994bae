"""``cloudstack-sidecar run``: the systemd service (Type=notify) polling and reconciling.

The service itself is ``sidecar.ops.service``; this module reads the flags and sets up logging.
"""

from __future__ import annotations

import faulthandler
import logging
from pathlib import Path

import typer

from sidecar.ops.context import load_context
from sidecar.support.logs import setup_logging


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
    from sidecar.ops.service.scheduler import run_service  # the ledger's SQLAlchemy: not for --help

    try:
        faulthandler.enable()  # a watchdog SIGABRT then dumps every thread's stack to the journal
    except (AttributeError, ValueError, OSError):
        pass  # stderr is not a file (embedded use): no dump, nothing else changes
    ctx = load_context(config, region=region, overrides={
        "ledger_url": ledger_url, "dry_run": dry_run, "metrics_address": metrics_address,
        "log_format": log_format, "log_level": log_level, "poll_interval": poll_interval,
    })
    setup_logging(ctx.settings.log_level, ctx.settings.log_format)
    # Alembic narrates every ledger migration check at INFO: one line per event is ours.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    raise typer.Exit(run_service(ctx, once=once))


def register(app: typer.Typer) -> None:
    """Add the ``run`` command."""
    app.command("run")(run_command)
