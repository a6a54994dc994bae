"""Ledger fixtures: every ``db`` test runs on SQLite, and on PostgreSQL and MariaDB when
SIDECAR_TEST_POSTGRES_URL / SIDECAR_TEST_MYSQL_URL name a server (each test gets its own
database, dropped afterwards)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from dbkit import SERVERS, server_database
from ledgerkit import FakeClock

from sidecar.ledger import Ledger


def _server_database(backend: str) -> Iterator[str]:
    env = SERVERS[backend]
    if not os.environ.get(env):
        pytest.skip(f"{env} not set")
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


@pytest.fixture
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite ledger URL only (for tests about files, the CLI and errors)."""
    return f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.sqlite3'}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def open_ledger(db: str, clock: FakeClock) -> Iterator[Callable[..., Ledger]]:
    """Open ledgers on ``db`` (closed at the end); defaults: holder ``sidecar-a``, fake clock."""
    opened: list[Ledger] = []

    def opener(holder: str = "sidecar-a", **kwargs: object) -> Ledger:
        kwargs.setdefault("clock", clock)
        ledger = Ledger(db, holder=holder, **kwargs)  # type: ignore[arg-type]
        opened.append(ledger)
        return ledger

    yield opener
    for ledger in opened:
        ledger.close()


@pytest.fixture
def ledger(open_ledger: Callable[..., Ledger]) -> Ledger:
    """A migrated ledger on each backend, holder ``sidecar-a``, fake clock."""
    return open_ledger()


@pytest.fixture
def sqlite_ledger(sqlite_url: str, clock: FakeClock) -> Iterator[Ledger]:
    """A SQLite ledger only: for logic that does not depend on the backend."""
    ledger = Ledger(sqlite_url, holder="sidecar-a", clock=clock)
    yield ledger
    ledger.close()
