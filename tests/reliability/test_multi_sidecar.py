"""Two and three sidecars on one ledger (SQLite file, PostgreSQL, MariaDB), cycling at once
against one simulator: every duplicate is archived exactly once, by whoever holds the lease.

The server backends run when CI names them (SIDECAR_TEST_POSTGRES_URL / _MYSQL_URL); each test
gets its own database, dropped afterwards.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import traceback
from pathlib import Path

import pytest
from reliakit import (
    IntentAuditor,
    archived_by_us,
    check_invariants,
    cleanup,
    fast_settings,
    history_sim,
    make_context,
    read_ledger,
    recent_sim,
    sqlite_url,
)

from cloudstack_simulator import Simulator
from sidecar.ledger import Ledger
from sidecar.ops.service.cycle import CycleResult, Service
from sidecar.support.errors import UserError


def _service(sim: Simulator, url: str, name: str) -> Service:
    return Service(make_context(sim, fast_settings(url), holder=name), dry_run=False)


def _cycle_together(services: list[Service]) -> list[CycleResult]:
    """Start one cycle on every service at the same moment (one thread each)."""
    barrier = threading.Barrier(len(services))
    results: list[CycleResult | None] = [None] * len(services)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = services[i].run_cycle()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(services))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(r is not None for r in results), "a cycle hung"
    return [r for r in results if r is not None]


@pytest.mark.parametrize("count", [2, 3])
def test_sidecars_cycling_at_once_on_one_ledger_archive_each_duplicate_exactly_once(
    ledger_url: str, count: int
) -> None:
    sim = recent_sim(seed=40 + count, hosts=6, vms_per_host=3, hours_behind=3)
    rng = random.Random(count)
    names = [f"sidecar-{i}" for i in range(count)]
    with sim.serve():
        auditor = IntentAuditor(sim, ledger_url)
        services: list[Service | None] = [_service(sim, ledger_url, n) for n in names]
        stopped: list[int] = []
        leaders: list[str] = []
        try:
            for round_ in range(4):
                # Failures far enough apart (> alert_gap_window) to be separate incidents.
                sim.clock.advance(900)
                # One host per round: a host failing twice between polls is another test.
                sim.run_scenario(rng.choice(["host-crash", "disconnect-flap"]),
                                 host=f"kvm-{round_ + 1:02d}")
                running = [s for s in services if s is not None]
                results = _cycle_together(running)
                assert all(r.ok for r in results), [r.message for r in results]
                acting = [s.ctx.holder for s, r in zip(running, results, strict=True)  # type: ignore[attr-defined]
                          if r.message.startswith("leader")]
                assert len(acting) <= 1, f"round {round_}: several leaders {acting}"
                leaders.extend(acting)
                # A stopped leader comes back one round later, as a follower.
                for i in stopped:
                    services[i] = _service(sim, ledger_url, names[i])
                stopped = []
                # The leader stops now and then: it gives the lease up, another takes over.
                if acting and round_ % 2 == 0:
                    i = names.index(acting[0])
                    old = services[i]
                    assert old is not None
                    old.close()
                    services[i] = None
                    stopped.append(i)
            for i in stopped:
                services[i] = _service(sim, ledger_url, names[i])
            # One more cycle each, one after the other: whoever leads settles what is left.
            for service in services:
                assert service is not None and service.run_cycle().ok
        finally:
            for service in services:
                if service is not None:
                    service.close()
            auditor.close()
    assert sim.stats.archived_more_than_once() == []
    assert archived_by_us(sim) == sim.truth.duplicate_ids
    assert check_invariants(sim, ledger_url, complete=True) == []
    assert auditor.violations == []
    assert len(set(leaders)) >= 2, "the lease never changed hands"


def test_two_cleanups_at_once_on_one_ledger_never_repeat_an_action(ledger_url: str) -> None:
    sim = history_sim(seed=45, alerts=400)
    with sim.serve():
        contexts = [make_context(sim, fast_settings(ledger_url, archive_batch_size=10),
                                 holder=f"admin-{i}") for i in range(2)]
        barrier = threading.Barrier(2)
        attempts: list[object] = [None, None]

        def run(i: int) -> None:
            barrier.wait()
            attempts[i] = cleanup(contexts[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert all(attempt is not None for attempt in attempts), "a cleanup hung or raised"
        for attempt in attempts:
            error = getattr(attempt, "error", None)
            # The loser of the lease stops with the one-line lease message; nothing else.
            assert error is None or (isinstance(error, UserError)
                                     and "another sidecar holds the ledger lease" in str(error)
                                     ), "".join(traceback.format_exception(error))
        # Whatever the interleaving, a final run finishes and nothing was done twice.
        assert cleanup(contexts[0]).error is None
    assert sim.stats.archived_more_than_once() == []
    assert check_invariants(sim, ledger_url, complete=True) == []
    assert len(read_ledger(ledger_url).having("done")) == len(sim.truth.duplicate_ids)


def test_a_sidecar_opening_a_new_sqlite_ledger_waits_for_another_one_writing_it(
    fast_dir: Path,
) -> None:
    # E.g. the service's first start and an operator's first `cleanup --apply` on one host:
    # while one writes the brand-new file (still in rollback-journal mode), the other must
    # wait for it (busy timeout), not fail at once. The writer lets go 0.3 s later; with a
    # 10 s busy timeout the result does not depend on the machine's speed.
    path = fast_dir / "new-ledger.sqlite3"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("CREATE TABLE being_created (x)")
    release = threading.Timer(0.3, lambda: writer.execute("ROLLBACK"))
    release.start()
    try:
        Ledger(sqlite_url(fast_dir, path.name), holder="sidecar-b", statement_timeout=10.0).close()
    finally:
        release.join()
        writer.close()
