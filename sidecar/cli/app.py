"""The ``cloudstack-sidecar`` command line: one typer app; each command lives in its own module.

Each module exposes ``register(app)``; user errors become one line on stderr and an exit code.
"""

from __future__ import annotations

import importlib
import sys

import typer

from sidecar import __version__
from sidecar.cloudstack.errors import CloudStackError
from sidecar.support.errors import EXIT_CLOUDSTACK, UserError

app = typer.Typer(
    name="cloudstack-sidecar",
    help="Find, merge and archive the duplicate HA alerts of Apache CloudStack "
    "4.19.0-4.19.2 / 4.20.0 (apache/cloudstack#10367), with a ledger of every action.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

#: Modules that add commands (each has ``register(app)``). Each imports the heavy layers
#: (SQLAlchemy, the simulator) inside its command functions, so ``--help`` stays fast.
COMMAND_MODULES = (
    "sidecar.cli.check",
    "sidecar.cli.report",
    "sidecar.cli.cleanup",
    "sidecar.cli.service",
    "sidecar.cli.demo",
    "sidecar.cli.role",
    "sidecar.cli.simulator",
    "sidecar.cli.ledger",
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
    # A module that fails to import is a broken install: let the error surface.
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user and API errors into one line and an exit code."""
    try:
        app(args=argv, prog_name="cloudstack-sidecar")
    except UserError as exc:
        # One line, no traceback: these messages say what is wrong and how to fix it.
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except CloudStackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CLOUDSTACK)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
