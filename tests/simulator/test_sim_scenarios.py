"""Scenarios per release profile: the exact alert and op_ha_work pattern of each, on the clock."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from cloudstack_simulator import Simulator
from cloudstack_simulator.profiles import PROFILES, HostRef, VmRef, ZoneRef

DEFECT = ("4.19.2", "4.20.0")
FIXED = ("4.20.1", "4.22")


def make(profile: str, **kwargs: object) -> Simulator:
    return Simulator(profile=profile, seed=5, hosts=4, vms_per_host=3, **kwargs)  # type: ignore[arg-type]


def subjects(sim: Simulator, uuids: list[str]) -> list[str]:
    table = sim.state.alerts
    return [table.subject[table.find_uuid(u) - 1] for u in uuids]  # type: ignore[operator]


def crash(sim: Simulator, **options: object) -> tuple[list[str], dict[str, bool]]:
    """Crash kvm-01 to completion; returns its failure's subjects and {vm name: ha}."""
    host = sim.host("kvm-01")
    vms = {vm.name: vm.ha_enabled for vm in sim.state.vms_on_host(host.id)}
    run = sim.run_scenario("host-crash", host="kvm-01", **options)
    (failure,) = run.failures
    return subjects(sim, failure.alert_ids), vms


def count(found: list[str], prefix: str) -> int:
    return sum(1 for s in found if s.startswith(prefix))


@pytest.mark.parametrize("profile", DEFECT)
def test_a_host_crash_on_an_affected_release_repeats_alerts_and_ha_rows(profile: str) -> None:
    sim = make(profile)
    found, vms = crash(sim, parallel_rate=0.0)
    ha_vms = [name for name, ha in vms.items() if ha]
    host = sim.host("kvm-01")
    # Two overlapping investigations plus the Host-HA fence: three rounds.
    assert count(found, f"Host down, {host.id}") == 2
    assert count(found, "Host is down, name: kvm-01 (id:") == 3
    assert count(found, "HA Fencing of host id=") == 1
    assert sorted(s for s in found if s.startswith("HA starting VM: ")) == sorted(
        f"HA starting VM: {name} ({sim.state.vms[vm_id].instance_name})"
        for vm_id, name in ((v.id, v.name) for v in sim.state.vms.values() if v.name in ha_vms)
    )
    (failure,) = sim.truth.failures
    assert failure.rounds == 3 and failure.duplicate_rounds == 2
    rows = sim.ha_work(failure=failure.id)
    assert len(rows) == 3 * len(vms)
    per_vm = Counter(r["instance_id"] for r in rows)
    assert set(per_vm.values()) == {3}
    assert all(r["step"] == "Done" and r["type"] == "HA" for r in rows)
    outcomes = Counter(r["outcome"] for r in rows)
    assert outcomes["restarted"] == len(ha_vms)
    assert outcomes["VM is not HA enabled so we're done."] == len(vms) - len(ha_vms)
    assert outcomes["VM has been changed"] == 2 * len(vms)
    assert len(sim.truth.duplicate_ids) == 3
    assert failure.vms_restarted_more_than_once == []


@pytest.mark.parametrize("profile", DEFECT)
def test_duplicate_rows_taken_in_parallel_restart_a_vm_more_than_once(profile: str) -> None:
    sim = make(profile)
    found, vms = crash(sim, parallel_rate=1.0)
    ha_vms = sorted(name for name, ha in vms.items() if ha)
    starts = Counter(
        s.split(" (")[0].removeprefix("HA starting VM: ") for s in found if s.startswith("HA")
    )
    starts.pop("HA Fencing of host id=1, in dc id=1 performed", None)
    assert {name: starts[name] for name in ha_vms} == dict.fromkeys(ha_vms, 3)
    (failure,) = sim.truth.failures
    assert sorted(failure.vms_restarted_more_than_once) == ha_vms
    assert len(sim.truth.duplicate_ids) == 3 + 2 * len(ha_vms)


