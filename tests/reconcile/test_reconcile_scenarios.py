"""The reconciler against the simulator's ground truth: scenarios and seeded history."""

from __future__ import annotations

import pytest

from cloudstack_simulator import Simulator
from sidecar.model.resources import Alert, Host, VirtualMachine
from sidecar.reconcile import Plan, Policy, Snapshot, build_plan

HA_SCENARIOS = ("host-crash", "mass-failure")


def snapshot_of(sim: Simulator, alerts: list[Alert] | None = None) -> Snapshot:
    """What the sidecar would list from the simulator, converted like the lister does."""
    return Snapshot(
        taken_at=sim.now(),
        alerts=[Alert.from_api(a) for a in sim.alerts_as_api()] if alerts is None else alerts,
        hosts=[Host.from_api(h) for h in sim.hosts_as_api()],
        vms=[VirtualMachine.from_api(v) for v in sim.vms_as_api()],
    )


def plan_of(sim: Simulator) -> Plan:
    return build_plan(snapshot_of(sim), Policy())


def assert_matches_truth(sim: Simulator, plan: Plan) -> None:
    truth = sim.truth
    archive = set(plan.archive)
    assert archive == truth.duplicate_ids
    assert not archive & truth.canonical_ids
    assert not archive & (truth.unknown_ids | truth.suppressed_ids | truth.other_ids)


@pytest.mark.parametrize("profile", ["4.19.2", "4.20.0"])
@pytest.mark.parametrize("scenario", [*HA_SCENARIOS, "disconnect-flap"])
def test_exactly_the_injected_duplicates_are_found_on_affected_releases(
    profile: str, scenario: str
) -> None:
    sim = Simulator(profile=profile, seed=7, hosts=8, vms_per_host=6)
    sim.run_scenario(scenario)
    plan = plan_of(sim)
    assert sim.truth.duplicate_ids  # the scenario did inject copies
    assert_matches_truth(sim, plan)


@pytest.mark.parametrize("scenario", HA_SCENARIOS)
def test_a_fixed_release_yields_an_empty_archive(scenario: str) -> None:
    sim = Simulator(profile="4.20.1", seed=7, hosts=8, vms_per_host=6)
    sim.run_scenario(scenario)
    plan = plan_of(sim)
    assert plan.archive == ()
    assert all(i.duplicate_rounds == 0 for i in plan.ha_incidents)


def test_disconnect_flaps_merge_on_a_fixed_release_too() -> None:
    # PR #10624 only touches HA scheduling; a flapping agent still sends one alert per flap.
    sim = Simulator(profile="4.20.1", seed=7, hosts=8, vms_per_host=6)
    sim.run_scenario("disconnect-flap")
    assert_matches_truth(sim, plan_of(sim))


def test_a_host_crash_is_one_ha_incident_with_the_truths_rounds_and_double_restarts() -> None:
    sim = Simulator(profile="4.19.2", seed=7, hosts=8, vms_per_host=6)
    sim.run_scenario("host-crash")
    [failure] = sim.truth.failures
    [incident] = plan_of(sim).ha_incidents
    assert incident.host == failure.host
    assert incident.host_id == failure.host_id
    assert (incident.rounds, incident.duplicate_rounds) == (
        failure.rounds, failure.duplicate_rounds)
    assert set(incident.restarted_more_than_once) == set(failure.vms_restarted_more_than_once)
    assert set(incident.alert_ids) <= set(failure.alert_ids)


def test_a_mass_failure_is_one_ha_incident_per_failed_host() -> None:
    sim = Simulator(profile="4.19.2", seed=7, hosts=8, vms_per_host=6)
    sim.run_scenario("mass-failure")
    plan = plan_of(sim)
    rounds = {f.host: f.rounds for f in sim.truth.failures}
    assert {i.host: i.rounds for i in plan.ha_incidents} == rounds
    assert plan.summary.duplicate_rounds == sum(f.duplicate_rounds for f in sim.truth.failures)
    # Restarts of simultaneous failures cannot be told apart by time: none is guessed.
    assert all(v.restarts == 0 for i in plan.ha_incidents for v in i.vms)


def test_the_ledgers_vm_placements_attribute_the_restarts_of_a_mass_failure() -> None:
    sim = Simulator(profile="4.19.2", seed=7, hosts=8, vms_per_host=6)
    before = [VirtualMachine.from_api(v) for v in sim.vms_as_api()]
    sim.run_scenario("mass-failure")
    snapshot = snapshot_of(sim)
    snapshot = Snapshot(taken_at=snapshot.taken_at, alerts=snapshot.alerts,
                        hosts=snapshot.hosts, vms=snapshot.vms,
                        vm_host_history={v.instancename: (v.hostid,) for v in before})
    plan = build_plan(snapshot, Policy())
    twice = {f.host: set(f.vms_restarted_more_than_once) for f in sim.truth.failures}
    by_host = {i.host: i for i in plan.ha_incidents}
    assert by_host.keys() == twice.keys()
    for host, incident in by_host.items():
        # The truth also counts system VMs, which listVirtualMachines never shows.
        users = {v.name for v in before if v.hostname == host}
        assert set(incident.restarted_more_than_once) & users == twice[host] & users
        assert {v.vm for v in incident.vms if v.restarts} >= {
            v.name for v in before if v.hostname == host and v.haenable}


@pytest.mark.parametrize("profile", ["4.19.2", "4.20.1"])
def test_a_seeded_history_is_cleaned_exactly_and_once(profile: str) -> None:
    sim = Simulator(profile=profile, seed=7, hosts=8, vms_per_host=6)
    sim.seed_history(alerts=20000, duplicate_ratio=0.3)
    snapshot = snapshot_of(sim)
    plan = build_plan(snapshot, Policy())
    assert len(plan.archive) > 1000
    assert_matches_truth(sim, plan)
    archived = set(plan.archive)
    rest = [a for a in snapshot.alerts if a.id not in archived]
    assert build_plan(snapshot_of(sim, rest), Policy()).archive == ()


def test_the_plan_does_not_depend_on_listing_order() -> None:
    sim = Simulator(profile="4.19.2", seed=11, hosts=8, vms_per_host=6)
    sim.seed_history(alerts=3000, duplicate_ratio=0.3)
    sim.run_scenario("host-crash")
    alerts = [Alert.from_api(a) for a in sim.alerts_as_api()]
    forward = build_plan(snapshot_of(sim, alerts), Policy())
    backward = build_plan(snapshot_of(sim, alerts[::-1]), Policy())
    assert forward.to_json() == backward.to_json()
    assert_matches_truth(sim, forward)
