"""``cloudstack-sidecar check``: can the sidecar work against this CloudStack, as configured?

Reaches the endpoint, proves the credentials with a signed call (listCapabilities), reports
the version, whether it carries the duplicate-HA defect (apache/cloudstack#10367), the clock
skew, and whether the account may call every API the sidecar uses (listApis lists only the
allowed ones).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from sidecar.cloudstack.config import CloudStackConfig, load_cloudstack_config
from sidecar.cloudstack.errors import (
    AuthenticationError,
    CloudStackError,
    CommandNotAllowedError,
    NotJsonError,
    TransportError,
    describe_skew,
)
from sidecar.constants import AFFECTED_RELEASES, SIDECAR_APIS
from sidecar.errors import UserError
from sidecar.runtime import require_supported, setup_command_logging
from sidecar.settings import Settings, load_settings

if TYPE_CHECKING:
    import httpx

#: Exit code when the check ran but found a problem (missing APIs, clock skew).
EXIT_PROBLEMS = 1
#: Skew worth a warning: signed requests tolerate it, but logs and alert times disagree.
SKEW_WARN_SECONDS = 30.0
FORMATS = ("table", "json")
#: Local wall clock the skew is measured against (a seam for tests).
_wall_clock: Callable[[], float] = time.time


@dataclass
class CheckResult:
    """Everything ``check`` found out; ``ok`` only when the sidecar can do its work."""

    endpoint: str
    region: str
    source: str
    reachable: bool = False
    credentials_ok: bool = False
    version: str | None = None
    affected: bool | None = None
    clock_skew: float | None = None
    skew_limit: float = 300.0
    allowed_apis: list[str] = field(default_factory=list)
    missing_apis: list[str] = field(default_factory=list)
    apis_checked: bool = False
    error: str | None = None
    exit_code: int = 0

    @property
    def skew_ok(self) -> bool:
        """Unknown or within half the signed-request lifetime."""
        return self.clock_skew is None or abs(self.clock_skew) <= self.skew_limit

    @property
    def ok(self) -> bool:
        """Reached, authenticated, APIs allowed, clock close enough."""
        return (
            self.error is None
            and self.reachable
            and self.credentials_ok
            and self.apis_checked
            and not self.missing_apis
            and self.skew_ok
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("exit_code")
        data["clock_skew"] = None if self.clock_skew is None else round(self.clock_skew, 1)
        data["skew_ok"] = self.skew_ok
        data["ok"] = self.ok
        return data


def is_affected(version: str | None) -> bool | None:
    """True for 4.19.0-4.19.2 and 4.20.0 (any fourth component), None when unknown."""
    if not version or version == "unknown":
        return None
    parts = version.split("-")[0].split(".")
    if len(parts) < 3 or not all(p.isdigit() for p in parts[:3]):
        return None
    return ".".join(parts[:3]) in AFFECTED_RELEASES


async def run_check(
    config: CloudStackConfig,
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    wall_clock: Callable[[], float] | None = None,
) -> CheckResult:
    """Run every check against the endpoint; errors are recorded, not raised."""
    from sidecar.cloudstack.client import CloudStackClient

    result = CheckResult(
        endpoint=config.endpoint,
        region=config.region,
        source=config.source,
        skew_limit=config.expiration / 2,
    )
    extra: dict[str, Any] = {} if wall_clock is None else {"wall_clock": wall_clock}
    async with CloudStackClient(config, settings=settings, transport=transport, **extra) as cs:
        try:
            result.version = await cs.version()
            result.reachable = result.credentials_ok = True
        except (TransportError, NotJsonError) as exc:
            result.error, result.exit_code = str(exc), exc.exit_code
            return result
        except AuthenticationError as exc:
            result.reachable = True
            result.clock_skew = cs.clock_skew
            result.error, result.exit_code = str(exc), exc.exit_code
            return result
        except CommandNotAllowedError:
            # Authenticated (the role check comes after the signature check), just not allowed.
            result.reachable = result.credentials_ok = True
        except CloudStackError as exc:
            result.reachable = True
            result.error, result.exit_code = str(exc), exc.exit_code
            return result
        result.clock_skew = cs.clock_skew
        if result.version is not None:
            try:
                require_supported(result.version)
            except UserError as exc:
                result.error, result.exit_code = str(exc), exc.exit_code
                return result
        result.affected = is_affected(result.version)
        try:
            allowed = await cs.list_api_names()
        except CommandNotAllowedError:
            allowed = set()
            result.missing_apis = ["listApis"]
        except CloudStackError as exc:
            result.error, result.exit_code = str(exc), exc.exit_code
            return result
        else:
            result.apis_checked = True
            result.allowed_apis = sorted(a for a in SIDECAR_APIS if a in allowed)
            result.missing_apis = [a for a in SIDECAR_APIS if a not in allowed]
    if not result.ok:
        result.exit_code = EXIT_PROBLEMS
    return result


def _status(ok: bool | None, warn: bool = False) -> str:
    if ok is None:
        return "[yellow]?[/]"
    if ok and not warn:
        return "[green]OK[/]"
    return "[yellow]WARN[/]" if ok else "[red]FAIL[/]"


def render_table(result: CheckResult, console: Console) -> None:
    """Print the result as a rich table."""
    table = Table(title=f"cloudstack-sidecar check ({result.region})", show_lines=False)
    table.add_column("check")
    table.add_column("result", overflow="fold")
    table.add_column("", justify="center")
    table.add_row("endpoint", result.endpoint, _status(result.reachable))
    table.add_row("credentials", result.source, _status(result.credentials_ok))
    table.add_row("CloudStack version", result.version or "?", _status(result.version is not None))
    if result.affected is None:
        affected = "unknown version"
    elif result.affected:
        affected = "yes: duplicate HA alerts expected (fixed in 4.19.3, 4.20.1, 4.21.0)"
    else:
        affected = "no (the sidecar still merges leftovers of earlier releases)"
    table.add_row("affected by #10367", affected, _status(result.affected is not None))
    if result.clock_skew is None:
        skew = "unknown (no Date header)"
    else:
        skew = f"{result.clock_skew:+.0f} s ({describe_skew(result.clock_skew)})"
    table.add_row(
        "clock skew",
        skew,
        _status(
            None if result.clock_skew is None else result.skew_ok,
            warn=result.clock_skew is not None and abs(result.clock_skew) > SKEW_WARN_SECONDS,
        ),
    )
    if result.apis_checked and not result.missing_apis:
        apis = f"all {len(SIDECAR_APIS)} allowed"
    elif result.missing_apis:
        apis = "not allowed: " + ", ".join(result.missing_apis)
    else:
        apis = "not checked"
    table.add_row(
        "API permissions",
        apis,
        _status(result.apis_checked and not result.missing_apis if result.apis_checked else None),
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
        if fmt not in FORMATS:
            raise UserError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
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
            Ledger(settings.resolved_ledger_url(), holder="check").close()
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


__all__ = ["CheckResult", "check_command", "is_affected", "register", "run_check"]