@pytest.mark.parametrize("profile", DEFECT)
def test_copies_of_a_subject_are_seconds_apart_and_never_in_the_same_second(profile: str) -> None:
    sim = make(profile)
    crash(sim, parallel_rate=0.5)
    (failure,) = sim.truth.failures
    table = sim.state.alerts
    by_subject: dict[str, list[int]] = {}
    for uuid in failure.alert_ids:
        row = table.find_uuid(uuid)
        assert row is not None
        by_subject.setdefault(table.subject[row - 1], []).append(table.last_sent[row - 1])
    for sent in by_subject.values():
        assert sent == sorted(sent) and len(set(sent)) == len(sent)
        assert sent[-1] - sent[0] < 120
    canonical = set(failure.canonical_ids)
    for uuid in failure.duplicate_ids:
        assert uuid not in canonical


@pytest.mark.parametrize("profile", FIXED)
def test_a_host_crash_on_a_fixed_release_has_one_alert_and_one_row_per_vm(profile: str) -> None:
    sim = make(profile)
    found, vms = crash(sim, parallel_rate=1.0)
    host = sim.host("kvm-01")
    assert count(found, f"Host down, {host.id}") == 1
    assert count(found, "Host is down, ") == 1
    assert count(found, "HA Fencing of host id=") == 1
    assert count(found, "HA starting VM: ") == sum(vms.values())
    assert len(set(found)) == len(found)
    assert sim.truth.duplicate_ids == set()
    (failure,) = sim.truth.failures
    assert failure.rounds == 1 and failure.vms_restarted_more_than_once == []
    rows = sim.ha_work(failure=failure.id)
    assert len(rows) == len(vms)
    assert all(r["reason"] == "HostDown" for r in rows)


def test_affected_releases_leave_the_reason_column_empty() -> None:
    sim = make("4.19.2")
    crash(sim)
    assert {r["reason"] for r in sim.ha_work()} == {None}


def test_host_and_host_ha_states_move_with_the_clock() -> None:
    sim = make("4.19.2")
    host = sim.host("kvm-01")
    sim.start_scenario("host-crash", host="kvm-01", recover_after=900)
    seen = []
    for step in (1, 150, 5, 20, 600, 125, 10):  # t = 1, 151, 156, 176, 776, 901, 911
        sim.clock.advance(step)
        seen.append((host.status, host.ha_state))
    assert seen == [
        ("Up", "Suspect"),
        ("Alert", "Checking"),
        ("Down", "Checking"),
        ("Down", "Fenced"),
        ("Down", "Fenced"),
        ("Connecting", "Fenced"),
        ("Up", "Available"),
    ]
    assert sim.hosts_as_api()[0]["disconnected"]


def test_ha_restarts_vms_on_other_hosts_and_stops_the_non_ha_ones() -> None:
    sim = make("4.19.2")
    host = sim.host("kvm-01")
    before = {vm.id: vm.ha_enabled for vm in sim.state.vms_on_host(host.id)}
    sim.run_scenario("host-crash", host="kvm-01", recover_after=None)
    for vm_id, ha in before.items():
        vm = sim.state.vms[vm_id]
        if ha:
            assert vm.state == "Running" and vm.host_id not in (None, host.id)
            assert sim.state.hosts[vm.host_id].status == "Up"
        else:
            assert vm.state == "Stopped" and vm.host_id is None and vm.last_host_id == host.id
    assert host.status == "Down"


def test_steps_run_only_when_the_clock_reaches_them() -> None:
    sim = make("4.19.2")
    run = sim.start_scenario("host-crash", host="kvm-01")
    assert sim.alerts_as_api() == [] and not run.done
    sim.clock.advance(149)
    assert sim.alerts_as_api() == []
    sim.clock.advance(10)
    assert [a["description"] for a in sim.alerts_as_api()][-1] == "Host down, 1"
    sim.clock.advance(3600)
    assert run.done


def test_the_same_seed_gives_the_same_story() -> None:
    def story(seed: int) -> list[tuple[str, str, str]]:
        sim = Simulator(seed=seed, hosts=4, vms_per_host=3)
        sim.run_scenario("host-crash")
        return [(a["id"], a["description"], a["sent"]) for a in sim.alerts_as_api()]

    assert story(3) == story(3)
    assert story(3) != story(4)


