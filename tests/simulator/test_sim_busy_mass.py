"""``mass-failure`` in a busy cloud: staggered detection, unrelated and second host failures,
expunged VMs; the truth stays causal and today's cleanup archives nothing wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from wiringkit import cli_env, ledger_url, run_cli, served

from cloudstack_simulator import Simulator
from cloudstack_simulator.detection import ping_of
from cloudstack_simulator.scoring import score

BUSY = {"stagger": True, "unrelated": 3, "second_failures": 2, "expunge": 3}


def busy_rack(seed: int = 5, **options: object) -> Simulator:
    sim = Simulator(seed=seed, hosts=24, vms_per_host=6, hosts_per_pod=8, tie_order="stable")
    sim.run_scenario("mass-failure", **{**BUSY, **options})
    return sim


@pytest.fixture(scope="module")
def rack() -> Simulator:
    return busy_rack()


def test_a_staggered_rack_is_noticed_host_by_host_after_each_ping_timeout(rack: Simulator) -> None:
    ping = ping_of(rack.state)
    delays = []
    for failure in rack.truth.failures:
        assert failure.died is not None and failure.first_round is not None
        delays.append(failure.first_round - failure.died)
    assert all(ping.earliest < d <= ping.latest + 30 for d in delays)  # + the investigation
    assert max(delays) - min(delays) > 20, "every host noticed at once: no stagger"


def test_unrelated_and_second_failures_add_hosts_beyond_the_rack(rack: Simulator) -> None:
    pods = {rack.host(f.host).pod_id for f in rack.truth.failures}
    assert len(rack.truth.failures) == 8 + 3 + 2
    assert len(pods) > 1


def test_genuine_second_restarts_are_canonical_and_causal(rack: Simulator) -> None:
    truth = rack.truth
    ping = ping_of(rack.state)
    assert truth.second_restarts, "no VM was restarted on a host that failed later"
    for again in truth.second_restarts:
        second = truth.failures[again.failure - 1]
        assert again.vm in second.second_restarts
        assert second.died is not None and second.first_round is not None
        assert second.died >= again.first_at, "the host died before HA placed the VM there"
        assert second.first_round - second.died > ping.earliest
        assert again.alert in truth.canonical_ids and again.alert not in truth.duplicate_ids
    assert truth.ha_facts().genuine_second_restarts == len(truth.second_restarts)


def test_expunged_vms_are_gone_from_list_virtual_machines(rack: Simulator) -> None:
    listed = {vm["name"] for vm in rack.vms_as_api()}
    assert len(rack.truth.expunged_vms) == 3
    assert not listed & set(rack.truth.expunged_vms)


def test_without_the_options_a_mass_failure_is_noticed_all_at_once_inside_the_rack() -> None:
    sim = Simulator(seed=5, hosts=24, vms_per_host=6, hosts_per_pod=8)
    sim.run_scenario("mass-failure")
    failures = sim.truth.failures
    assert len(failures) == 8 and not sim.truth.expunged_vms
    delays = [f.first_round - f.died for f in failures if f.first_round and f.died]
    assert len(delays) == 8 and max(delays) - min(delays) < 1


def test_the_same_seed_plays_the_same_busy_rack() -> None:
    def story(seed: int) -> list[tuple[str, float | None]]:
        return [(f.host, f.first_round) for f in busy_rack(seed).truth.failures]

    assert story(6) == story(6)
    assert story(6) != story(7)


def test_todays_cleanup_archives_no_wrong_alert_of_a_busy_rack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = busy_rack(seed=8)
    with served(sim) as endpoint:
        result = run_cli(["cleanup", "--apply"], cli_env(sim, endpoint, ledger_url(tmp_path)),
                         monkeypatch)  # fmt: skip
    assert result.code == 0, result.err
    graded = score(sim.truth, sim.stats.archived_by_clients())
    assert sim.truth.second_restarts
    assert graded.wrong_ids == [] and graded.second_restarts_archived == []
    assert graded.overall.correct > 0
