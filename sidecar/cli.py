"""The ``cloudstack-sidecar`` command line: one typer app; each command lives in its own module.

Each module exposes ``register(app)``; user errors become one line on stderr and an exit code.
"""

from __future__ import annotations

import importlib
import sys

import typer

from sidecar import __version__
from sidecar.errors import UserError

app = typer.Typer(
    name="cloudstack-sidecar",
    help="Find, merge and archive the duplicate HA alerts of Apache CloudStack "
    "4.19.0-4.19.2 / 4.20.0 (apache/cloudstack#10367), with a ledger of every action.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

#: Modules that add commands; imported lazily so that ``--help`` stays fast.
COMMAND_MODULES = (
    "sidecar.check",
    "sidecar.report",
    "sidecar.cleanup",
    "sidecar.service",
    "sidecar.demo",
    "sidecar.role",
    "sidecar.simulator.cli",
    "sidecar.ledger.cli",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cloudstack-sidecar {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Find, merge and archive duplicate CloudStack HA alerts."""


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # command not built yet
            raise
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user and API errors into one line and an exit code."""
    from sidecar.cloudstack.errors import CloudStackError

    try:
        app(args=argv, prog_name="cloudstack-sidecar")
    except (UserError, CloudStackError) as exc:
        # One line, no traceback: these messages say what is wrong and how to fix it.
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
