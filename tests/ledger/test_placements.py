"""VM placements: host changes only, cheap unchanged cycles, several sidecars, and retention."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from ledgerkit import T0
from sqlalchemy import event, func, select

from sidecar.ledger import Ledger
from sidecar.ledger.schema import VM_PLACEMENTS
from sidecar.model.plan import VmPlacement
from sidecar.model.resources import VirtualMachine


def vm(n: int, host: str, *, state: str = "Running", instance: str | None = None) -> VirtualMachine:
    """VM number ``n`` (instance ``i-2-<n>-VM``) on ``host`` ("" when it has none)."""
    return VirtualMachine(
        id=f"vm-{n}", name=f"web{n}", state=state, hostid=host,
        instancename=f"i-2-{n}-VM" if instance is None else instance,
    )


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def rows(ledger: Ledger) -> int:
    with ledger.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(VM_PLACEMENTS)).scalar_one())


@contextmanager
def database_use(ledger: Ledger) -> Iterator[list[tuple[str, Any]]]:
    """Every statement the ledger sends with its parameters, and ("checkout", None) for each
    connection it takes from the pool."""
    seen: list[tuple[str, Any]] = []

    def statement(_conn: object, _cursor: object, sql: str, params: Any, *_args: object) -> None:
        seen.append((sql, params))

    def checkout(*_args: object) -> None:
        seen.append(("checkout", None))

    event.listen(ledger.engine, "before_cursor_execute", statement)
    event.listen(ledger.engine.pool, "checkout", checkout)
    try:
        yield seen
    finally:
        event.remove(ledger.engine, "before_cursor_execute", statement)
        event.remove(ledger.engine.pool, "checkout", checkout)


def test_only_host_changes_are_recorded_and_a_stopped_vm_keeps_its_last_host(ledger: Ledger):
    assert ledger.record_vm_placements([vm(1, "h1"), vm(2, "h1")], at(0)) == 2
    assert ledger.record_vm_placements([vm(1, "h1"), vm(2, "h1")], at(1)) == 0
    # VM 2 stops (no host), then starts on its old host again: nothing to record.
    assert ledger.record_vm_placements([vm(1, "h2"), vm(2, "", state="Stopped")], at(2)) == 1
    assert ledger.record_vm_placements([vm(1, "h2"), vm(2, "h1")], at(3)) == 0

    assert ledger.vm_placements() == [
        VmPlacement("i-2-1-VM", "h1", at(0)),
        VmPlacement("i-2-1-VM", "h2", at(2)),
        VmPlacement("i-2-2-VM", "h1", at(0)),
    ]
    assert rows(ledger) == 3
    with ledger.engine.connect() as conn:
        vm_ids = set(conn.execute(select(VM_PLACEMENTS.c.vm_id)).scalars())
    assert vm_ids == {"vm-1", "vm-2"}


def test_a_vm_without_an_instance_name_records_nothing(sqlite_ledger: Ledger):
    # Alerts name VMs by instance name; a role that does not see it cannot attribute them.
    assert sqlite_ledger.record_vm_placements([vm(1, "h1", instance="")], at(0)) == 0
    assert sqlite_ledger.vm_placements() == []


def test_a_vm_moving_twice_has_three_placements_in_order(ledger: Ledger):
    for minute, host in ((0, "h1"), (5, "h2"), (9, "h1")):
        assert ledger.record_vm_placements([vm(7, host)], at(minute)) == 1

    assert ledger.vm_placements() == [
        VmPlacement("i-2-7-VM", "h1", at(0)),
        VmPlacement("i-2-7-VM", "h2", at(5)),
        VmPlacement("i-2-7-VM", "h1", at(9)),
    ]


def test_a_cycle_of_unchanged_vms_writes_nothing_and_reads_nothing(ledger: Ledger):
    vms = [vm(n, f"h{n % 40}") for n in range(1200)]  # more than one IN list of 500
    with database_use(ledger) as first:
        assert ledger.record_vm_placements(vms, at(0)) == 1200
    with database_use(ledger) as quiet:
        assert ledger.record_vm_placements(vms, at(1)) == 0
    with database_use(ledger) as one_move:
        assert ledger.record_vm_placements([*vms[:-1], vm(1199, "h-new")], at(2)) == 1

    assert first and quiet == []
    assert rows(ledger) == 1201
    # A move reads the latest placement of the moved VM only, and writes its row.
    assert [sql for sql, _ in one_move].count("checkout") == 1
    reads = [params for sql, params in one_move if sql.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 1
    assert "i-2-1199-VM" in str(reads[0]) and "i-2-1198-VM" not in str(reads[0])


def test_a_new_ledger_object_reads_the_latest_placements_once_and_records_only_moves(
    open_ledger: Callable[..., Ledger]
):
    before = open_ledger()
    before.record_vm_placements([vm(1, "h1"), vm(2, "h1")], at(0))
    before.record_vm_placements([vm(1, "h2"), vm(2, "h1")], at(1))
    after = open_ledger()  # a restarted service

    assert after.record_vm_placements([vm(1, "h2"), vm(2, "h3")], at(2)) == 1
    assert [(p.vm, p.host_id) for p in after.vm_placements()] == [
        ("i-2-1-VM", "h1"), ("i-2-1-VM", "h2"), ("i-2-2-VM", "h1"), ("i-2-2-VM", "h3"),
    ]


def test_a_move_another_sidecar_recorded_first_is_not_recorded_again(
    open_ledger: Callable[..., Ledger]
):
    a = open_ledger("sidecar-a")
    b = open_ledger("sidecar-b")
    assert a.record_vm_placements([vm(1, "h1")], at(0)) == 1
    assert b.record_vm_placements([vm(1, "h1")], at(0.5)) == 0

    assert b.record_vm_placements([vm(1, "h2")], at(1)) == 1
    assert a.record_vm_placements([vm(1, "h2")], at(1.5)) == 0

    assert rows(a) == 2
    assert [p.host_id for p in a.vm_placements()] == ["h1", "h2"]


def test_placements_since_a_moment_start_with_each_vms_placement_in_effect_then(
    ledger: Ledger,
):
    ledger.record_vm_placements([vm(1, "h1"), vm(2, "h1")], at(0))
    ledger.record_vm_placements([vm(1, "h2"), vm(2, "h1")], at(10))
    ledger.record_vm_placements([vm(1, "h3"), vm(2, "h1")], at(20))

    assert ledger.vm_placements(since=at(15)) == [
        VmPlacement("i-2-1-VM", "h2", at(10)),  # in effect at minute 15: its own since
        VmPlacement("i-2-1-VM", "h3", at(20)),
        VmPlacement("i-2-2-VM", "h1", at(0)),  # never moved: still known
    ]
    assert ledger.vm_placements(since=at(10)) == ledger.vm_placements(since=at(15))


def test_pruning_keeps_each_vms_placement_at_the_horizon_and_everything_after_it(
    ledger: Ledger,
):
    old = T0 - timedelta(days=100)
    ledger.record_vm_placements([vm(1, "h1"), vm(2, "h1"), vm(3, "h1")], old)
    ledger.record_vm_placements([vm(1, "h2"), vm(2, "h1"), vm(3, "h4")], old + timedelta(days=1))
    ledger.record_vm_placements([vm(1, "h3"), vm(2, "h1"), vm(3, "h4")], T0)

    assert ledger.prune_observations(T0 - timedelta(days=90)) == 2

    assert ledger.vm_placements() == [
        VmPlacement("i-2-1-VM", "h2", old + timedelta(days=1)),  # the host at the horizon
        VmPlacement("i-2-1-VM", "h3", T0),
        VmPlacement("i-2-2-VM", "h1", old),  # its only placement, however old
        VmPlacement("i-2-3-VM", "h4", old + timedelta(days=1)),
    ]
    # Nothing the ledger still knows is recorded again.
    assert ledger.record_vm_placements([vm(1, "h3"), vm(2, "h1"), vm(3, "h4")], T0) == 0
    assert ledger.prune_observations(T0 - timedelta(days=90)) == 0


def test_naive_datetimes_are_refused(sqlite_ledger: Ledger):
    with pytest.raises(ValueError, match="timezone-aware"):
        sqlite_ledger.record_vm_placements([vm(1, "h1")], datetime(2026, 3, 1, 12, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        sqlite_ledger.vm_placements(since=datetime(2026, 3, 1, 12, 0))
    assert rows(sqlite_ledger) == 0
