"""A MariaDB ledger server that dies or freezes mid-cycle, on a private server of the test's own
(tests/privatedb.py; the machine's shared server is never stopped or locked).

Killed (SIGKILL) while the service lists or archives, then restarted on the same data: no alert
is archived without its intent row, the cycle fails with one line, the service stays up and the
next cycle settles what was in flight and completes. Frozen by ``FLUSH TABLES WITH READ LOCK``:
the cycle gives up at the statement timeout instead of hanging, and the next cycle acts.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dbkit import call_within
from privatedb import PrivateMariaDB, missing_binaries, private_mariadb
from reliakit import (
    IntentAuditor,
    archived_by_us,
    check_invariants,
    fast_settings,
    make_context,
    read_ledger,
    recent_sim,
)
from sqlalchemy import create_engine

from cloudstack_simulator import Simulator
from cloudstack_simulator.api import Call
from sidecar.ops.service.cycle import Service

#: Seconds a cycle may take before the test fails instead of hanging.
HANG = 120.0


@pytest.fixture
def mariadb() -> Iterator[PrivateMariaDB]:
    """A private MariaDB server, killed and removed after the test."""
    reason = missing_binaries()
    if reason:
        pytest.skip(reason)
    with private_mariadb() as server:
        yield server


def _two_host_crashes(seed: int) -> Simulator:
    sim = recent_sim(seed=seed)
    sim.run_scenario("host-crash")
    sim.clock.advance(900)
    sim.run_scenario("host-crash")
    return sim


def _one_line(message: str) -> None:
    assert "\n" not in message
    assert message.endswith("; the next cycle retries")


@pytest.mark.parametrize("when", ["while-listing", "while-archiving"])
def test_the_ledger_server_killed_mid_cycle_and_restarted_loses_no_intent_and_the_next_completes(
    mariadb: PrivateMariaDB, when: str
) -> None:
    url = mariadb.create_database("ledger")
    sim = _two_host_crashes(seed=53)
    with sim.serve():
        auditor = IntentAuditor(sim, url)
        killed: list[int] = []

        def on_request(call: Call, number: int) -> None:
            trigger = "listAlerts" if when == "while-listing" else "archiveAlerts"
            if call.command == trigger and not killed:
                killed.append(number)
                mariadb.kill()

        # Small batches: the kill lands with more batches still to go.
        service = Service(make_context(sim, fast_settings(url, archive_batch_size=2)),
                          dry_run=False)
        try:
            auditor.on_request = on_request
            broken = call_within(HANG, service.run_cycle)
            auditor.on_request = None
            assert killed, "the server was never killed"
            assert not broken.ok and broken.exit_code == 4
            assert f"cannot use the ledger at {mariadb.url('ledger')}" in broken.message
            _one_line(broken.message)
            # The batch in flight (if any) was the last: none without its intent followed.
            assert sim.stats.calls["archiveAlerts"] == (0 if when == "while-listing" else 1)

            down = call_within(HANG, service.run_cycle)  # still down: fails the same way
            assert not down.ok and "Connection refused" in down.message
            assert sim.stats.calls["archiveAlerts"] == (0 if when == "while-listing" else 1)

            mariadb.start()  # crash recovery on the same data directory
            if when == "while-archiving":
                # Its answer was never recorded: the batch is still 'sent' after recovery.
                assert len(read_ledger(url).having("sent")) == 2
            resumed = call_within(HANG, service.run_cycle)
            assert resumed.ok, resumed.message
            assert resumed.counts.get("archived", 0) > 0
        finally:
            service.close()
            auditor.close()
    # Every archiveAlerts id was 'sent' (intended, then marked) in the ledger when it arrived.
    assert auditor.violations == []
    assert auditor.archive_requests > 1
    assert archived_by_us(sim) <= set(read_ledger(url).states)
    assert check_invariants(sim, url, complete=True) == []


def test_flush_tables_with_read_lock_fails_the_cycle_at_the_statement_timeout_and_the_next_acts(
    mariadb: PrivateMariaDB,
) -> None:
    url = mariadb.create_database("ledger")
    sim = _two_host_crashes(seed=54)
    settings = fast_settings(url, ledger_statement_timeout=2.0)
    admin = create_engine(url)
    with sim.serve():
        service = Service(make_context(sim, settings), dry_run=False)  # migrates first
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql("FLUSH TABLES WITH READ LOCK")  # a backup tool's freeze
                frozen = call_within(HANG, service.run_cycle)
                conn.exec_driver_sql("UNLOCK TABLES")
            assert not frozen.ok and frozen.exit_code == 4
            assert "exceeded the 2 s ledger_statement_timeout" in frozen.message
            assert "Lock wait timeout exceeded" in frozen.message
            _one_line(frozen.message)
            assert sim.stats.calls["archiveAlerts"] == 0

            thawed = call_within(HANG, service.run_cycle)
            assert thawed.ok, thawed.message
            assert thawed.counts.get("archived", 0) > 0
        finally:
            service.close()
            admin.dispose()
    assert check_invariants(sim, url, complete=True) == []
