"""The ledger going away or hanging mid-cycle: no CloudStack action without its intent row, the
cycle fails with one clear line, and the next cycle resumes and settles what was in flight.

SQLite: another connection holds an exclusive write transaction (``BEGIN EXCLUSIVE``).
PostgreSQL (when CI names a server): the database stops accepting connections and every
session of it is terminated (``ALLOW_CONNECTIONS false`` + ``pg_terminate_backend``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dbkit import call_within, lease_row_locked
from reliakit import (
    IntentAuditor,
    check_invariants,
    fast_settings,
    make_context,
    read_ledger,
    recent_sim,
    server_database,
    sqlite_url,
)
from sqlalchemy import create_engine, make_url

from cloudstack_simulator.api import Call
from sidecar.ledger import Ledger
from sidecar.ops.service.cycle import Service


class Outage:
    """Takes the ledger away (``down``) and brings it back (``up``)."""

    #: What the failed cycle's message says.
    expected = ""

    def down(self) -> None:
        raise NotImplementedError

    def up(self) -> None:
        raise NotImplementedError


class SqliteLock(Outage):
    expected = "is locked by another process"

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, timeout=0, isolation_level=None,
                                    check_same_thread=False)
        self.held = False

    def down(self) -> None:
        self.conn.execute("BEGIN EXCLUSIVE")
        self.held = True

    def up(self) -> None:
        if self.held:
            self.conn.execute("ROLLBACK")
            self.held = False

    def close(self) -> None:
        self.up()
        self.conn.close()


class PostgresGone(Outage):
    expected = "cannot use the ledger at"

    def __init__(self, url: str) -> None:
        self.name = make_url(url).database
        self.admin = create_engine(make_url(url).set(database="postgres"),
                                   isolation_level="AUTOCOMMIT")

    def down(self) -> None:
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"ALTER DATABASE {self.name} ALLOW_CONNECTIONS false")
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()"
            )

    def up(self) -> None:
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"ALTER DATABASE {self.name} ALLOW_CONNECTIONS true")

    def close(self) -> None:
        self.up()
        self.admin.dispose()


@contextmanager
def _outage(backend: str, directory: Path) -> Iterator[tuple[str, Outage]]:
    if backend == "sqlite":
        url = sqlite_url(directory)
        Ledger(url, holder="setup").close()  # the file must exist to be locked
        lock = SqliteLock(directory / "ledger.sqlite3")
        try:
            yield url, lock
        finally:
            lock.close()
        return
    if not os.environ.get("SIDECAR_TEST_POSTGRES_URL"):
        pytest.skip("SIDECAR_TEST_POSTGRES_URL not set: no postgres server to test against")
    with server_database("postgres") as url:
        gone = PostgresGone(url)
        try:
            yield url, gone
        finally:
            gone.close()


BACKENDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("when", ["while-listing", "while-archiving"])
def test_the_ledger_going_away_mid_cycle_fails_it_cleanly_and_the_next_cycle_resumes(
    backend: str, when: str, fast_dir: Path
) -> None:
    sim = recent_sim(seed=51)
    sim.run_scenario("host-crash")
    sim.clock.advance(900)
    sim.run_scenario("host-crash")
    with _outage(backend, fast_dir) as (url, outage), sim.serve():
        auditor = IntentAuditor(sim, url)
        fired: list[int] = []

        def on_request(call: Call, number: int) -> None:
            trigger = "listAlerts" if when == "while-listing" else "archiveAlerts"
            if call.command == trigger and not fired:
                fired.append(number)
                outage.down()

        auditor.on_request = on_request
        # Small batches: the outage lands with more batches still to go.
        # SQLite waits for the held lock this long; PostgreSQL refuses at once.
        timeout = 0.3 if backend == "sqlite" else 15.0
        settings = fast_settings(url, archive_batch_size=2, ledger_statement_timeout=timeout)
        service = Service(make_context(sim, settings), dry_run=False)
        try:
            broken = service.run_cycle()
            assert fired
            assert not broken.ok
            assert outage.expected in broken.message
            assert "\n" not in broken.message
            if when == "while-listing":
                # No intent could be written, so nothing was archived.
                assert sim.stats.calls["archiveAlerts"] == 0
            else:
                # The call in flight ran; no further batch was sent without its intent.
                assert sim.stats.calls["archiveAlerts"] == 1
            auditor.on_request = None
            outage.up()
            if when == "while-archiving":
                # The batch in flight is 'sent' in the ledger: its answer never got recorded.
                assert len(read_ledger(url).having("sent")) == 2
            resumed = service.run_cycle()
            assert resumed.ok, resumed.message
        finally:
            service.close()
            auditor.close()
        assert check_invariants(sim, url, complete=True) == []
        assert auditor.violations == []


def test_a_lock_held_by_another_session_fails_the_cycle_in_one_line_and_the_next_cycle_acts(
    ledger_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    sim = recent_sim(seed=52)
    sim.run_scenario("host-crash")
    sim.clock.advance(900)
    sim.run_scenario("host-crash")
    with Ledger(ledger_url, holder="sidecar-a") as setup:
        assert setup.acquire_lease(600) == 1  # the service renews this row: it is the one locked
    settings = fast_settings(ledger_url, ledger_statement_timeout=1.0)
    with sim.serve():
        service = Service(make_context(sim, settings), dry_run=False)
        try:
            with lease_row_locked(ledger_url), caplog.at_level(logging.ERROR):
                broken = call_within(60.0, service.run_cycle)
            assert not broken.ok and broken.exit_code == 4
            assert sim.stats.calls["archiveAlerts"] == 0
            [line] = [r for r in caplog.records if r.getMessage().startswith("cycle failed")]
            logged = line.getMessage()
            assert logged == f"cycle failed: {broken.message}"
            assert "\n" not in logged and line.exc_info is None
            assert logged.endswith("; the next cycle retries")
            if service.ledger.backend != "sqlite":
                assert "exceeded the 1 s ledger_statement_timeout" in logged
                assert service.ledger.runs()[-1].outcome == "error"

            resumed = service.run_cycle()  # the service is still up; the lock is gone
            assert resumed.ok, resumed.message
            assert resumed.counts.get("archived", 0) > 0
        finally:
            service.close()
    assert check_invariants(sim, ledger_url, complete=True) == []
