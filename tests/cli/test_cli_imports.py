"""Starting the CLI does not import the ledger's libraries until a command opens the ledger.

SQLAlchemy, SQLModel and Alembic take about a second to import; ``--help``, ``check`` (until
it opens the ledger), ``role`` and ``simulator`` must not pay for them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

#: Libraries only the ledger needs.
LEDGER_LIBRARIES = ("sqlalchemy", "sqlmodel", "alembic")

#: Command modules (and the shared wiring) that must import without them.
LIGHT_MODULES = (
    "sidecar.cli.app",
    "sidecar.cli.check",
    "sidecar.cli.cleanup",
    "sidecar.cli.role",
    "sidecar.cli.report",
    "sidecar.cli.demo",
    "sidecar.cli.service",
    "sidecar.cli.simulator",
    "sidecar.cli.ledger",
    "sidecar.ops.context",
)

#: ``cloudstack-sidecar --help``: the app with every command registered, as the CLI builds it.
HELP = (
    "import sys, typer.main\n"
    "from sidecar.cli.app import app\n"
    "try:\n"
    "    typer.main.get_command(app).main(['--help'], prog_name='cloudstack-sidecar')\n"
    "except SystemExit as exc:\n"
    "    assert exc.code == 0, exc.code\n"
)


#: ``cloudstack-sidecar check`` alone (the other commands registered or not).
CHECK = (
    "import sys, typer, typer.main\n"
    "from sidecar.cli.check import register\n"
    "app = typer.Typer()\n"
    "app.callback()(lambda: None)\n"
    "register(app)\n"
    "try:\n"
    "    typer.main.get_command(app).main(['check'], prog_name='cloudstack-sidecar')\n"
    "except SystemExit as exc:\n"
    "    print('exit', exc.code)\n"
)


def loaded_after(code: str, env: dict[str, str] | None = None) -> set[str]:
    """The ledger libraries in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    report = f"\nprint('loaded:' + ','.join(m for m in {LEDGER_LIBRARIES!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code + report], capture_output=True,
                          text=True, check=True, env=env)
    line = done.stdout.rpartition("loaded:")[2].strip()
    return set(filter(None, line.split(",")))


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_importing_a_command_module_loads_none_of_the_ledgers_libraries(module: str) -> None:
    assert loaded_after(f"import sys, {module}") == set()


def test_help_loads_none_of_the_ledgers_libraries() -> None:
    assert loaded_after(HELP) == set()


def test_the_ledger_package_re_exports_its_public_names() -> None:
    import sidecar.ledger
    from sidecar.ledger import actions, lease, schema, store

    assert sidecar.ledger.Ledger is store.Ledger
    assert sidecar.ledger.StaleLeaseError is lease.StaleLeaseError
    assert sidecar.ledger.claim_lease is lease.claim_lease
    assert sidecar.ledger.default_holder is lease.default_holder
    assert sidecar.ledger.ActionRecord is actions.ActionRecord
    assert sidecar.ledger.HA is schema.HA
    assert [n for n in sidecar.ledger.__all__ if not hasattr(sidecar.ledger, n)] == []
    assert "__getattr__" not in vars(sidecar.ledger)  # plain imports, none on first use


def test_check_of_an_unreachable_endpoint_never_imports_the_ledgers_libraries() -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "CLOUDSTACK_ENDPOINT": f"http://127.0.0.1:{port}/client/api",
        "CLOUDSTACK_KEY": "key",
        "CLOUDSTACK_SECRET": "secret",
        "SIDECAR_MAX_RETRIES": "0",
    }
    # The ledger is opened (and its libraries imported) only once CloudStack answered.
    assert loaded_after(CHECK, env) == set()
