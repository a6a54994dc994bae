"""The simulator's cloud database: DDL per profile, take() conditions, backlog, the fixed rule."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from dbkit import SERVERS, server_database

from cloudstack_simulator import Simulator
from cloudstack_simulator.harule import cancel_ids


def _sim(profile: str = "4.19.2", url: str | None = None, hosts: int = 4) -> Simulator:
    return Simulator(profile=profile, seed=11, hosts=hosts, vms_per_host=3, cloud_db_url=url)


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def db_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None (an SQLite file) or a uniquely named MariaDB database, dropped afterwards."""
    if request.param == "sqlite":
        yield None
        return
    if not os.environ.get(SERVERS["mysql"]):
        pytest.skip(f"{SERVERS['mysql']} is not set: no MariaDB server to test against")
    with server_database("mysql", prefix="cloudsim") as url:
        yield url


@pytest.mark.parametrize(
    ("profile", "has_reason"),
    [("4.19.2", False), ("4.20.0", False), ("4.20.1", True), ("4.22", True)],
)
def test_op_ha_work_has_a_reason_column_only_from_4_20_1(profile: str, has_reason: bool) -> None:
    sim = _sim(profile)
    assert ("reason" in sim.cloud_db.columns("op_ha_work")) is has_reason
    assert sim.cloud_db_url.startswith("sqlite:///")


def test_a_cancelled_row_is_never_taken_and_a_taken_row_runs(db_url: str | None) -> None:
    sim = _sim(url=db_url)
    host = sim.state.hosts[min(sim.state.hosts)]
    sim.fail_hosts([host.id], rounds=2)
    sim.clock.advance(0.01)  # the first scheduleRestartForVmsOnHost call runs
    rows = sim.cloud_db.ha_rows()
    assert rows and all(r["step"] == "Investigating" for r in rows)
    sim.clock.advance(6)  # the second round is queued; workers have taken the first rows
    cancel = sim.truth.ha_work_cancel_ids()
    assert cancel
    for row_id in cancel:  # what the sidecar's conditional UPDATE does
        changed = sim.cloud_db.execute(
            "UPDATE op_ha_work SET step='Cancelled', taken=? WHERE id=? AND taken IS NULL "
            "AND mgmt_server_id IS NULL AND type='HA' AND step IN ('Scheduled','Investigating')",
            ("2026-01-01 00:00:00", row_id),
        )
        assert changed == 1
    sim.clock.run_until_idle()
    by_id = {r["id"]: r for r in sim.cloud_db.ha_rows()}
    assert all(
        by_id[i]["step"] == "Cancelled" and by_id[i]["mgmt_server_id"] is None for i in cancel
    )
    assert all(r["step"] == "Done" for i, r in by_id.items() if i not in cancel)
    assert sim.ha_queue.outcome()["never_ran_again"] == []
    sim.close_cloud_db()


def test_workers_take_the_lowest_id_first_and_respect_time_to_try() -> None:
    sim = _sim()
    host = sim.state.hosts[min(sim.state.hosts)]
    sim.ha_queue.workers = lambda: 0  # type: ignore[method-assign]
    sim.fail_hosts([host.id], rounds=1)
    sim.clock.advance(0.01)
    db = sim.cloud_db
    first = min(r["id"] for r in db.ha_rows())
    assert db.take(0, 1, sim.clock.time()) is None  # every time_to_try is later than stamp 0
    sim.cloud_db.update_ha(first, mgmt_server_id=None)
    sim.ha_queue.workers = lambda: 2  # type: ignore[method-assign]
    sim.ha_queue._idle = None
    sim.ha_queue.wake()
    sim.clock.advance(0.1)
    rows = db.ha_rows()
    taken = sorted(r["id"] for r in rows if r["taken"] is not None)
    assert taken[0] == first
    assert taken == sorted(r["id"] for r in rows)[:2]  # two workers, the two lowest ids


def test_a_mass_failure_leaves_a_backlog_larger_than_the_worker_pool() -> None:
    sim = Simulator(profile="4.19.2", seed=3, hosts=12, vms_per_host=6, hosts_per_pod=4)
    pod = [h.id for h in sim.state.hosts.values() if h.pod_id == 1][:4] or [
        h.id for h in list(sim.state.hosts.values())[:4]
    ]
    sim.fail_hosts(pod, rounds=1)
    sim.clock.advance(1)
    rows = sim.cloud_db.ha_rows()
    taken = [r for r in rows if r["taken"] is not None]
    assert len(taken) == sim.ha_queue.workers() < len(rows)
    sim.clock.run_until_idle()
    assert sim.ha_queue.outcome()["never_ran_again"] == []


def test_a_management_server_restart_marks_untaken_rows_investigating_on_4_20_1() -> None:
    for profile, expected in (("4.20.1", "Investigating"), ("4.19.2", "Scheduled")):
        sim = _sim(profile)
        vm = next(v for v in sim.state.vms.values() if v.ha_enabled)
        failure = sim.truth.new_failure(
            kind="t", host="h", host_id="u", host_db_id=1, zone="z", started=0.0, profile=profile
        )
        row = sim.ha_queue.schedule_restart(vm, failure, investigate=False)
        sim.cloud_db.update_ha(row.id, taken=None, mgmt_server_id=None, step="Scheduled")
        sim.ha_queue.workers = lambda: 0  # type: ignore[method-assign]
        sim.restart_management_server()
        assert sim.cloud_db.ha_row(row.id)["step"] == expected


def _row(i: int, vm: int, host: int = 7, **kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": i,
        "instance_id": vm,
        "host_id": host,
        "type": "HA",
        "step": "Investigating",
        "taken": None,
        "mgmt_server_id": None,
        "tried": 0,
    }
    row.update(kw)
    return row


def test_the_truth_keeps_the_active_row_and_cancels_untaken_copies() -> None:
    rows = [_row(1, 42, taken="t", mgmt_server_id=5, step="Restarting"), _row(2, 42), _row(3, 42)]
    assert cancel_ids(rows) == [2, 3]


def test_the_truth_keeps_the_retry_with_the_highest_tried_then_the_lowest_id() -> None:
    assert cancel_ids([_row(1, 42), _row(2, 42, tried=2), _row(3, 42, tried=2)]) == [1, 3]


def test_the_truth_ignores_single_rows_other_types_other_hosts_and_finished_rows() -> None:
    rows = [
        _row(1, 42),
        _row(2, 42, host=8),
        _row(3, 42, type="Migration"),
        _row(4, 42, step="Done"),
        _row(5, 43),
    ]
    assert cancel_ids(rows) == []
