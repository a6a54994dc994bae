"""build_plan rules: fingerprints, eligibility, incident splitting, canonicals, HA incidents."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from plankit import (
    HOST,
    HOST1,
    HOST2,
    T0,
    USERVM,
    alert,
    down,
    plan_of,
    started,
    unable,
    up_at,
    vm,
)

from sidecar.model.plan import VmPlacement, VmRestarts
from sidecar.model.resources import Host
from sidecar.reconcile import Plan, Policy, Snapshot, build_plan
from sidecar.support.settings import Settings

# --- canonical and duplicates -------------------------------------------------------------


def test_copies_of_one_host_down_round_merge_and_the_earliest_stays() -> None:
    a, b, c = alert(down(), 0), alert(down(), 2), alert(down(), 61)
    plan = plan_of([c, a, b])
    assert [g.canonical for g in plan.groups] == [a.id]
    assert plan.groups[0].duplicates == (b.id, c.id)
    assert plan.archive == tuple(sorted((b.id, c.id)))


def test_equal_sent_times_are_tie_broken_by_id() -> None:
    first, second = alert(down(), 5, alert_id="b-2"), alert(down(), 5, alert_id="b-1")
    plan = plan_of([first, second])
    assert plan.groups[0].canonical == "b-1"
    assert plan.archive == ("b-2",)


def test_a_merge_group_records_count_and_first_and_last_sent() -> None:
    alerts = [alert(down(), s) for s in (0, 3, 30)]
    group = plan_of(alerts).groups[0]
    assert group.count == 3
    assert (group.first_sent, group.last_sent) == (alerts[0].sent, alerts[2].sent)
    assert group.alert_name == HOST
    assert group.fingerprint == f"{HOST}|host_is_down|host=kvm1 host_id=1 zone=zone1 pod=Pod1"


def test_a_lone_alert_is_not_a_group() -> None:
    plan = plan_of([alert(down(), 0), alert(started(), 100, USERVM)])
    assert plan.groups == ()
    assert plan.archive == ()
    assert plan.empty


def test_group_ids_derive_from_content_not_from_input_order_or_run() -> None:
    alerts = [alert(down(), 0, alert_id="x1"), alert(down(), 1, alert_id="x2")]
    one = plan_of(alerts).groups[0].group_id
    two = plan_of(list(reversed(alerts)), at=99999).groups[0].group_id
    assert one == two
    moved = [alert(down(), 0, alert_id="x0"), *alerts]
    assert plan_of(moved).groups[0].group_id != one  # another canonical, another group


def test_the_plan_round_trips_through_json() -> None:
    alerts = [alert(down(), 0), alert(down(), 1), alert(started(), 60, USERVM)]
    plan = plan_of(alerts, hosts=[HOST1], vms=[vm("web01", "i-2-14-VM", "h-2")])
    assert Plan.from_json(plan.to_json()).to_json() == plan.to_json()


# --- what is never touched ----------------------------------------------------------------


def test_different_objects_never_share_a_group() -> None:
    alerts = [
        alert(down("kvm-1", 1), 0), alert(down("kvm-10", 10), 1),
        alert(down("kvm-1", 1, zone="zone2"), 2),
        alert(started("web01", "i-2-14-VM"), 3, USERVM),
        alert(started("web01", "i-3-20-VM"), 4, USERVM),
    ]
    assert plan_of(alerts).archive == ()


def test_the_same_subject_under_two_names_is_two_fingerprints() -> None:
    alerts = [alert(started(), 0, USERVM), alert(started(), 1, "ALERT.SERVICE.DOMAINROUTER")]
    assert plan_of(alerts).archive == ()


def test_a_known_subject_under_a_name_it_never_comes_with_is_unknown() -> None:
    alerts = [alert(started(), 0, "ALERT.MEMORY"), alert(started(), 1, "ALERT.MEMORY")]
    plan = plan_of(alerts)
    assert plan.archive == ()
    assert plan.summary.untouched_unknown == 2
    assert plan.summary.by_family == {"unknown": 2}


def test_capacity_alerts_are_never_touched_and_count_as_suppressed() -> None:
    text = "System Alert: Low Available Memory in cluster c1 pod Pod1 of availability zone: zone1"
    alerts = [alert(text, s, "ALERT.MEMORY") for s in (0, 1, 2)]
    plan = plan_of(alerts)
    assert plan.archive == ()
    assert plan.summary.untouched_suppressed == 3


def test_vm_state_sync_is_parsed_but_never_archived() -> None:
    alerts = [alert("VM state sync alert", s, "ALERT.TYPE.SYNC") for s in (0, 1, 2)]
    plan = plan_of(alerts)
    assert plan.archive == ()
    assert plan.summary.untouched_suppressed == 3
    assert plan.summary.by_family == {"vm_state_sync": 3}


def test_unknown_subjects_of_eligible_names_are_never_touched() -> None:
    alerts = [alert("HA operation performed for host", s, "ALERT.HA.ACTION") for s in (0, 1)]
    plan = plan_of(alerts)
    assert plan.archive == ()
    assert plan.summary.untouched_unknown == 2


def test_an_alert_without_a_sent_date_is_left_alone() -> None:
    undated = dataclasses.replace(alert(down(), 0), sent=None)
    plan = plan_of([alert(down(), 1), undated, alert(down(), 2)])
    assert undated.id not in plan.archive
    assert plan.summary.untouched_unknown == 1
    assert plan.summary.by_family["host_is_down"] == 3


def test_unable_to_restart_is_left_alone_when_two_vms_share_the_name() -> None:
    vms = [vm("web01", "i-2-14-VM", "h-1"), vm("web01", "i-3-20-VM", "h-1")]
    alerts = [alert(unable(), 0, USERVM), alert(unable(), 1, USERVM)]
    plan = plan_of(alerts, vms=vms)
    assert plan.archive == ()
    assert plan.summary.untouched_unknown == 2


def test_an_alert_listed_twice_is_never_both_kept_and_archived() -> None:
    a, b = alert(down(), 0), alert(down(), 1)
    for alerts in ([a, b, a], [a, a, b], [b, a, b]):
        plan = plan_of(alerts)
        assert plan.archive == (b.id,)
        assert plan.groups[0].canonical == a.id


def test_the_families_filter_plans_only_the_families_chosen() -> None:
    alerts = [alert(down(), 0), alert(down(), 1), alert(started(), 60, USERVM),
              alert(started(), 61, USERVM)]
    plan = plan_of(alerts, policy=Policy(families=frozenset({"ha_starting_vm"})))
    assert {g.family for g in plan.groups} == {"ha_starting_vm"}
    assert plan.archive == (alerts[3].id,)


# --- incidents: gap window and history ----------------------------------------------------


def test_alerts_further_apart_than_the_gap_window_are_two_incidents() -> None:
    alerts = [alert(down(), 0), alert(down(), 300), alert(down(), 901), alert(down(), 1000)]
    plan = plan_of(alerts)
    assert [(g.canonical, g.duplicates) for g in plan.groups] == [
        (alerts[0].id, (alerts[1].id,)),
        (alerts[2].id, (alerts[3].id,)),
    ]


def test_the_gap_is_measured_between_consecutive_alerts() -> None:
    alerts = [alert(down(), s) for s in (0, 500, 1000, 1500)]
    assert len(plan_of(alerts).archive) == 3


def test_a_policy_is_hashable_and_comparable() -> None:
    assert hash(Policy(family_gaps={"host_down": 5.0})) == hash(Policy())
    assert Policy(family_gaps={"host_down": 5.0}) != Policy()


def test_a_per_family_gap_overrides_the_default() -> None:
    alerts = [alert(down(), 0), alert(down(), 300)]
    policy = Policy(family_gaps={"host_is_down": 60.0})
    assert plan_of(alerts, policy=policy).archive == ()
    assert plan_of(alerts).archive == (alerts[1].id,)


def test_a_recorded_recovery_between_two_rounds_makes_two_incidents() -> None:
    alerts = [alert(down(), 0), alert(down(), 120)]
    history = [up_at(-600, state="Up"), up_at(-1, state="Down"), up_at(60)]
    plan = plan_of(alerts, hosts=[HOST1], history=history)
    assert plan.archive == ()


def test_history_without_a_recovery_merges_rounds_beyond_the_gap_window() -> None:
    alerts = [alert(down(), 0), alert(down(), 3000)]
    history = [up_at(-600, state="Up"), up_at(-1, state="Down")]
    plan = plan_of(alerts, hosts=[HOST1], history=history)
    assert plan.archive == (alerts[1].id,)
    assert "no recovery" in plan.groups[0].reason


def test_history_that_starts_after_an_alert_does_not_vouch_for_the_gap_before_it() -> None:
    alerts = [alert(down(), 0), alert(down(), 3000)]
    history = [up_at(1000, state="Down")]  # the ledger started watching after the first round
    assert plan_of(alerts, hosts=[HOST1], history=history).archive == ()


def test_rounds_further_apart_than_history_max_gap_are_two_incidents() -> None:
    alerts = [alert(down(), 0), alert(down(), 3000)]
    history = [up_at(-600, state="Down")]
    policy = Policy(history_max_gap=2000.0)
    assert plan_of(alerts, hosts=[HOST1], history=history, policy=policy).archive == ()


def test_history_is_matched_through_the_host_list_by_name_and_zone() -> None:
    other_zone = Host(id="h-9", name="kvm1", state="Up", zonename="zone2", zoneid="z-2")
    alerts = [alert(down(), 0), alert(down(), 120)]
    history = [up_at(-600, state="Down"), up_at(60)]
    # h-9 shares the name in another zone: the zone tells them apart.
    assert plan_of(alerts, hosts=[HOST1, other_zone], history=history).archive == ()
    # h-9's recovery says nothing about kvm1 of zone1.
    h9 = [up_at(-600, "h-9", state="Down"), up_at(60, "h-9")]
    assert plan_of(alerts, hosts=[HOST1, other_zone], history=h9).archive == (alerts[1].id,)


def test_host_down_by_db_id_learns_its_host_from_the_host_is_down_subject() -> None:
    alerts = [alert("Host down, 1", 0), alert("Host down, 1", 120), alert(down(), 1)]
    history = [up_at(-600, state="Down"), up_at(60)]
    assert plan_of(alerts, hosts=[HOST1], history=history).archive == ()
    assert plan_of(alerts, hosts=[HOST1]).archive == (alerts[1].id,)


def test_disconnect_flaps_merge_within_the_window_even_across_recoveries() -> None:
    text = "Host disconnected, name: kvm1 (id:1), availability zone: zone1, pod: Pod1"
    alerts = [alert(text, s) for s in (0, 100, 200, 1000)]
    history = [up_at(-600), up_at(50, state="Disconnected"), up_at(60), up_at(150)]
    plan = plan_of(alerts, hosts=[HOST1], history=history)
    assert [len(g.duplicates) for g in plan.groups] == [2]
    assert alerts[3].id not in plan.archive


def test_unable_to_restart_after_the_vm_ran_again_is_a_new_incident() -> None:
    alerts = [alert(unable(), 0, USERVM), alert(unable(), 60, USERVM),
              alert(started(), 90, USERVM), alert(unable(), 120, USERVM)]
    plan = plan_of(alerts)
    assert plan.archive == (alerts[1].id,)


def test_restarts_of_one_vm_within_the_window_are_one_incident() -> None:
    alerts = [alert(started(), 0, USERVM), alert(started(), 4, USERVM)]
    plan = plan_of(alerts)
    assert plan.archive == (alerts[1].id,)
    assert plan.summary.vms_restarted_more_than_once == 1


def test_a_restart_after_a_new_host_failure_is_a_new_incident() -> None:
    # web01 came back on kvm2 after kvm1 failed; kvm2 failed too and HA restarted it again.
    alerts = [alert(down("kvm1", 1), 0), alert(started(), 60, USERVM),
              alert(down("kvm2", 2), 200), alert(started(), 260, USERVM)]
    assert plan_of(alerts).archive == ()


def test_a_failure_seconds_before_a_parallel_copy_does_not_split_it() -> None:
    alerts = [alert(down("kvm1", 1), 0), alert(started(), 60, USERVM),
              alert(down("kvm2", 2), 61), alert(started(), 63, USERVM)]
    assert plan_of(alerts).archive == (alerts[3].id,)


def test_a_failure_among_parallel_copies_still_splits_a_later_restart() -> None:
    alerts = [alert(down("kvm1", 1), 0), alert(started(), 60, USERVM),
              alert(started(), 63, USERVM), alert(down("kvm2", 2), 160),
              alert(started(), 175, USERVM)]
    plan = plan_of(alerts)
    assert plan.archive == (alerts[2].id,)
    assert "no new host failure" in plan.groups[-1].reason


def test_a_failure_reported_sooner_than_detection_after_a_restart_does_not_split_it() -> None:
    # Placed at 60 s, the VM cannot be on a host reported down at 61 s: CloudStack needs at
    # least 60 s (its ping clock's minute, ping.interval and ping.timeout) to report a dead host.
    alerts = [alert(down("kvm1", 1), 0), alert(started(), 60, USERVM),
              alert(down("kvm2", 2), 61), alert(started(), 63, USERVM),
              alert(started(), 90, USERVM)]
    assert plan_of(alerts).archive == tuple(sorted((alerts[3].id, alerts[4].id)))
    # With a zero detection time (the old rule) the failure at 61 s splits the restart at 90 s.
    assert plan_of(alerts, policy=Policy(failure_detection=0)).archive == (alerts[3].id,)


def test_a_failure_of_a_host_the_vm_never_ran_on_does_not_split_its_restarts() -> None:
    watched = [VmPlacement("i-2-14-VM", "h-1", T0 - timedelta(days=1)),
               VmPlacement("i-2-14-VM", "h-3", T0 + timedelta(seconds=61))]
    alerts = [alert(down("kvm1", 1), 0), alert(started(), 60, USERVM),
              alert(down("kvm2", 2), 400), alert(started(), 420, USERVM)]
    hosts = [HOST1, HOST2, Host(id="h-3", name="kvm3", state="Up", zoneid="z-1")]
    assert plan_of(alerts, hosts=hosts, placements=watched).archive == (alerts[3].id,)
    # On its new host kvm3, a failure reported 400 s later did split it.
    alerts[2] = alert(down("kvm3", 3), 400)
    hosts[2] = dataclasses.replace(hosts[2], state="Down")
    assert plan_of(alerts, hosts=hosts, placements=watched).archive == ()


def test_only_failures_in_the_vms_zone_split_its_restarts() -> None:
    zone2 = Host(id="h-5", name="kvm5", state="Down", zonename="zone2", zoneid="z-2")
    alerts = [alert(down("kvm1", 1), 0), alert(started(), 60, USERVM),
              alert(down("kvm5", 5, zone="zone2"), 200), alert(started(), 260, USERVM)]
    vms = [vm("web01", "i-2-14-VM", "h-2")]
    plan = plan_of(alerts, hosts=[HOST1, HOST2, zone2], vms=vms)
    assert plan.archive == (alerts[3].id,)
    assert plan_of(alerts, hosts=[HOST1, HOST2, zone2]).archive == ()  # VM's zone unknown
    elsewhere = [dataclasses.replace(vms[0], zoneid="z-3")]  # a zone with no failure at all
    assert plan_of(alerts, hosts=[HOST1, HOST2, zone2], vms=elsewhere).archive == (
        alerts[3].id,)


# --- policy -------------------------------------------------------------------------------


def test_policy_for_takes_the_gap_window_and_backlog_delay_from_settings() -> None:
    from sidecar.ops.policy import policy_for

    policy = policy_for(Settings(alert_gap_window=120.0, ha_backlog_after=60.0))
    assert (policy.gap_window, policy.ha_backlog_after) == (120.0, 60.0)
    assert policy.gap_for("host_is_down") == 120.0


def test_policy_and_settings_share_their_defaults() -> None:
    assert (Policy().gap_window, Policy().ha_backlog_after) == (
        Settings().alert_gap_window, Settings().ha_backlog_after)


@pytest.mark.parametrize("field", ["gap_window", "ha_backlog_after", "history_max_gap"])
def test_a_policy_with_a_non_positive_duration_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Policy(**{field: 0.0})  # type: ignore[arg-type]


def test_a_negative_restart_latency_is_refused_but_zero_is_allowed() -> None:
    assert Policy(restart_latency=0.0).restart_latency == 0.0
    with pytest.raises(ValueError, match="restart_latency"):
        Policy(restart_latency=-1.0)


def test_the_plan_is_stamped_with_the_policy_clock_when_given() -> None:
    now = T0 + timedelta(days=3)
    assert plan_of([alert(down(), 0)], policy=Policy(now=now)).generated_at == now
    assert plan_of([alert(down(), 0)], at=5).generated_at == T0 + timedelta(seconds=5)


# --- HA incidents -------------------------------------------------------------------------


def test_each_host_is_down_is_one_round_and_extra_rounds_are_duplicates() -> None:
    plan = plan_of([alert(down(), s) for s in (0, 2, 65)], hosts=[HOST1])
    [incident] = plan.ha_incidents
    assert (incident.rounds, incident.duplicate_rounds) == (3, 2)
    assert (incident.host, incident.host_id, incident.zone) == ("kvm1", "h-1", "zone1")
    assert incident.host_state == "Down"
    assert plan.summary.duplicate_rounds == 2


def test_restarts_are_counted_per_vm_and_double_restarts_are_flagged() -> None:
    alerts = [alert(down(), 0), alert(down(), 3),
              alert(started("web01", "i-2-14-VM"), 60, USERVM),
              alert(started("web01", "i-2-14-VM"), 62, USERVM),
              alert(started("db01", "i-2-15-VM"), 61, USERVM)]
    vms = [vm("web01", "i-2-14-VM", "h-2"), vm("db01", "i-2-15-VM", "h-2")]
    [incident] = plan_of(alerts, hosts=[HOST1, HOST2], vms=vms).ha_incidents
    assert [(v.vm, v.restarts, v.vm_id) for v in incident.vms] == [
        ("db01", 1, "vm-i-2-15-VM"), ("web01", 2, "vm-i-2-14-VM")]
    assert incident.restarted_more_than_once == ("web01",)
    assert set(incident.alert_ids) == {a.id for a in alerts}


def test_a_vm_restarted_alike_in_two_failures_shares_one_restart_record() -> None:
    # Frozen and equal: one object, not a copy per failure (a large history has 100,000s).
    alerts = [alert(down(), 0), alert(started("web01", "i-2-14-VM"), 60, USERVM),
              alert(down(), 7200), alert(started("web01", "i-2-14-VM"), 7260, USERVM)]
    vms = [vm("web01", "i-2-14-VM", "h-2")]
    first, second = plan_of(alerts, hosts=[HOST1, HOST2], vms=vms, at=7300).ha_incidents
    assert first.vms == second.vms == (VmRestarts("web01", "i-2-14-VM", 1, "vm-i-2-14-VM"),)
    assert first.vms[0] is second.vms[0]


def test_ha_enabled_vms_still_on_the_failed_host_are_backlog_after_the_delay() -> None:
    vms = [vm("app01", "i-2-16-VM", "h-1", state="Stopped"),
           vm("web01", "i-2-14-VM", "h-2"),
           vm("noha", "i-2-17-VM", "h-1", state="Stopped", ha=False)]
    alerts = [alert(down(), 0), alert(started("web01", "i-2-14-VM"), 60, USERVM)]
    late = plan_of(alerts, hosts=[HOST1, HOST2], vms=vms, at=901)
    [incident] = late.ha_incidents
    assert [v.vm for v in incident.vms] == ["app01", "web01"]
    assert incident.backlog == ("app01",)
    assert late.summary.ha_backlog == 1
    early = plan_of(alerts, hosts=[HOST1, HOST2], vms=vms, at=899)
    assert early.ha_incidents[0].backlog == ()


def test_a_recovered_host_has_no_backlog() -> None:
    vms = [vm("app01", "i-2-16-VM", "h-1", state="Running")]
    recovered = dataclasses.replace(HOST1, state="Up")
    plan = plan_of([alert(down(), 0)], hosts=[recovered], vms=vms, at=5000)
    assert plan.ha_incidents[0].backlog == ()
    assert plan.ha_incidents[0].vms == ()


def test_a_restart_is_not_attributed_when_several_hosts_failed_at_once() -> None:
    alerts = [alert(down("kvm1", 1), 0), alert(down("kvm2", 2), 1),
              alert(started("web01", "i-2-14-VM"), 60, USERVM)]
    plan = plan_of(alerts)
    assert all(i.vms == () for i in plan.ha_incidents)


def test_a_restart_is_attributed_through_the_vm_list_during_a_mass_failure() -> None:
    hosts = [HOST1, dataclasses.replace(HOST2, state="Down")]
    alerts = [alert(down("kvm1", 1), 0), alert(down("kvm2", 2), 1),
              alert(started("web01", "i-2-14-VM"), 60, USERVM)]
    vms = [vm("web01", "i-2-14-VM", "h-2", state="Starting")]
    by_host = {i.host: i for i in plan_of(alerts, hosts=hosts, vms=vms).ha_incidents}
    assert [v.restarts for v in by_host["kvm2"].vms] == [1]
    assert by_host["kvm1"].vms == ()


def test_a_restart_is_attributed_through_the_hosts_the_ledger_saw_the_vm_on() -> None:
    alerts = [alert(down("kvm1", 1), 0), alert(down("kvm2", 2), 1),
              alert(started("web01", "i-2-14-VM"), 60, USERVM),
              alert(started("web01", "i-2-14-VM"), 62, USERVM)]
    hosts = [HOST1, dataclasses.replace(HOST2, state="Down")]
    vms = [vm("web01", "i-2-14-VM", "h-3")]  # running elsewhere by now
    snapshot = Snapshot(taken_at=T0 + timedelta(hours=1), alerts=alerts, hosts=hosts, vms=vms,
                        vm_host_history={"i-2-14-VM": ("h-3", "h-1")})
    by_host = {i.host: i for i in build_plan(snapshot).ha_incidents}
    assert [(v.vm, v.restarts) for v in by_host["kvm1"].vms] == [("web01", 2)]
    assert by_host["kvm1"].restarted_more_than_once == ("web01",)
    assert by_host["kvm2"].vms == ()


def test_a_restart_long_after_the_last_round_is_not_attributed() -> None:
    alerts = [alert(down(), 0), alert(started(), 5000, USERVM)]
    assert plan_of(alerts, at=6000).ha_incidents[0].vms == ()


def test_unable_to_restart_goes_to_the_failure_of_the_host_it_names() -> None:
    alerts = [alert(down("kvm1", 1), 0), alert(down("kvm2", 2), 1),
              alert(unable("web01", "kvm2", 2), 30, USERVM)]
    by_host = {i.host: i for i in plan_of(alerts).ha_incidents}
    assert [v.vm for v in by_host["kvm2"].vms] == ["web01"]
    assert by_host["kvm1"].vms == ()


def test_two_failures_of_one_host_are_two_ha_incidents() -> None:
    alerts = [alert(down(), 0), alert(down(), 5), alert(down(), 7200)]
    plan = plan_of(alerts, at=8000)
    assert [(i.rounds, i.duplicate_rounds) for i in plan.ha_incidents] == [(2, 1), (1, 0)]
    assert len({i.incident_id for i in plan.ha_incidents}) == 2


def test_old_failures_beyond_the_ha_horizon_are_not_itemised() -> None:
    alerts = [alert(down(), 0), alert(down(), 5)]
    ten_days = 10 * 86400
    assert plan_of(alerts, at=ten_days).ha_incidents == ()
    assert plan_of(alerts, at=ten_days).archive == (alerts[1].id,)
    assert len(plan_of(alerts, at=ten_days, policy=Policy(ha_horizon=None)).ha_incidents) == 1
    # ...unless the host list shows the host still failed: its latest failure stays.
    assert len(plan_of(alerts, at=ten_days, hosts=[HOST1]).ha_incidents) == 1


def test_summary_counts_every_alert_once() -> None:
    alerts = [alert(down(), 0), alert(down(), 1), alert(started(), 60, USERVM),
              alert("VM state sync alert", 2, "ALERT.TYPE.SYNC"), alert("?", 3, "ALERT.CPU"),
              alert("HA operation performed for host", 4, "ALERT.HA.ACTION")]
    s = plan_of(alerts).summary
    assert s.alerts_scanned == 6
    assert (s.groups, s.duplicates, s.untouched_unknown, s.untouched_suppressed) == (1, 1, 1, 2)
    assert sum(s.by_family.values()) == 6
    assert s.ha_incidents == 1


def test_a_bucket_never_split_claims_no_duplicates() -> None:
    # Fail safe: only split() says which alerts are copies; a bucket no rule has split (a
    # family added without a plan step, say) must not read as one incident of copies.
    from sidecar.reconcile import fingerprint as fp
    from sidecar.reconcile.buckets import Bucket

    bucket = Bucket(HOST, fp.HOST_IS_DOWN, fp.parse_subject(down()))
    bucket.alerts = [alert(down(), 0), alert(down(), 3), alert(down(), 6)]
    assert bucket.multi == []
    bucket.cuts = (0,)  # split: all three one incident
    assert bucket.multi == [(0, 3)]
