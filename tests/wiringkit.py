"""Helpers for the wiring tests (report, cleanup, run, demo): simulators, contexts, the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cloudstack_simulator import Simulator
from sidecar.cloudstack.config import CloudStackConfig
from sidecar.ops.context import Context
from sidecar.support.settings import Settings

#: The CLI as a separate process (its own interpreter, like an operator's shell).
APP = "import sys; from sidecar.cli.app import main; sys.exit(main())"

#: Settings that keep tests fast without changing behaviour: the simulator is local, so the
#: 20 req/s politeness limit and half-second retry backoffs only cost wall time.
FAST = {"requests_per_second": 1000.0, "retry_backoff": 0.0, "max_concurrency": 4}


def sim_with_history(
    alerts: int, *, seed: int = 7, scenario: str | None = "host-crash", **options: Any
) -> Simulator:
    """A 4.19.2 simulator with ``alerts`` of history and (by default) a host that just crashed.

    It answers with a ``Date`` header, as a proxy in front would add: its clock runs far from
    ours, and the sidecar reads the server's clock (the one it plans on) from ``Date``.
    """
    options.setdefault("hosts", 6)
    options.setdefault("vms_per_host", 4)
    options.setdefault("send_date", True)
    sim = Simulator(profile="4.19.2", seed=seed, **options)
    if alerts:
        sim.seed_history(alerts=alerts, duplicate_ratio=0.3)
    if scenario:
        sim.run_scenario(scenario)
    return sim


def ledger_url(tmp_path: Path, name: str = "ledger.sqlite3") -> str:
    """A SQLite ledger in the test's directory."""
    return f"sqlite:///{tmp_path / name}"


def context(sim: Simulator, endpoint: str, url: str, **settings: Any) -> Context:
    """A Context for ``sim`` served at ``endpoint`` with fast settings."""
    values = {**FAST, **settings}
    return Context(
        settings=Settings(ledger_url=url, **values),
        cloudstack=CloudStackConfig(endpoint=endpoint, key=sim.key, secret=sim.secret),
    )


def cli_env(sim: Simulator, endpoint: str, url: str, **settings: Any) -> dict[str, str]:
    """Environment for the CLI: credentials (cs conventions), ledger and fast settings."""
    env = {
        "CLOUDSTACK_ENDPOINT": endpoint,
        "CLOUDSTACK_KEY": sim.key,
        "CLOUDSTACK_SECRET": sim.secret,
        "SIDECAR_LEDGER_URL": url,
    }
    for name, value in {**FAST, **settings}.items():
        env[f"SIDECAR_{name.upper()}"] = str(value)
    return env


@dataclass
class Outcome:
    """Exit code, stdout and stderr of one CLI run."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(
    args: Sequence[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Outcome:
    """Run ``cloudstack-sidecar args`` in this process through the real entry point."""
    from sidecar.cli.app import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _logging_restored():
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return Outcome(code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    """Commands install their log handler on the root logger: put the test's back after."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = ("httpx", "httpcore", "apscheduler", "alembic")
    levels = {n: logging.getLogger(n).level for n in names}
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
        for name, value in levels.items():
            logging.getLogger(name).setLevel(value)


def spawn_cli(args: Sequence[str], env: dict[str, str], **kwargs: Any) -> subprocess.Popen[str]:
    """Start ``cloudstack-sidecar args`` as a separate process."""
    full = {**os.environ, **env}
    return subprocess.Popen(
        [sys.executable, "-c", APP, *args], env=full, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs,
    )


def cli_process(args: Sequence[str], env: dict[str, str], timeout: float = 120.0) -> Outcome:
    """Run ``cloudstack-sidecar args`` as a separate process to completion."""
    proc = spawn_cli(args, env)
    out, err = proc.communicate(timeout=timeout)
    return Outcome(proc.returncode, out, err)


@contextlib.contextmanager
def served(sim: Simulator) -> Iterator[str]:
    """``sim`` serving on a free loopback port."""
    with sim.serve() as endpoint:
        yield endpoint
