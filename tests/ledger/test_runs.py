"""Runs: started, finished with an outcome and counts, listed; on every backend."""

from __future__ import annotations

from datetime import timedelta

from ledgerkit import FakeClock

from sidecar import __version__
from sidecar.ledger import Ledger


def test_a_run_is_recorded_from_start_to_finish_with_its_counts(ledger: Ledger, clock: FakeClock):
    run_id = ledger.start_run(
        "cleanup", "apply", endpoint="https://ms1/client/api", cloudstack_version="4.19.1.0"
    )
    clock.advance(42)
    ledger.finish_run(run_id, "ok", {"archived": 7, "failed": 0})

    (run,) = ledger.runs()
    assert run.id == run_id
    assert (run.kind, run.mode, run.outcome) == ("cleanup", "apply", "ok")
    assert run.counts == {"archived": 7, "failed": 0}
    assert run.endpoint == "https://ms1/client/api"
    assert run.cloudstack_version == "4.19.1.0"
    assert run.sidecar_version == __version__
    assert run.holder == "sidecar-a"
    assert run.finished_at is not None
    assert run.finished_at - run.started_at == timedelta(seconds=42)


def test_an_unfinished_run_stays_visible_as_running(sqlite_ledger: Ledger):
    sqlite_ledger.start_run("service", "apply")

    (run,) = sqlite_ledger.runs()
    assert run.outcome == "running"
    assert run.finished_at is None
