"""Merging duplicate HA rows write-ahead: exact cancels, a worker racing the cancel, and a
kill -9 between the UPDATE and the ledger record, on SQLite and MariaDB."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cloudkit import dump, load_schema
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from test_clouddb_queue import crafted_queue

import sidecar.ops.hawork as hawork
from sidecar.ledger import Ledger
from sidecar.ops.hawork import merge, read_view, resolve

NOW = datetime(2025, 3, 1, 10, 5, 7, 123456, tzinfo=UTC)
HOLDER = "hawork-test"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}", holder=HOLDER) as opened:
        yield opened


def token_of(ledger: Ledger) -> int:
    token = ledger.acquire_lease(60)
    assert token is not None
    return token


def only_step_and_taken_changed(before: dict, after: dict, cancelled: set[int]) -> None:  # type: ignore[type-arg]
    for row_id in cancelled:
        assert after[row_id]["step"] == "Cancelled" and after[row_id]["taken"] is not None
        after[row_id] = {**after[row_id], "step": before[row_id]["step"],
                         "taken": before[row_id]["taken"]}
    assert after == before


def test_a_merge_cancels_exactly_the_duplicates_and_records_each(cloud: Engine,
                                                                 ledger: Ledger) -> None:
    load_schema(cloud)
    crafted_queue(cloud)
    before = dump(cloud)
    view = read_view(cloud, lambda: NOW)
    outcome = merge(cloud, ledger, token_of(ledger), view, clock=lambda: NOW)
    assert outcome.cancelled == [2, 3, 4, 6, 8] and not outcome.already_taken
    only_step_and_taken_changed(before, dump(cloud), {2, 3, 4, 6, 8})
    records = {r.alert_id: r for r in ledger.ha_cancels()}
    assert sorted(records) == [f"op_ha_work:{i}" for i in (2, 3, 4, 6, 8)]
    assert {r.state for r in records.values()} == {"done"}
    assert records["op_ha_work:4"].canonical == "5"
    assert records["op_ha_work:4"].alert == view.rows[4].to_json()
    assert ledger.verify() == []


def test_a_second_merge_cancels_nothing_more(cloud: Engine, ledger: Ledger) -> None:
    load_schema(cloud)
    crafted_queue(cloud)
    token = token_of(ledger)
    merge(cloud, ledger, token, read_view(cloud), clock=lambda: NOW)
    once = dump(cloud)
    again = merge(cloud, ledger, token, read_view(cloud), clock=lambda: NOW)
    assert again.counts() == dict.fromkeys(again.counts(), 0)
    assert dump(cloud) == once


def take(url: str, row_id: int, *, hold: threading.Event | None = None,
         locked: threading.Event | None = None) -> None:
    """A worker's take() on its own connection: lock the untaken row, set server and taken."""
    worker = create_engine(url)
    try:
        with worker.begin() as conn:
            lock = "" if worker.dialect.name == "sqlite" else " FOR UPDATE"
            found = conn.exec_driver_sql(
                f"SELECT id FROM op_ha_work WHERE id = {row_id} AND mgmt_server_id IS NULL AND "
                f"taken IS NULL AND step NOT IN ('Done', 'Cancelled'){lock}").all()
            assert found, "the worker found no untaken row"
            if locked is not None:
                locked.set()
            if hold is not None:
                hold.wait(2)
            conn.exec_driver_sql("UPDATE op_ha_work SET mgmt_server_id = 345, "
                                 f"taken = '2025-03-01 10:05:03' WHERE id = {row_id}")
    finally:
        worker.dispose()


def test_a_worker_taking_the_row_between_read_and_update_wins(cloud: Engine, cloud_url: str,
                                                              ledger: Ledger) -> None:
    load_schema(cloud)
    crafted_queue(cloud)
    view = read_view(cloud)
    assert 2 in view.cancel
    take(cloud_url, 2)  # after the read, before the UPDATE
    before = dump(cloud)
    outcome = merge(cloud, ledger, token_of(ledger), view, clock=lambda: NOW)
    assert outcome.already_taken == [2] and outcome.cancelled == [3, 4, 6, 8]
    after = dump(cloud)
    assert after[2] == before[2]  # exactly as the worker left it
    only_step_and_taken_changed(before, after, {3, 4, 6, 8})
    states = {r.alert_id: r.state for r in ledger.ha_cancels()}
    assert states["op_ha_work:2"] == "already-taken"


