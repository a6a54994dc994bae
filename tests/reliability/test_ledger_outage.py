"""The ledger going away or hanging mid-cycle: no CloudStack action without its intent row, the
cycle fails with one clear line (and again while the ledger stays away), the service stays up,
and the next cycle resumes and settles what was in flight.

Going away: SQLite: another connection holds an exclusive write transaction (``BEGIN
EXCLUSIVE``). PostgreSQL (when CI names a server): the database stops accepting connections and
every session of it is terminated (``ALLOW_CONNECTIONS false`` + ``pg_terminate_backend``).
MariaDB: a private server of the test's own (tests/privatedb.py, never the shared one) is
killed (SIGKILL) and later restarted on the same data directory.

Hanging: another session holds the lease row (SQLite: the file) or, on the private MariaDB,
``FLUSH TABLES WITH READ LOCK``: the cycle gives up at ``ledger_statement_timeout``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from dbkit import call_within, lease_row_locked
from privatedb import PrivateMariaDB, missing_binaries, private_mariadb
from reliakit import (
    IntentAuditor,
    archived_by_us,
    check_invariants,
    fast_settings,
    make_context,
    read_ledger,
    recent_sim,
    server_database,
    sqlite_url,
)
from sqlalchemy import create_engine, make_url

from cloudstack_simulator import Simulator
from cloudstack_simulator.api import Call
from sidecar.ledger import Ledger
from sidecar.ops.service.cycle import Service

#: Seconds a cycle may take before the test fails instead of hanging.
HANG = 120.0


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


class MariaDBKilled(Outage):
    expected = "cannot use the ledger at"

    def __init__(self, server: PrivateMariaDB) -> None:
        self.server = server

    def down(self) -> None:
        self.server.kill()  # no shutdown, no flush: a crash or the OOM killer

    def up(self) -> None:
        self.server.start()  # crash recovery on the same data directory


@contextmanager
def _ledger_on(backend: str, directory: Path) -> Iterator[tuple[str, PrivateMariaDB | None]]:
    """An empty ledger database on ``backend`` (skips without its server), and the private
    MariaDB server holding it, if any."""
    if backend == "sqlite":
        url = sqlite_url(directory)
        Ledger(url, holder="setup").close()  # the file must exist to be locked
        yield url, None
    elif backend == "private-mariadb":
        reason = missing_binaries()
        if reason:
            pytest.skip(reason)
        with private_mariadb() as server:
            yield server.create_database("ledger"), server
    else:
        env = {"postgres": "SIDECAR_TEST_POSTGRES_URL", "mysql": "SIDECAR_TEST_MYSQL_URL"}[backend]
        if not os.environ.get(env):
            pytest.skip(f"{env} not set: no {backend} server to test against")
        with server_database(backend) as url:
            yield url, None


@contextmanager
def _outage(backend: str, directory: Path) -> Iterator[tuple[str, Outage]]:
    with _ledger_on(backend, directory) as (url, server):
        if server is not None:
            yield url, MariaDBKilled(server)
            return
        outage: SqliteLock | PostgresGone = (
            SqliteLock(directory / "ledger.sqlite3") if backend == "sqlite" else PostgresGone(url)
        )
        try:
            yield url, outage
        finally:
            outage.close()


def _two_host_crashes(seed: int) -> Simulator:
    sim = recent_sim(seed=seed)
    sim.run_scenario("host-crash")
    sim.clock.advance(900)
    sim.run_scenario("host-crash")
    return sim


BACKENDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
            pytest.param("private-mariadb", id="private-mariadb-killed")]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("when", ["while-listing", "while-archiving"])
def test_the_ledger_going_away_mid_cycle_fails_it_cleanly_and_the_next_cycle_resumes(
    backend: str, when: str, fast_dir: Path
) -> None:
    sim = _two_host_crashes(seed=51)
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
        # SQLite waits for the held lock this long; the servers refuse at once.
        timeout = 0.3 if backend == "sqlite" else 15.0
        settings = fast_settings(url, archive_batch_size=2, ledger_statement_timeout=timeout)
        service = Service(make_context(sim, settings), dry_run=False)
        # No intent could be written while listing, so nothing was archived; while archiving,
        # the call in flight ran and no further batch was sent without its intent.
        archived_calls = 0 if when == "while-listing" else 1
        try:
            broken = call_within(HANG, service.run_cycle)
            assert fired
            auditor.on_request = None
            assert not broken.ok and broken.exit_code == 4
            assert outage.expected in broken.message
            _one_line(broken.message)
            assert sim.stats.calls["archiveAlerts"] == archived_calls

            down = call_within(HANG, service.run_cycle)  # still away: fails the same way
            assert not down.ok and outage.expected in down.message
            assert sim.stats.calls["archiveAlerts"] == archived_calls

            outage.up()
            if when == "while-archiving":
                # The batch in flight is 'sent' in the ledger: its answer never got recorded.
                assert len(read_ledger(url).having("sent")) == 2
            resumed = call_within(HANG, service.run_cycle)
            assert resumed.ok, resumed.message
        finally:
            service.close()
            auditor.close()
        # At each archiveAlerts request every id was 'sent' (intended first) in the ledger.
        assert auditor.violations == []
        assert archived_by_us(sim) <= set(read_ledger(url).states)
        assert check_invariants(sim, url, complete=True) == []


def _one_line(message: str) -> None:
    assert "\n" not in message
    assert message.endswith("; the next cycle retries")


@contextmanager
def _read_lock(url: str) -> Iterator[None]:
    """``FLUSH TABLES WITH READ LOCK``, as a backup tool freezes a server (private only)."""
    admin = create_engine(url)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql("FLUSH TABLES WITH READ LOCK")
            yield
            conn.exec_driver_sql("UNLOCK TABLES")
    finally:
        admin.dispose()


#: Who holds what: another session's row (SQLite: file) lock, or a frozen private server.
LOCKS = [
    pytest.param("sqlite", lease_row_locked, id="sqlite-file"),
    pytest.param("postgres", lease_row_locked, id="postgres-row", marks=pytest.mark.postgres),
    pytest.param("mysql", lease_row_locked, id="mysql-row", marks=pytest.mark.mysql),
    pytest.param("private-mariadb", _read_lock, id="private-mariadb-flush-tables-read-lock"),
]


@pytest.mark.parametrize(("backend", "lock"), LOCKS)
def test_a_lock_held_by_another_session_fails_the_cycle_in_one_line_and_the_next_cycle_acts(
    backend: str, lock: Callable[[str], AbstractContextManager[None]], fast_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = _two_host_crashes(seed=52)
    with _ledger_on(backend, fast_dir) as (url, _), sim.serve():
        with Ledger(url, holder="sidecar-a") as setup:
            assert setup.acquire_lease(600) == 1  # the service renews this row: it is locked
        settings = fast_settings(url, ledger_statement_timeout=1.0)
        service = Service(make_context(sim, settings), dry_run=False)
        try:
            with lock(url), caplog.at_level(logging.ERROR):
                broken = call_within(HANG, service.run_cycle)
            assert not broken.ok and broken.exit_code == 4
            assert sim.stats.calls["archiveAlerts"] == 0
            [line] = [r for r in caplog.records if r.getMessage().startswith("cycle failed")]
            logged = line.getMessage()
            assert logged == f"cycle failed: {broken.message}"
            assert line.exc_info is None
            _one_line(logged)
            if backend != "sqlite":
                assert "exceeded the 1 s ledger_statement_timeout" in logged
            if backend in {"postgres", "mysql"}:  # only the lease row was locked
                assert service.ledger.runs()[-1].outcome == "error"

            resumed = service.run_cycle()  # the service is still up; the lock is gone
            assert resumed.ok, resumed.message
            assert resumed.counts.get("archived", 0) > 0
        finally:
            service.close()
        assert check_invariants(sim, url, complete=True) == []
