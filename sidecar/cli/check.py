"""``cloudstack-sidecar check``: can the sidecar work against this CloudStack, as configured?

The checks are ``sidecar.ops.check.run_check``; this module prints them.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sidecar.cli.options import require_format
from sidecar.cloudstack.config import load_cloudstack_config
from sidecar.cloudstack.errors import describe_skew
from sidecar.model.constants import SIDECAR_APIS
from sidecar.ops.check import CheckResult, run_check
from sidecar.ops.context import setup_command_logging
from sidecar.support.errors import UserError
from sidecar.support.settings import load_settings

#: Skew worth a warning: signed requests tolerate it, but logs and alert times disagree.
SKEW_WARN_SECONDS = 30.0
FORMATS = ("table", "json")
#: Local wall clock the skew is measured against (a seam for tests).
_wall_clock: Callable[[], float] = time.time


def _status(ok: bool | None, warn: bool = False) -> str:
    if ok is None:
        return "[yellow]?[/]"
    if ok and not warn:
        return "[green]OK[/]"
    return "[yellow]WARN[/]" if ok else "[red]FAIL[/]"


def render_table(result: CheckResult, console: Console) -> None:
    """Print the result as a rich table."""
    # Everything from the ini file or the server is data: ``[cloudstack]`` is not markup.
    table = Table(title=f"cloudstack-sidecar check ({escape(result.region)})", show_lines=False)
    table.add_column("check")
    table.add_column("result", overflow="fold")
    table.add_column("", justify="center")
    table.add_row("endpoint", escape(result.endpoint), _status(result.reachable))
    table.add_row("credentials", escape(result.source), _status(result.credentials_ok))
    table.add_row("CloudStack version", escape(result.version or "?"),
                  _status(result.version is not None))
    if result.affected is None:
        affected = "unknown version"
    elif result.affected:
        affected = "yes: duplicate HA alerts expected (fixed in 4.19.3, 4.20.1, 4.21.0)"
    else:
        affected = "no (the sidecar still merges leftovers of earlier releases)"
    table.add_row("affected by #10367", affected, _status(result.affected is not None))
    if result.clock_skew is None:
        skew = "unknown (no signed probe answered, no Date header)"
    else:
        how = (
            f"{result.skew_probes} signed calls"
            if result.skew_source == "signature"
            else "the Date header"
        )
        text = describe_skew(result.clock_skew, at_least=result.skew_at_least)
        skew = f"{result.clock_skew:+.0f} s ({text}; measured by {how})"
    table.add_row(
        "clock skew",
        escape(skew),
        _status(
            None if result.clock_skew is None else result.skew_ok,
            warn=result.clock_skew is not None and abs(result.clock_skew) > SKEW_WARN_SECONDS,
        ),
    )
    if result.apis_checked and not result.missing_apis:
        apis = f"all {len(SIDECAR_APIS)} allowed"
    elif result.missing_apis:
        apis = "not allowed: " + escape(", ".join(result.missing_apis))
    else:
        apis = "not checked"
    table.add_row(
        "API permissions",
        apis,
        _status(result.apis_checked and not result.missing_apis if result.apis_checked else None),
    )
    if result.missing_optional_apis:
        table.add_row(
            "optional APIs",
            "not allowed: " + escape(", ".join(result.missing_optional_apis))
            + " (CloudStack's ping settings come from the sidecar's settings instead)",
            _status(True, warn=True),
        )
    console.print(table)
    verdict = "[green]all checks passed[/]" if result.ok else "[red]problems found[/]"
    console.print(verdict)


def check_command(
    region: str | None = typer.Option(None, "--region", help="cloudstack.ini section (region)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table or json."),
    config: Path | None = typer.Option(None, "--config", help="Sidecar TOML settings file."),
) -> None:
    """Check the endpoint, credentials, version, clock skew and API permissions (exit 0 = OK)."""
    try:
        require_format(fmt, FORMATS)
        settings = load_settings(config)
        setup_command_logging(settings)
        cs_config = load_cloudstack_config(region)
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    result = asyncio.run(run_check(cs_config, settings, wall_clock=_wall_clock))
    if result.error is None:
        from sidecar.ledger import Ledger  # SQLAlchemy and Alembic: only now

        try:
            # The sidecar cannot work without its ledger: open (and migrate) it as `run` does.
            Ledger(settings.resolved_ledger_url(), holder="check",
                   statement_timeout=settings.ledger_statement_timeout).close()
        except UserError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
    if fmt == "json":
        typer.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
    elif result.error is not None:
        # One line, no table: the message says what is wrong and what to check.
        typer.echo(f"error: {result.error}", err=True)
    else:
        render_table(result, Console(file=sys.stdout, soft_wrap=False))
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    """Add the ``check`` command."""
    app.command("check")(check_command)


__all__ = ["check_command", "register", "render_table"]