@pytest.mark.mysql
# Row locks are InnoDB's (SQLite locks the whole file): MariaDB only.
@pytest.mark.parametrize("cloud_url", ["mysql"], indirect=True)
def test_a_worker_holding_the_row_lock_makes_the_blocked_cancel_change_nothing(
    cloud: Engine, cloud_url: str, ledger: Ledger
) -> None:
    load_schema(cloud)
    crafted_queue(cloud)
    view = read_view(cloud)
    hold, locked = threading.Event(), threading.Event()
    worker = threading.Thread(target=take, args=(cloud_url, 2),
                              kwargs={"hold": hold, "locked": locked})
    worker.start()
    assert locked.wait(5)
    # The cancel of row 2 now waits on the worker's row lock; release it a moment later.
    threading.Timer(0.5, hold.set).start()
    outcome = merge(cloud, ledger, token_of(ledger), view, clock=lambda: NOW)
    worker.join(5)
    assert outcome.already_taken == [2] and 2 not in outcome.cancelled
    row = dump(cloud)[2]
    assert (row["mgmt_server_id"], row["step"], row["taken"]) == (345, "Investigating",
                                                                   "2025-03-01 10:05:03")


CHILD = textwrap.dedent("""
    import os, signal, sys
    from datetime import UTC, datetime
    import sidecar.ops.hawork as hawork
    from sidecar.clouddb import create_cloud_engine
    from sidecar.ledger import Ledger

    cloud_url, ledger_url = sys.argv[1], sys.argv[2]
    real_cancel = hawork.cancel

    def cancel_then_die(engine, row_id, now):
        real_cancel(engine, row_id, now)   # the UPDATE commits ...
        os.kill(os.getpid(), signal.SIGKILL)  # ... and the ledger never hears of it

    hawork.cancel = cancel_then_die
    engine = create_cloud_engine(cloud_url)
    ledger = Ledger(ledger_url, holder="hawork-test")
    token = ledger.acquire_lease(60)
    hawork.merge(engine, ledger, token, hawork.read_view(engine))
""")


def test_a_kill_between_update_and_record_is_resolved_without_a_second_update(
    cloud: Engine, cloud_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_schema(cloud)
    crafted_queue(cloud)
    before = dump(cloud)
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    child = subprocess.run([sys.executable, "-c", CHILD, cloud_url, ledger_url], timeout=60,
                           capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    crashed = dump(cloud)
    assert crashed[2]["step"] == "Cancelled"  # the first duplicate was cancelled, unrecorded
    with Ledger(ledger_url, holder=HOLDER) as ledger:
        assert [(r.alert_id, r.state) for r in ledger.unresolved_ha_cancels()] == [
            ("op_ha_work:2", "sent")]
        updates: list[int] = []
        real = hawork.cancel
        monkeypatch.setattr(hawork, "cancel",
                            lambda e, i, n: updates.append(i) or real(e, i, n))
        token = token_of(ledger)
        settled = resolve(cloud, ledger, token)
        assert settled.cancelled == [2] and updates == []
        assert dump(cloud) == crashed  # reading back changed nothing
        outcome = merge(cloud, ledger, token, read_view(cloud), clock=lambda: NOW)
        assert 2 not in updates and outcome.cancelled == [3, 4, 6, 8]
        states = {r.alert_id: r.state for r in ledger.ha_cancels()}
        assert set(states.values()) == {"done"} and len(states) == 5
    only_step_and_taken_changed(before, dump(cloud), {2, 3, 4, 6, 8})
    assert dump(cloud)[2]["taken"] == crashed[2]["taken"]
