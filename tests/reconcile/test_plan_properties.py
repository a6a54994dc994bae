"""Properties of build_plan over generated snapshots (hypothesis)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.model.constants import DEDUP_ELIGIBLE_NAMES, SUPPRESSED_NAMES
from sidecar.model.plan import VmPlacement
from sidecar.model.resources import Alert, Host
from sidecar.reconcile import FAMILIES, HostStateChange, Plan, Policy, Snapshot, build_plan
from sidecar.reconcile.buckets import family_of
from sidecar.reconcile.fingerprint import parse_subject

T0 = datetime(2025, 2, 11, 10, 0, tzinfo=UTC)

# A small universe so that fingerprints repeat: hosts sharing name prefixes and names across
# zones, VMs sharing names across instances.
HOSTS = [("kvm-1", 1, "zone1", "Pod1", "h-1"), ("kvm-10", 10, "zone1", "Pod1", "h-10"),
         ("kvm-1", 31, "zone2", "Pod 2", "h-31")]
VMS = [("web01", "i-2-14-VM"), ("web01", "i-3-20-VM"), ("db01", "i-2-15-VM")]


def _texts() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, db, zone, pod, _ in HOSTS:
        desc = f"name: {name} (id:{db}), availability zone: {zone}, pod: {pod}"
        out += [
            ("ALERT.COMPUTE.HOST", f"Host is down, {desc}"),
            ("ALERT.COMPUTE.HOST", f"Host is down,  {desc} "),  # whitespace variant
            ("ALERT.COMPUTE.HOST", f"Host down, {db}"),
            ("ALERT.COMPUTE.HOST", f"Host disconnected, {desc}"),
            ("ALERT.COMPUTE.HOST", f"Host in ALERT state, {desc}"),
            ("ALERT.HA.ACTION", f"HA Fencing of host id={db}, in dc id=1 performed"),
            ("ALERT.USERVM", f"Unable to restart web01 which was running on host name: {name}"
                             f"(id:{db}), availability zone: {zone}, pod: {pod}"),
        ]
    for vm, inst in VMS:
        out += [
            ("ALERT.USERVM", f"HA starting VM: {vm} ({inst})"),
            ("ALERT.SERVICE.DOMAINROUTER", f"HA starting VM: {vm} ({inst})"),
            ("ALERT.MEMORY", f"HA starting VM: {vm} ({inst})"),  # name mismatch: unknown
        ]
    out += [
        ("ALERT.USERVM", "VM (name: web02, id: 15) stopped unexpectedly on host id:1, "
                         "availability zone id:1, pod id:1"),
        ("ALERT.TYPE.SYNC", "VM state sync alert"),
        ("ALERT.MEMORY", "System Alert: Low Available Memory in cluster c1 pod Pod1 of "
                         "availability zone: zone1"),
        ("ALERT.STORAGE", "System Alert: Low Available Storage in cluster c1"),
        ("ALERT.HA.ACTION", "HA operation performed for host"),
        ("ALERT.COMPUTE.HOST", "Unable to investigate the host kvm-1 (1), VM high "
                               "availability manager is disabled."),
    ]
    return out


TEXTS = _texts()

raw_alert = st.tuples(
    st.sampled_from(TEXTS),
    st.integers(min_value=0, max_value=4000),  # sent, seconds after T0
)
history_entry = st.tuples(
    st.sampled_from(HOSTS),
    st.sampled_from(["Up", "Down", "Alert", "Disconnected"]),
    st.integers(min_value=-600, max_value=4000),
)


@st.composite
def snapshots(draw: st.DrawFn) -> tuple[Snapshot, Policy]:
    raws = draw(st.lists(raw_alert, min_size=0, max_size=40))
    ids = draw(st.permutations(range(len(raws))))
    alerts = [
        Alert(id=f"id-{n:03d}", type=-1, name=name, description=text,
              sent=T0 + timedelta(seconds=at))
        for n, ((name, text), at) in zip(ids, raws, strict=True)
    ]
    with_hosts = draw(st.booleans())
    hosts = [Host(id=hid, name=name, state=draw(st.sampled_from(["Up", "Down"])),
                  zonename=zone, zoneid=f"z-{zone}")
             for name, _, zone, _, hid in HOSTS] if with_hosts else []
    history = [
        HostStateChange(host_id=h[4], host_name=h[0], state=state,
                        at=T0 + timedelta(seconds=at))
        for h, state, at in draw(st.lists(history_entry, max_size=8))
    ]
    families = draw(st.one_of(st.none(), st.frozensets(st.sampled_from(sorted(FAMILIES)))))
    policy = Policy(gap_window=draw(st.sampled_from([60.0, 600.0, 1800.0])), families=families)
    snapshot = Snapshot(taken_at=T0 + timedelta(seconds=5000), alerts=alerts, hosts=hosts,
                        host_history=history)
    return snapshot, policy


PROPERTY = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _without(snapshot: Snapshot, ids: set[str]) -> Snapshot:
    return Snapshot(taken_at=snapshot.taken_at,
                    alerts=[a for a in snapshot.alerts if a.id not in ids],
                    hosts=snapshot.hosts, vms=snapshot.vms,
                    host_history=snapshot.host_history)


@PROPERTY
@given(snapshots())
def test_a_canonical_alert_is_never_archived(case: tuple[Snapshot, Policy]) -> None:
    snapshot, policy = case
    plan = build_plan(snapshot, policy)
    assert not {g.canonical for g in plan.groups} & set(plan.archive)


@PROPERTY
@given(snapshots())
def test_no_group_mixes_objects_names_or_zones(case: tuple[Snapshot, Policy]) -> None:
    snapshot, policy = case
    by_id = {a.id: a for a in snapshot.alerts}
    for group in build_plan(snapshot, policy).groups:
        members = [by_id[i] for i in (group.canonical, *group.duplicates)]
        assert {a.name for a in members} == {group.alert_name}
        subjects = [parse_subject(a.description) for a in members]
        assert {s.family for s in subjects} == {group.family}
        assert {s.object for s in subjects} == {group.object}
        assert len({(s.zone, s.zone_id, s.zone_uuid) for s in subjects}) == 1
        assert min((a.sent, a.id) for a in members) == (by_id[group.canonical].sent,
                                                         group.canonical)


@PROPERTY
@given(snapshots())
def test_planning_again_after_archiving_finds_nothing(case: tuple[Snapshot, Policy]) -> None:
    snapshot, policy = case
    plan = build_plan(snapshot, policy)
    again = build_plan(_without(snapshot, set(plan.archive)), policy)
    assert again.archive == ()


@PROPERTY
@given(snapshots(), st.randoms(use_true_random=False))
def test_the_plan_does_not_depend_on_input_order(
    case: tuple[Snapshot, Policy], rnd: random.Random
) -> None:
    snapshot, policy = case
    shuffled = list(snapshot.alerts)
    rnd.shuffle(shuffled)
    history = list(snapshot.host_history)
    rnd.shuffle(history)
    other = Snapshot(taken_at=snapshot.taken_at, alerts=shuffled, hosts=snapshot.hosts,
                     host_history=history)
    assert build_plan(other, policy).to_json() == build_plan(snapshot, policy).to_json()


@PROPERTY
@given(snapshots())
def test_capacity_unknown_and_suppressed_alerts_are_never_archived(
    case: tuple[Snapshot, Policy],
) -> None:
    snapshot, policy = case
    by_id = {a.id: a for a in snapshot.alerts}
    for alert_id in build_plan(snapshot, policy).archive:
        a = by_id[alert_id]
        assert a.name in DEDUP_ELIGIBLE_NAMES
        assert a.name not in SUPPRESSED_NAMES
        family = family_of(a.name, a.description)
        assert family != "unknown"
        assert FAMILIES[family].archivable


@PROPERTY
@given(snapshots())
def test_archive_is_exactly_the_union_of_the_groups_duplicates(
    case: tuple[Snapshot, Policy],
) -> None:
    snapshot, policy = case
    plan: Plan = build_plan(snapshot, policy)
    union = [d for g in plan.groups for d in g.duplicates]
    assert sorted(union) == list(plan.archive)
    assert len(set(union)) == len(union)
    assert all(g.duplicates for g in plan.groups)
    assert plan.summary.duplicates == len(plan.archive)
    assert plan.summary.groups == len(plan.groups)
    assert sum(plan.summary.by_family.values()) == plan.summary.alerts_scanned


# --- an unrelated host failure never splits the copies of one restart ------------------------

OTHER_HOSTS = [(f"kvm-{n}", n, f"h-{n}") for n in range(20, 26)]


def _down(name: str, db: int, zone: str = "zone1") -> str:
    return f"Host is down, name: {name} (id:{db}), availability zone: {zone}, pod: Pod1"


@st.composite
def restarts_with_an_unrelated_failure(draw: st.DrawFn) -> tuple[list[Alert], list[Alert],
                                                                  list[VmPlacement], float]:
    """One VM's restart copies, other hosts' failures, and one more failure to add that
    could not have killed the VM: of another host it never ran on (its placements known),
    or reported sooner after the restart than CloudStack can detect a dead host."""
    detection = draw(st.sampled_from([0.0, 30.0, 90.0, 150.0]))
    first = draw(st.integers(min_value=100, max_value=2000))
    copies = sorted(draw(st.lists(st.integers(min_value=0, max_value=40), min_size=2,
                                  max_size=5)))
    base = [Alert(id="fail-0", type=-1, name="ALERT.COMPUTE.HOST",
                  description=_down("kvm-1", 1), sent=T0)]
    base += [Alert(id=f"copy-{k}", type=-1, name="ALERT.USERVM",
                   description="HA starting VM: web01 (i-2-14-VM)",
                   sent=T0 + timedelta(seconds=first + c)) for k, c in enumerate(copies)]
    name, db, _ = draw(st.sampled_from(OTHER_HOSTS))
    known = draw(st.booleans())
    if known:  # the ledger watched the VM on h-1, then on h-2: any time of the other host
        at = draw(st.integers(min_value=first, max_value=first + copies[-1]))
    else:      # unknown host: reported within the detection time after the first restart
        at = first + draw(st.integers(min_value=0, max_value=max(0, int(detection) - 1)))
        if detection == 0:
            at = first - 1  # before the restart: it cannot cause it either
    extra = [Alert(id="fail-x", type=-1, name="ALERT.COMPUTE.HOST",
                   description=_down(name, db), sent=T0 + timedelta(seconds=at))]
    placements = ([VmPlacement("i-2-14-VM", "h-1", T0 - timedelta(days=1)),
                   VmPlacement("i-2-14-VM", "h-2", T0 + timedelta(seconds=first + 1))]
                  if known else [])
    return base, extra, placements, detection


@given(restarts_with_an_unrelated_failure())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_an_unrelated_failure_between_copies_of_one_restart_never_changes_the_archive_set(
    case: tuple[list[Alert], list[Alert], list[VmPlacement], float],
) -> None:
    base, extra, placements, detection = case
    hosts = [Host(id="h-1", name="kvm-1", state="Up", zonename="zone1", zoneid="z-1"),
             Host(id="h-2", name="kvm-2", state="Up", zonename="zone1", zoneid="z-1"),
             *(Host(id=h, name=n, state="Up", zonename="zone1", zoneid="z-1")
               for n, _, h in OTHER_HOSTS)]
    policy = Policy(failure_detection=detection, now=T0 + timedelta(hours=2))

    def archive(alerts: list[Alert]) -> tuple[str, ...]:
        snapshot = Snapshot(taken_at=T0 + timedelta(hours=2), alerts=alerts, hosts=hosts,
                            vm_placements=placements)
        return build_plan(snapshot, policy).archive

    before = archive(base)
    assert {f"copy-{k}" for k in range(1, len(base) - 1)} <= set(before)
    assert archive(base + extra) == before
