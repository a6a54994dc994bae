"""The HA-queue duplicate rule on crafted queues: what is kept, what is cancelled, what never is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sidecar.model.hawork import HaWorkRow
from sidecar.reconcile.hawork import duplicate_groups, ha_work_view

T0 = datetime(2025, 2, 11, 10, 0, tzinfo=UTC)


def row(id: int, instance: int = 42, host: int | None = 7, *, step: str = "Investigating",
        type: str = "HA", tried: int = 0, taken: bool = False, at: float = 0) -> HaWorkRow:
    return HaWorkRow(id=id, instance_id=instance, type=type, vm_type="User", state="Running",
                     mgmt_server_id=345 if taken else None, host_id=host,
                     created=T0 + timedelta(seconds=at), tried=tried,
                     taken=T0 + timedelta(seconds=at + 1) if taken else None, step=step,
                     time_to_try=None, updated=3, vm=f"i-2-{instance}-VM", host=f"kvm{host}")


def cancelled(rows: list[HaWorkRow]) -> dict[int, tuple[int, ...]]:
    return {g.keep: g.cancel for g in duplicate_groups(rows)}


def test_untaken_copies_keep_the_lowest_id_and_cancel_the_rest() -> None:
    assert cancelled([row(3), row(1), row(2, step="Scheduled")]) == {1: (2, 3)}


def test_a_row_held_by_a_worker_is_kept_and_only_untaken_copies_go() -> None:
    rows = [row(1), row(2, step="Restarting", taken=True), row(3, step="Fencing", taken=True),
            row(4)]
    assert cancelled(rows) == {2: (1, 4)}


def test_a_retry_carries_the_history_and_is_kept() -> None:
    assert cancelled([row(1), row(2, tried=2), row(3, tried=1)]) == {2: (1, 3)}
    assert cancelled([row(5, tried=1), row(4, tried=1)]) == {4: (5,)}


def test_other_work_types_single_rows_and_finished_rows_are_never_touched() -> None:
    rows = [row(1, type="Migration", step="Scheduled"), row(2, type="Stop", step="Scheduled"),
            row(3, instance=9), row(4, step="Done"), row(5, step="Cancelled"),
            row(6, step="Error")]
    assert duplicate_groups([*rows, row(7)]) == ()


def test_rows_of_one_vm_on_two_hosts_are_two_groups() -> None:
    rows = [row(1, host=7), row(2, host=7), row(3, host=8), row(4, host=8), row(5, host=9)]
    assert cancelled(rows) == {1: (2,), 3: (4,)}


def test_an_untaken_row_past_investigation_is_active_and_never_cancelled() -> None:
    # Scheduled and Investigating are the only steps an outside cancel may touch.
    assert cancelled([row(1, step="Fencing"), row(2)]) == {1: (2,)}
    assert cancelled([row(1, step="Fencing"), row(2, step="Migrating")]) == {}


def test_the_view_counts_waiting_and_running_rows_per_host_and_unions_the_cancels() -> None:
    rows = [row(1, at=0), row(2, at=5), row(3, host=8, step="Restarting", taken=True, at=9),
            row(4, instance=50, host=8, at=20), row(5, instance=50, host=8, at=30),
            row(6, step="Done")]
    view = ha_work_view(rows, T0 + timedelta(seconds=60))
    assert (view.pending, view.running, view.oldest_pending_seconds) == (4, 1, 60.0)
    assert [(h.host_id, h.pending, h.running) for h in view.by_host] == [(7, 2, 0), (8, 2, 1)]
    assert view.cancel == (2, 5) == tuple(sorted(i for g in view.duplicates for i in g.cancel))
    data = view.to_json()
    assert data["source"] == "database" and data["cancel"] == [2, 5]
    assert data["duplicates"][0] == {"instance_id": 42, "vm": "i-2-42-VM", "host_id": 7,
                                     "keep": 1, "cancel": [2], "reason": data["duplicates"][0][
                                         "reason"]}
