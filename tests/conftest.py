"""Shared fixtures: a clean environment (no CLOUDSTACK_* or SIDECAR_* leaks into a test), and
empty ledger databases: every ``db`` test runs on SQLite, and on PostgreSQL and MariaDB when
SIDECAR_TEST_POSTGRES_URL / SIDECAR_TEST_MYSQL_URL name a server (each test gets its own
database, dropped afterwards)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbkit import SERVERS, server_database
from hypothesis import settings

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# No per-example deadline: a garbage collection or a busy CI core would fail a property that
# holds. Speed is measured in bench/, not here.
settings.register_profile("sidecar", deadline=None)
settings.load_profile("sidecar")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Drop CLOUDSTACK_* and SIDECAR_* (but the test-database URLs) and isolate HOME."""
    import os

    for key in list(os.environ):
        if key.startswith("CLOUDSTACK_") or (
            key.startswith("SIDECAR_") and not key.startswith("SIDECAR_TEST_")
        ):
            monkeypatch.delenv(key, raising=False)
    for key in ("STATE_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(key, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    # cs also reads ./cloudstack.ini: run every test from an empty directory.
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    yield


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Commands install their log handler and levels (root, httpx, ...): undo it after a test."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = ("httpx", "httpcore", "apscheduler", "alembic", "sidecar")
    levels = {n: logging.getLogger(n).level for n in names}
    yield
    # Only the handlers sidecar.support.logs.setup_logging installed (pytest's own come and go).
    for handler in [h for h in root.handlers if h not in handlers]:
        if getattr(handler, "_sidecar_handler", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)


def _server_database(backend: str) -> Iterator[str]:
    env = SERVERS[backend]
    if not os.environ.get(env):
        pytest.skip(f"{env} not set: no {backend} server to test against")
    with server_database(backend) as url:
        yield url


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
    ]
)
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of an empty ledger database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.sqlite3'}"
    else:
        yield from _server_database(request.param)


@pytest.fixture(
    params=[
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
    ]
)
def server_db(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of an empty ledger database on each server backend (no SQLite)."""
    yield from _server_database(request.param)


@pytest.fixture
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite ledger URL only (for tests about files, the CLI and errors)."""
    return f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.sqlite3'}"
