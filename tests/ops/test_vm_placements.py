"""VM placements from every VM listing (service, report, cleanup) into the ledger and the plan."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from wiringkit import cli_env, context, ledger_url, run_cli, served, sim_with_history

from cloudstack_simulator import Simulator
from sidecar.ledger import Ledger
from sidecar.model.plan import VmPlacement
from sidecar.ops.report import gather_snapshot
from sidecar.ops.service.cycle import Service
from sidecar.ops.service.metrics import Metrics
from sidecar.reconcile import Snapshot

CRASHED = "kvm-02"


def where(sim: Simulator) -> dict[str, str]:
    """Each user VM with a host (instance name -> host uuid), as the simulator holds it now
    (system VMs are not in listVirtualMachines)."""
    hosts = {h.id: h.uuid for h in sim.state.hosts.values()}
    return {
        v.instance_name: hosts[v.host_id]
        for v in sim.state.vms.values()
        if v.vm_type == "User" and v.host_id is not None and v.removed is None
    }


def hosts_by_vm(placements: Sequence[VmPlacement]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in placements:
        out.setdefault(p.vm, []).append(p.host_id)
    return out


def crash(sim: Simulator) -> dict[str, tuple[str, str]]:
    """Crash CRASHED to the end of its HA; returns the VMs HA moved: name -> (from, to)."""
    before = where(sim)
    sim.run_scenario("host-crash", host=CRASHED)
    after = where(sim)
    moved = {n: (before[n], after[n]) for n in before.keys() & after.keys()
             if before[n] != after[n]}
    crashed = sim.host(CRASHED).uuid
    assert moved and all(old == crashed for old, _ in moved.values())
    return moved


@pytest.fixture
def sim() -> Simulator:
    """6 hosts of 4 VMs, no history: every placement is one the test made."""
    return sim_with_history(0, scenario=None)


def test_vms_ha_restarted_elsewhere_get_a_new_placement_that_the_planner_sees(
    sim: Simulator, tmp_path: Path, planned: list[Snapshot]
) -> None:
    with served(sim) as endpoint:
        service = Service(context(sim, endpoint, ledger_url(tmp_path)), dry_run=True,
                          metrics=Metrics())
        try:
            start = where(sim)
            first = service.run_cycle()
            assert first.ok, first.message
            seen_first = service.ledger.vm_placements()
            moved = crash(sim)
            after_crash = service.run_cycle()
            assert after_crash.ok, after_crash.message
            quiet = service.run_cycle()
            assert quiet.ok, quiet.message
            placements = service.ledger.vm_placements()
        finally:
            service.close()

    # Watching began with the first cycle: one placement per VM, at one moment.
    assert hosts_by_vm(seen_first) == {n: [h] for n, h in start.items()}
    assert len({p.since for p in seen_first}) == 1
    assert first.counts["vm_placements"] == len(start)
    # HA's moves, and nothing else, are new placements.
    assert hosts_by_vm(placements) == {
        n: [h, moved[n][1]] if n in moved else [h] for n, h in start.items()
    }
    assert after_crash.counts["vm_placements"] == len(moved)
    began = seen_first[0].since
    assert all(p.since > began for p in placements if p not in seen_first)
    # The planner saw them in the cycle that recorded them; a quiet cycle neither writes
    # nor reads them again (the same list).
    assert planned[1].vm_placements == placements
    assert "vm_placements" not in quiet.counts
    assert planned[2].vm_placements is planned[1].vm_placements


def test_report_records_where_the_vms_are_and_its_snapshot_carries_every_placement(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = ledger_url(tmp_path)
    start = where(sim)
    with served(sim) as endpoint:
        result = run_cli(["report", "--format", "json"], cli_env(sim, endpoint, url),
                         monkeypatch)
        assert result.code == 0, result.err
        with Ledger(url) as ledger:
            recorded = ledger.vm_placements()
        moved = crash(sim)
        ctx = context(sim, endpoint, url)
        with ctx.ledger() as ledger:
            snapshot, _, _ = asyncio.run(gather_snapshot(ctx, ledger))

    assert hosts_by_vm(recorded) == {n: [h] for n, h in start.items()}
    # The placements of the listing the snapshot was taken from are in it.
    assert hosts_by_vm(snapshot.vm_placements) == {
        n: [h, moved[n][1]] if n in moved else [h] for n, h in start.items()
    }
    assert {v.instancename: v.hostid for v in snapshot.vms if v.hostid} == where(sim)


def test_cleanup_records_where_the_vms_are_and_plans_with_every_placement(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    cleanup_planned: list[Snapshot],
) -> None:
    url = ledger_url(tmp_path)
    start = where(sim)
    with served(sim) as endpoint:
        env = cli_env(sim, endpoint, url)
        assert run_cli(["cleanup"], env, monkeypatch).code == 0
        moved = crash(sim)
        result = run_cli(["cleanup"], env, monkeypatch)  # a dry run
        assert result.code == 0, result.err

    with Ledger(url) as ledger:
        placements = ledger.vm_placements()
    assert hosts_by_vm(placements) == {
        n: [h, moved[n][1]] if n in moved else [h] for n, h in start.items()
    }
    assert [len(s.vm_placements) for s in cleanup_planned] == [len(start),
                                                               len(start) + len(moved)]
    assert cleanup_planned[-1].vm_placements == placements
