"""A busy cloud's seeded history: its size and pace, and a truth that stays exact and causal."""

from __future__ import annotations

import bisect
import hashlib
from collections import defaultdict

import pytest

from cloudstack_simulator import Simulator
from cloudstack_simulator.detection import ping_of
from cloudstack_simulator.seed import SeedReport
from cloudstack_simulator.truth import GAP, family_of

#: 120 hosts in racks of 10 with 8 VMs each; many failures an hour, so 8,000 alerts are days.
BUSY = {"failures_per_hour": 6.0, "rack_share": 0.05, "second_failure_share": 0.2}


def busy_cloud(seed: int = 31, alerts: int = 8000, **options: object) -> Simulator:
    sim = Simulator(seed=seed, hosts=120, vms_per_host=8, hosts_per_pod=10, tie_order="stable")
    sim.seed_history(alerts=alerts, **{**BUSY, **options})
    return sim


@pytest.fixture(scope="module")
def history() -> tuple[Simulator, SeedReport]:
    sim = Simulator(seed=31, hosts=120, vms_per_host=8, hosts_per_pod=10, tie_order="stable")
    return sim, sim.seed_history(alerts=8000, **BUSY)


def rows(sim: Simulator) -> dict[str, tuple[str, str, int, bool, str | None]]:
    """uuid -> (name, subject, sent, archived, body)."""
    t = sim.state.alerts
    return {
        t.uuid[i]: (t.name[i], t.subject[i], t.last_sent[i], t.flags[i] == 1, t.content[i])
        for i in range(len(t))
    }


def digest(sim: Simulator) -> str:
    text = repr(sorted((a["id"], a["description"], a["sent"]) for a in sim.alerts_as_api()))
    text += repr(sorted(sim.truth.duplicate_ids)) + repr(sim.truth.second_restarts)
    text += repr(sorted((v["name"], v.get("hostname")) for v in sim.vms_as_api()))
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_busy_history_has_the_requested_size_and_ratio_over_the_time_its_pace_needs(
    history: tuple[Simulator, SeedReport],
) -> None:
    sim, report = history
    assert abs(report.alerts - 8000) <= 80
    assert report.duplicate_ratio == pytest.approx(0.3, abs=0.02)
    sent = sim.state.alerts.last_sent
    assert max(sent) <= sim.clock.time() - 3600
    assert (max(sent) - min(sent)) / 3600 == pytest.approx(report.span_hours, rel=0.05)
    slower = busy_cloud(failures_per_hour=3.0)
    assert max(slower.state.alerts.last_sent) - min(slower.state.alerts.last_sent) > 1.6 * (
        max(sent) - min(sent)
    )


def test_the_same_seed_seeds_the_same_busy_history() -> None:
    assert digest(busy_cloud(4, alerts=2000)) == digest(busy_cloud(4, alerts=2000))
    assert digest(busy_cloud(4, alerts=2000)) != digest(busy_cloud(5, alerts=2000))


def test_every_duplicate_is_a_live_later_copy_of_a_canonical_in_its_failure(
    history: tuple[Simulator, SeedReport],
) -> None:
    sim, _ = history
    alerts, truth = rows(sim), sim.truth
    assert len(truth.duplicate_ids) > 1500
    seen = set()
    for failure in truth.failures:
        by_subject: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for uuid in failure.alert_ids:
            by_subject[alerts[uuid][1]].append((alerts[uuid][2], uuid))
        for subject, copies in by_subject.items():
            copies.sort()
            canonical = copies[0][1]
            assert canonical not in truth.duplicate_ids
            assert len({sent for sent, _ in copies}) == len(copies), "two copies in one second"
            assert copies[-1][0] - copies[0][0] < GAP
            for _, uuid in copies[1:]:
                assert uuid in failure.duplicate_ids
                seen.add(uuid)
                if uuid in truth.duplicate_ids:
                    assert not alerts[uuid][3] and family_of(subject) != "other"
    assert truth.duplicate_ids <= seen
    assert not truth.duplicate_ids & truth.canonical_ids


def test_no_host_is_reported_down_sooner_than_the_ping_timeout_allows(
    history: tuple[Simulator, SeedReport],
) -> None:
    sim, _ = history
    earliest = ping_of(sim.state).earliest
    crashes = [f for f in sim.truth.failures if f.died is not None]
    assert len(crashes) > 100
    for failure in crashes:
        assert failure.first_round is not None
        assert failure.first_round - failure.died > earliest