@pytest.mark.parametrize(("profile", "ident"), [("4.19.2", "id:1"), ("4.20.1", "id:UUID")])
def test_a_flapping_host_sends_host_disconnected_copies(profile: str, ident: str) -> None:
    sim = make(profile)
    host = sim.host("kvm-01")
    run = sim.run_scenario("disconnect-flap", host="kvm-01", flaps=3, interval=45)
    (failure,) = run.failures
    expected = (
        f"Host disconnected, name: kvm-01 ({ident.replace('UUID', host.uuid)}), "
        "availability zone: zone-a, pod: pod-1"
    )
    assert subjects(sim, failure.alert_ids) == [expected] * 3
    assert len(failure.duplicate_ids) == 2
    assert sim.ha_work() == [] and host.status == "Up"


def test_a_rack_failure_fails_every_host_of_the_pod() -> None:
    sim = Simulator(profile="4.19.2", seed=5, hosts=8, vms_per_host=3, hosts_per_pod=4)
    run = sim.run_scenario("mass-failure", pod="pod-1", recover_after=None)
    assert run.hosts == ["kvm-01", "kvm-02", "kvm-03", "kvm-04"]
    assert len(run.failures) == 4
    pod1 = {h.id for h in sim.state.hosts.values() if h.name in run.hosts}
    for vm in sim.state.vms.values():
        if vm.ha_enabled and vm.removed is None:
            assert vm.host_id not in pod1 and vm.state == "Running"


@pytest.mark.parametrize(
    ("profile", "subject"),
    [
        ("4.19.2", "Unable to restart {vm} which was running on host name: kvm-01(id:1), "
                   "availability zone: zone-a, pod: pod-1"),
        ("4.20.1", 'Unable to restart {vm} which was running on host Host {{"id":1,"name":'
                   '"kvm-01","type":"Routing","uuid":"{uuid}"}}, availability zone: zone-a, '
                   "pod: pod-1"),
    ],
)  # fmt: skip
def test_without_capacity_ha_sends_unable_to_restart_in_the_release_wording(
    profile: str, subject: str
) -> None:
    sim = make(profile)
    host = sim.host("kvm-01")
    run = sim.start_scenario(
        "mass-failure", hosts=["kvm-01"], capacity=0, parallel_rate=0.0, recover_after=None
    )
    sim.clock.advance(300)
    (failure,) = run.failures
    found = subjects(sim, failure.alert_ids)
    first_vm = next(
        vm for vm in sim.state.vms.values() if vm.last_host_id == host.id and vm.ha_enabled
    )
    assert subject.format(vm=first_vm.name, uuid=host.uuid) in found


def test_maintenance_migrates_vms_without_alerts_or_ha_rows() -> None:
    sim = make("4.19.2")
    host = sim.host("kvm-02")
    run = sim.start_scenario("maintenance", host="kvm-02", duration=600)
    sim.clock.advance(120)
    assert host.resource_state == "Maintenance"
    assert sim.state.vms_on_host(host.id) == []
    sim.clock.advance(600)
    assert host.resource_state == "Enabled" and run.done
    assert sim.alerts_as_api() == []
    rows = sim.ha_work()
    assert (
        rows
        and {r["type"] for r in rows} == {"Migration"}
        and {r["step"] for r in rows} == {"Done"}
    )


def test_an_unknown_scenario_or_host_is_refused() -> None:
    sim = make("4.19.2")
    with pytest.raises(ValueError, match="unknown scenario"):
        sim.start_scenario("meteor")
    with pytest.raises(ValueError, match="no hypervisor host"):
        sim.start_scenario("host-crash", host="kvm-99")


# --- the wording of every release -------------------------------------------------------------

