"""Ledger fixtures: open ledgers on ``db`` (tests/conftest.py: SQLite, and PostgreSQL and
MariaDB when SIDECAR_TEST_POSTGRES_URL / SIDECAR_TEST_MYSQL_URL name a server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from ledgerkit import FakeClock

from sidecar.ledger import Ledger


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