def test_a_rack_failing_at_once_is_reported_host_by_host(
    history: tuple[Simulator, SeedReport],
) -> None:
    sim, _ = history
    racks: dict[float, list[float]] = defaultdict(list)
    for failure in sim.truth.failures:
        if failure.died is not None and failure.first_round is not None:
            racks[failure.died].append(failure.first_round)
    spreads = [max(r) - min(r) for r in racks.values() if len(r) >= 5]
    assert spreads and max(spreads) >= 60


def test_other_hosts_fail_between_parallel_copies_of_one_restart(
    history: tuple[Simulator, SeedReport],
) -> None:
    sim, _ = history
    alerts, truth = rows(sim), sim.truth
    firsts = sorted(f.first_round for f in truth.failures if f.first_round is not None)
    between, widest = 0, 0
    for failure in truth.failures:
        starts: dict[str, list[int]] = defaultdict(list)
        for uuid in failure.alert_ids:
            _name, subject, sent, _archived, _body = alerts[uuid]
            if family_of(subject) == "ha_starting_vm":
                starts[subject].append(sent)
        for sent in starts.values():
            if len(sent) > 1:
                lo, hi = min(sent), max(sent)
                widest = max(widest, hi - lo)
                between += bisect.bisect_left(firsts, hi) > bisect.bisect_right(firsts, lo)
    assert between >= 10
    assert 20 < widest <= 40, "parallel copies should spread over parallel_spread seconds"


def test_genuine_second_restarts_are_kept_and_follow_the_vm_to_its_new_host(
    history: tuple[Simulator, SeedReport],
) -> None:
    sim, report = history
    alerts, truth = rows(sim), sim.truth
    earliest = ping_of(sim.state).earliest
    assert report.second_restarts == len(truth.second_restarts)
    assert sum(1 for s in truth.second_restarts if s.within_gap) >= 5
    for again in truth.second_restarts:
        first, second = truth.failures[again.first_failure - 1], truth.failures[again.failure - 1]
        assert first.host != second.host
        assert second.died is not None and second.first_round is not None
        assert second.died >= again.first_at, "the host died before HA placed the VM there"
        assert second.first_round - second.died > earliest
        assert again.alert in truth.canonical_ids and again.alert not in truth.duplicate_ids
        round_ = next(u for u in second.alert_ids if family_of(alerts[u][1]) == "host_is_down")
        listed = (alerts[round_][4] or "").rsplit("following VMs:", 1)[-1].split()
        assert again.vm in listed, "the failed host did not run the VM"


def test_a_rack_mate_up_again_before_the_queue_reaches_a_vm_never_ran_it_when_it_died() -> None:
    # Racks of 20 hosts x 20 VMs: the queue drains for longer than a host stays down.
    sim = Simulator(seed=1, hosts=60, vms_per_host=20, hosts_per_pod=20)
    sim.seed_history(alerts=20_000, failures_per_hour=2.0, rack_share=0.3)
    truth = sim.truth
    assert len(truth.second_restarts) > 1000
    for again in truth.second_restarts:
        died = truth.failures[again.failure - 1].died
        assert died is not None and died >= again.first_at


def test_expunged_vms_are_gone_from_the_vm_list_after_their_last_alert(
    history: tuple[Simulator, SeedReport],
) -> None:
    sim, report = history
    expunged = set(sim.truth.expunged_vms)
    assert len(expunged) == report.expunged > 10
    assert not expunged & {vm["name"] for vm in sim.vms_as_api()}
    last: dict[str, int] = {}
    for _name, subject, sent, _archived, _body in rows(sim).values():
        for vm in expunged:
            if subject.startswith((f"HA starting VM: {vm} (", f"Unable to restart {vm} ")):
                last[vm] = max(last.get(vm, 0), sent)
    for vm in sim.state.vms.values():
        if vm.name in expunged:
            assert vm.removed is not None and vm.removed > last[vm.name]


def test_vms_end_on_the_host_ha_last_restarted_them_on(
    history: tuple[Simulator, SeedReport],
) -> None:
    sim, _ = history
    fresh = Simulator(seed=31, hosts=120, vms_per_host=8, hosts_per_pod=10)
    before = {v.name: v.host_id for v in fresh.state.vms.values()}
    moved = [v for v in sim.state.vms.values() if v.removed is None and v.host_id != before[v.name]]
    assert len(moved) > 100
    assert all(v.last_host_id is not None for v in moved)


def test_busy_options_without_a_pace_are_refused() -> None:
    sim = Simulator(seed=2, hosts=2, vms_per_host=2)
    with pytest.raises(ValueError, match="need failures_per_hour"):
        sim.seed_history(alerts=100, rack_share=0.5)
    with pytest.raises(ValueError, match="parallel_spread"):
        sim.seed_history(alerts=100, failures_per_hour=1.0, parallel_spread=0.0)
