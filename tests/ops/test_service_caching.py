"""What the service keeps between cycles to make a quiet cycle cheap, and when it lets go.

One CloudStack client (one SSL context) for the service's life; the planner's VM index while
the VMs stay put; the hosts' recorded states while nothing changes them; zone names for
``listHosts details=min``. Each cache must give way to the change it could hide.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from plankit import T0, USERVM, alert, unable, vm
from wiringkit import context, ledger_url, served, sim_with_history

from cloudstack_simulator import Simulator
from sidecar.cloudstack.client import CloudStackClient
from sidecar.ledger import Ledger
from sidecar.model.resources import Host
from sidecar.ops.context import Context
from sidecar.ops.service.cycle import Service
from sidecar.ops.service.metrics import Metrics
from sidecar.reconcile import Snapshot, build_plan
from sidecar.reconcile.indexes import VmIndex


class RecordingClient(CloudStackClient):
    """A client that remembers whether it was closed."""

    closed = False

    async def aclose(self) -> None:
        self.closed = True
        await super().aclose()


@dataclass
class CountingContext(Context):
    """A Context that keeps every client it made."""

    made: list[RecordingClient] = field(default_factory=list)

    def client(self, **kwargs: Any) -> CloudStackClient:
        cs = RecordingClient(self.cloudstack, limits=self.limits, **kwargs)
        self.made.append(cs)
        return cs


def counting_context(sim: Simulator, endpoint: str, url: str) -> CountingContext:
    base = context(sim, endpoint, url)
    return CountingContext(base.settings, base.cloudstack)


@pytest.fixture
def sim() -> Simulator:
    return sim_with_history(300)


@pytest.fixture
def made(tmp_path: Path) -> Iterator[list[Service]]:
    """Services made by a test, closed after it."""
    services: list[Service] = []
    yield services
    for service in services:
        service.close()


def new_service(made: list[Service], ctx: Context) -> Service:
    service = Service(ctx, dry_run=False, metrics=Metrics())
    made.append(service)
    return service


# -- one client -----------------------------------------------------------------------------


def test_every_cycle_uses_the_client_the_first_one_made_and_stopping_the_service_closes_it(
    sim: Simulator, tmp_path: Path
) -> None:
    with served(sim) as endpoint:
        ctx = counting_context(sim, endpoint, ledger_url(tmp_path))
        service = Service(ctx, dry_run=False, metrics=Metrics())
        try:
            for _ in range(3):
                assert service.run_cycle().ok
            assert len(ctx.made) == 1
            assert not ctx.made[0].closed
        finally:
            service.close()
    assert ctx.made[0].closed


def test_new_credentials_get_a_new_client_and_the_old_one_is_closed(
    sim: Simulator, tmp_path: Path, made: list[Service]
) -> None:
    with served(sim) as endpoint:
        ctx = counting_context(sim, endpoint, ledger_url(tmp_path))
        service = new_service(made, ctx)
        assert service.run_cycle().ok
        key, secret = sim.rotate_key()
        ctx.cloudstack = dataclasses.replace(ctx.cloudstack, key=key, secret=secret)
        assert service.run_cycle().ok
        assert len(ctx.made) == 2
        assert ctx.made[0].closed and not ctx.made[1].closed


def test_a_failed_cycle_closes_its_client_and_the_next_cycle_starts_with_a_new_one(
    sim: Simulator, tmp_path: Path, made: list[Service]
) -> None:
    with served(sim) as endpoint:
        ctx = counting_context(sim, endpoint, ledger_url(tmp_path))
        service = new_service(made, ctx)
        assert service.run_cycle().ok
        sim.faults.add("unauthorized", "listHosts", times=1)
        assert not service.run_cycle().ok
        assert ctx.made[0].closed
        assert service.run_cycle().ok
        assert len(ctx.made) == 2


def test_the_kept_client_works_after_the_server_dropped_every_connection(
    sim: Simulator, tmp_path: Path, made: list[Service]
) -> None:
    with served(sim) as endpoint:
        ctx = counting_context(sim, endpoint, ledger_url(tmp_path))
        service = new_service(made, ctx)
        assert service.run_cycle().ok
        port = sim.port
        sim.stop()  # closes the idle keep-alive connections the client holds
        sim.start(port=port)
        sim.clock.advance(900)
        sim.run_scenario("host-crash", host="kvm-03")
        result = service.run_cycle()
        assert result.ok, result.message
        assert result.counts.get("archived", 0) > 0  # a POST too, not only retried reads
        assert len(ctx.made) == 1


# -- the VM index ---------------------------------------------------------------------------


def test_the_vm_index_is_kept_while_the_vms_stay_put_and_rebuilt_when_one_leaves_a_failed_host(
    tmp_path: Path, made: list[Service], planned: list[Snapshot]
) -> None:
    sim = sim_with_history(0, scenario=None)
    sim.start_scenario("host-crash", host="kvm-02", recover_after=None)
    sim.clock.advance(160)  # Down, HA rounds scheduled, no VM restarted yet
    failed = sim.host("kvm-02")
    with served(sim) as endpoint:
        service = new_service(made, context(sim, endpoint, ledger_url(tmp_path)))
        assert service.run_cycle().ok  # the full inventory
        first = service.vms.index()
        assert service.run_cycle().ok  # the failed host's VMs polled again: unchanged
        assert service.vms.index() is first
        assert planned[-1].vms is first.source
        # One VM leaves the failed host without an alert; the next poll of the host sees it.
        moved = next(v for v in sim.state.vms.values() if v.host_id == failed.id)
        moved.host_id = sim.host("kvm-03").id
        assert service.run_cycle().ok
    rebuilt = service.vms.index()
    assert rebuilt is not first
    assert planned[-1].vms is rebuilt.source
    on_failed = {v.id for v in rebuilt.on_host(failed.uuid)}
    assert moved.uuid not in on_failed
    assert on_failed == {v.id for v in first.on_host(failed.uuid)} - {moved.uuid}


def test_the_planner_uses_an_index_only_for_the_vm_list_it_was_built_from() -> None:
    # Two VMs share the name: their "Unable to restart" alerts must be left alone.
    vms = (vm("web01", "i-2-14-VM", "h-1"), vm("web01", "i-3-20-VM", "h-1"))
    alerts = [alert(unable(), 0, USERVM), alert(unable(), 1, USERVM)]
    snapshot = Snapshot(taken_at=T0, alerts=alerts, vms=vms)
    foreign = VmIndex((vms[0],))  # an index of another list, where the name is unique

    assert build_plan(snapshot, vm_index=foreign) == build_plan(snapshot)
    assert build_plan(snapshot, vm_index=VmIndex(vms)) == build_plan(snapshot)
    assert build_plan(snapshot, vm_index=foreign).archive == ()


# -- host states ----------------------------------------------------------------------------


def test_quiet_cycles_leave_the_host_tables_alone_and_a_host_state_change_is_still_recorded(
    sim: Simulator, tmp_path: Path, made: list[Service], planned: list[Snapshot],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with served(sim) as endpoint:
        service = new_service(made, context(sim, endpoint, ledger_url(tmp_path)))
        observed: list[int] = []
        real = service.ledger.observe_hosts

        def observe_hosts(hosts: list[Host], at: Any) -> Any:
            observed.append(len(hosts))
            return real(hosts, at)

        monkeypatch.setattr(service.ledger, "observe_hosts", observe_hosts)
        assert service.run_cycle().ok  # first sighting of every host
        assert len(observed) == 1
        assert service.run_cycle().ok
        assert service.run_cycle().ok
        assert len(observed) == 1
        host = sim.host("kvm-04")
        host.status = "Disconnected"
        assert service.run_cycle().ok
        assert len(observed) == 2
        assert service.run_cycle().ok
        assert len(observed) == 2
    history = service.ledger.host_history()
    assert (history[-1].host_id, history[-1].state) == (host.uuid, "Disconnected")
    # The planner saw the change in the cycle that recorded it, and in the quiet one after.
    for snapshot in planned[-2:]:
        assert snapshot.host_history[-1] == history[-1]
        assert {h.id: h.state for h in snapshot.hosts}[host.uuid] == "Disconnected"


def test_a_state_another_sidecar_recorded_is_noticed_and_what_this_one_sees_recorded_after_it(
    sim: Simulator, tmp_path: Path, made: list[Service]
) -> None:
    url = ledger_url(tmp_path)
    with served(sim) as endpoint:
        service = new_service(made, context(sim, endpoint, url))
        assert service.run_cycle().ok
        assert service.run_cycle().ok
        host = sim.host("kvm-04")
        with Ledger(url, holder="sidecar-b") as other:
            # The other sidecar saw a blip this one missed.
            seen = Host(id=host.uuid, name=host.name, state="Disconnected")
            assert other.observe_hosts([seen], sim.now())
        assert service.run_cycle().ok
    rows = [r for r in service.ledger.host_transitions() if r["host_id"] == host.uuid]
    assert [(r["previous_state"], r["state"]) for r in rows] == [
        ("", "Up"), ("Up", "Disconnected"), ("Disconnected", "Up")
    ]


# -- zone names for details=min --------------------------------------------------------------


def test_quiet_cycles_list_hosts_with_details_min_and_keep_each_hosts_zone_name(
    sim: Simulator, tmp_path: Path, made: list[Service], planned: list[Snapshot]
) -> None:
    with served(sim) as endpoint:
        service = new_service(made, context(sim, endpoint, ledger_url(tmp_path)))
        assert service.run_cycle().ok
        full = {h.id: h for h in planned[-1].hosts}
        sim.stats.reset()
        assert service.run_cycle().ok
        details = {r.params.get("details") for r in sim.stats.requests
                   if r.command == "listHosts"}
        assert details == {"min"}
        assert {h.id: h for h in planned[-1].hosts} == full
        assert all(h.zonename for h in full.values())
        # A zone the last full listing did not name: the cycle lists the hosts in full again.
        service.hosts.zone_names = {"another-zone": "elsewhere"}
        sim.stats.reset()
        assert service.run_cycle().ok
        details = [r.params.get("details") for r in sim.stats.requests
                   if r.command == "listHosts"]
        assert details == ["min", None]
        assert {h.id: h for h in planned[-1].hosts} == full