HOST = HostRef(12, "8e8e68e7-19ea-4a78-bbdb-6e79d27729c9", "kvm-02")
ZONE = ZoneRef(1, "d4a81f75-5d92-415e-ab59-e85cc2ce56d9", "zone-a")
VM = VmRef(14, "915653c4-298b-4d74-bdee-4ced282114f1", "web01", "i-2-14-VM")
H = 'Host {"id":12,"name":"kvm-02","type":"Routing","uuid":"8e8e68e7-19ea-4a78-bbdb-6e79d27729c9"}'
Z = 'Zone {"id": "1", "name": "zone-a", "uuid": "d4a81f75-5d92-415e-ab59-e85cc2ce56d9"}'


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_subjects_follow_the_release_wording(profile: str) -> None:
    p = PROFILES[profile]
    new = profile in FIXED
    assert p.host_down(HOST)[0] == "Host down, 12"
    assert p.host_is_down(HOST, ZONE, "pod-1", ["web01"]) == (
        "Host is down, name: kvm-02 (id:12), availability zone: zone-a, pod: pod-1",
        "Host [name: kvm-02 (id:12), availability zone: zone-a, pod: pod-1] is down.  "
        "Starting HA on the following VMs: web01",
    )
    assert p.ha_starting(VM) == ("HA starting VM: web01 (i-2-14-VM)",) * 2
    assert p.ha_fencing(HOST, ZONE)[0] == "HA Fencing of host id=12, in dc id=1 performed"
    if new:
        assert p.host_down(HOST)[1] == f"Host {H} is down. Starting HA on the VMs"
        assert p.host_disconnected(HOST, ZONE, "pod-1")[0] == (
            "Host disconnected, name: kvm-02 (id:8e8e68e7-19ea-4a78-bbdb-6e79d27729c9), "
            "availability zone: zone-a, pod: pod-1"
        )
        assert p.host_alert_state(HOST, ZONE, "pod-1") == (
            f"Host in ALERT state, {H}, availability zone: {Z}, pod: pod-1",
            f"In availability zone {Z}, host is in alert state: {H}",
        )
        assert p.unable_to_restart(VM, HOST, ZONE, "pod-1")[0] == (
            f"Unable to restart web01 which was running on host {H}, availability zone: "
            "zone-a, pod: pod-1"
        )
    else:
        assert p.host_down(HOST)[1] == "Host is down: 12-kvm-02. Starting HA on the VMs"
        assert p.host_disconnected(HOST, ZONE, "pod-1")[0] == (
            "Host disconnected, name: kvm-02 (id:12), availability zone: zone-a, pod: pod-1"
        )
        assert p.host_alert_state(HOST, ZONE, None) == (
            "Host in ALERT state, name: kvm-02 (id:12), availability zone: zone-a, pod: NO POD",
            "In availability zone 1, host is in alert state: 12-kvm-02",
        )
        assert p.unable_to_restart(VM, HOST, ZONE, "pod-1")[0] == (
            "Unable to restart web01 which was running on host name: kvm-02(id:12), "
            "availability zone: zone-a, pod: pod-1"
        )


def test_retries_without_capacity_repeat_unable_to_restart_as_new_groups_until_error() -> None:
    sim = make("4.19.2")
    host = sim.host("kvm-01")
    run = sim.start_scenario(
        "mass-failure", hosts=["kvm-01"], capacity=0, parallel_rate=0.0, recover_after=None
    )
    sim.clock.advance(4 * 3600)
    (failure,) = run.failures
    table = sim.state.alerts
    unable: dict[str, list[int]] = {}
    for uuid in failure.alert_ids:
        row = table.find_uuid(uuid)
        assert row is not None
        if table.subject[row - 1].startswith("Unable to restart"):
            unable.setdefault(table.subject[row - 1], []).append(table.last_sent[row - 1])
    ha_vms = [v for v in sim.state.vms.values() if v.last_host_id == host.id and v.ha_enabled]
    assert len(unable) == len(ha_vms)
    for sent in unable.values():
        assert len(sent) == 5  # vm.ha.migration.max.retries
        assert all(b - a > 600 for a, b in itertools.pairwise(sent))
    assert not {u for u in failure.alert_ids if u in sim.truth.duplicate_ids} - {
        u
        for u in failure.alert_ids
        if table.subject[(table.find_uuid(u) or 0) - 1].startswith("Host")
    }
    primaries = [r for r in sim.ha_work(failure=failure.id) if r["tried"]]
    assert {r["step"] for r in primaries} == {"Error"}
