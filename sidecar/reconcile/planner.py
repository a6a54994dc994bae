"""``build_plan``: from a Snapshot to a deterministic Plan (pure: no I/O, no clock reads).

Pipeline: classify every alert (subject family, name check, eligibility) into fingerprint
buckets ``(alert name, family, object)``; split each bucket into incidents (incidents.split);
the earliest alert of an incident (by sent, then id) is canonical and stays, the others are
duplicates to archive; then reconstruct HA work per host failure for the report.

Written for 1M alerts in a few seconds: one dict hit per alert, each distinct subject text
parsed once, sorting and gap checks in comprehensions, no object per alert or per incident
unless it has duplicates.
"""

from __future__ import annotations

import gc
import hashlib
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from operator import attrgetter
from types import MappingProxyType
from typing import Any

from sidecar.cloudstack.models import Alert, Host, VirtualMachine
from sidecar.constants import SUPPRESSED_NAMES
from sidecar.reconcile import fingerprint as fp
from sidecar.reconcile.families.policy import (
    FAMILIES,
    SPLIT_HISTORY,
    SPLIT_NEW_FAILURE,
    SPLIT_VM_RAN,
    Policy,
)
from sidecar.reconcile.incidents import (
    FailureIndex,
    HostResolver,
    VmIndex,
    default_reason,
    split,
    vm_labels,
)
from sidecar.reconcile.model import HAIncident, MergeGroup, Plan, Snapshot, Summary, VmRestarts

_DEFAULT_POLICY = Policy()

#: Categories of alerts the plan never touches (Summary.untouched_*).
_UNKNOWN = "unknown"
_SUPPRESSED = "suppressed"

#: Shared defaults of every bucket (never mutated, only replaced).
_ONE_CUT: list[int] = [0]
#: The cuts of a split bucket whose alerts are all one incident (``_ONE_CUT`` means unsplit).
_ONE_INCIDENT: tuple[int, ...] = (0,)
_NO_REASONS: Mapping[int, set[str]] = MappingProxyType({})


class _Bucket:
    """All live alerts of one fingerprint; after planning, split into incidents."""

    __slots__ = ("alerts", "cuts", "family", "name", "reasons", "subject")

    def __init__(self, name: str, family: str, subject: fp.Subject) -> None:
        self.name = name
        self.family = family
        self.subject = subject
        self.alerts: list[Alert] = []
        """Its alerts; sorted by (sent, id) once all are in: alerts[start] of an incident is
        canonical."""
        # Shared defaults: a large history has tens of thousands of buckets.
        self.cuts: Sequence[int] = _ONE_CUT
        """Start position (in alerts) of each incident, ascending, cuts[0] == 0."""
        self.reasons: Mapping[int, set[str]] = _NO_REASONS

    @property
    def multi(self) -> list[tuple[int, int]]:
        """(start, stop) of the incidents with duplicates (built when asked: kept, the pairs
        of 100,000s of buckets would cost 60 bytes an incident while the plan is built)."""
        cuts = self.cuts
        if cuts is _ONE_CUT or len(cuts) >= len(self.alerts):  # unsplit, or one alert each
            return []
        return [(start, stop) for start, stop in self.incidents() if stop - start > 1]

    @property
    def fingerprint(self) -> str:
        return f"{self.name}|{self.family}|{self.subject.object}"

    def at(self, k: int) -> datetime:
        """``sent`` of alert ``k`` (never None: undated alerts never reach a bucket)."""
        return self.alerts[k].sent  # type: ignore[return-value]

    def incidents(self, since: int = 0) -> list[tuple[int, int]]:
        """(start, stop) positions in alerts of each incident, from incident number ``since``."""
        cuts = self.cuts
        if len(cuts) == 1:
            return [(0, len(self.alerts))] if since == 0 else []
        return list(zip(cuts[since:], [*cuts[since + 1 :], len(self.alerts)], strict=True))


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:16]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC: planning allocates millions of tuples and lists but no cycles,
    and each full collection would walk every alert of the snapshot again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _unique(alerts: Sequence[Alert]) -> Sequence[Alert]:
    """Alerts with each id once (listing pages can repeat rows); a deterministic pick."""
    if len(set(map(attrgetter("id"), alerts))) == len(alerts):
        return alerts
    best: dict[str, Alert] = {}
    for a in alerts:
        cur = best.get(a.id)
        if cur is None or _rank(a) < _rank(cur):
            best[a.id] = a
    return list(best.values())


def _rank(a: Alert) -> tuple[bool, float, str, str, int]:
    """Which copy of a repeated id to keep: the dated, earliest, then by content."""
    return (a.sent is None, a.sent.timestamp() if a.sent else 0.0, a.name, a.description, a.type)


def family_of(name: str, description: str) -> str:
    """The family an alert counts under: its subject's, or unknown if the name disagrees."""
    family = fp.parse_subject(description).family
    if family == fp.UNKNOWN or name not in FAMILIES[family].alert_names:
        return fp.UNKNOWN
    return family


class _Classifier:
    """Subject family + name check + eligibility for each distinct (name, description)."""

    def __init__(self, vms: VmIndex) -> None:
        self.vms = vms
        self.buckets: dict[tuple[str, str, str], _Bucket] = {}
        self.untouched: dict[tuple[str, str], int] = defaultdict(int)

    def add(self, name: str, description: str, members: list[Alert]) -> None:
        # Not the lru-cached parse_subject: each distinct text comes here exactly once.
        subject = fp.parse_uncached(description)
        family = subject.family
        if family == fp.UNKNOWN:
            # Capacity and other types CloudStack suppresses itself: never touched (§7).
            kind = _SUPPRESSED if name in SUPPRESSED_NAMES else _UNKNOWN
            self.untouched[(kind, fp.UNKNOWN)] += len(members)
            return
        spec = FAMILIES[family]
        if name not in spec.alert_names:
            # A known subject under a name it never comes with (e.g. "HA starting VM" under
            # ALERT.MEMORY) is not what it seems: report it as unknown, never touch it.
            self.untouched[(_UNKNOWN, fp.UNKNOWN)] += len(members)
            return
        if not spec.archivable:
            self.untouched[(_SUPPRESSED, family)] += len(members)
            return
        if family == fp.UNABLE_TO_RESTART and self.vms.name_is_ambiguous(subject.vm):
            # The subject names the VM only by name; two VMs share it: cannot tell them apart.
            self.untouched[(_UNKNOWN, family)] += len(members)
            return
        key = (name, family, subject.object)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = _Bucket(name, family, subject)
        if bucket.alerts:
            bucket.alerts += members
        else:
            bucket.alerts = members


def build_plan(
    snapshot: Snapshot, policy: Policy = _DEFAULT_POLICY, *, vm_index: VmIndex | None = None
) -> Plan:
    """Plan the de-duplication of ``snapshot``'s alerts under ``policy`` (deterministic).

    ``vm_index`` is an index built earlier over ``snapshot.vms`` (the same object): a caller
    planning again and again over an unchanged VM inventory saves rebuilding it. An index
    of another sequence is ignored.
    """
    with _gc_paused():
        if vm_index is None or vm_index.source is not snapshot.vms:
            vm_index = VmIndex(snapshot.vms)
        return _build_plan(snapshot, policy, vm_index)


def _build_plan(snapshot: Snapshot, policy: Policy, vm_index: VmIndex) -> Plan:
    alerts = snapshot.alerts
    plan = _plan(alerts, snapshot, policy, vm_index)
    # An alert id listed twice (pages can repeat rows) must never be both kept and archived:
    # if any archived id occurs more than once, plan again on a de-duplicated list. Checking
    # only the archived ids keeps the common case cheap.
    archived = set(plan.archive)
    if sum(map(archived.__contains__, map(_ID, alerts))) != len(archived):
        plan = _plan(_unique(alerts), snapshot, policy, vm_index)
        if len(set(plan.archive)) != len(plan.archive):  # impossible once ids are unique
            raise AssertionError("an alert id appears twice in the plan")
    return plan


_ID = attrgetter("id")
_SENT = attrgetter("sent")
_ORDER = attrgetter("sent", "id")
_ALERTS = attrgetter("alerts")


def _plan(alerts: Sequence[Alert], snapshot: Snapshot, policy: Policy, vm_index: VmIndex) -> Plan:
    generated_at: datetime = policy.now or snapshot.taken_at
    classifier = _Classifier(vm_index)

    # Hot loop: one dict hit per alert (duplicates share their subject text).
    by_text: dict[tuple[str, str], list[Alert]] = {}
    get = by_text.get
    no_time: list[Alert] = []
    for a in alerts:
        if a.sent is None:
            no_time.append(a)  # cannot be placed in time: never touched
            continue
        key = (a.name, a.description)
        members = get(key)
        if members is None:
            by_text[key] = [a]
        else:
            members.append(a)
    for (name, description), members in by_text.items():
        classifier.add(name, description, members)
    del by_text

    live = list(classifier.buckets.values())
    families: dict[str, list[_Bucket]] = defaultdict(list)
    for b in live:
        families[b.family].append(b)

    resolver = HostResolver(snapshot.hosts, snapshot.host_history, (b.subject for b in live))
    history_max_gap = timedelta(seconds=policy.history_max_gap)
    restart_latency = timedelta(seconds=policy.restart_latency)

    def plan_family(family: str, markers_of: Callable[[_Bucket], Sequence[datetime]]) -> None:
        rule = FAMILIES[family].split
        gap = timedelta(seconds=policy.gap_for(family))
        lead = restart_latency if rule == SPLIT_NEW_FAILURE else timedelta(0)
        for b in families.get(family, ()):
            members = b.alerts
            n = len(members)
            if n < 2:
                continue
            # (sent, id): the earliest is canonical, ties broken by id for determinism.
            members.sort(key=_ORDER)
            times = list(map(_SENT, members))  # transient: 8 bytes an alert saved for good
            cuts, b.reasons = split(
                times,
                rule,
                gap,
                host=resolver.resolve(b.subject) if rule == SPLIT_HISTORY else None,
                resolver=resolver,
                history_max_gap=history_max_gap,
                markers=markers_of(b),
                marker_lead=lead,
            )
            # 8 bytes a cut instead of a list slot and an int object (40 bytes): a million
            # alerts have some 700,000 incidents, all alive until the plan is built.
            b.cuts = array("q", cuts) if len(cuts) > 1 else _ONE_INCIDENT

    def no_markers(b: _Bucket) -> Sequence[datetime]:
        return ()

    # Order matters: host failures mark new failures for "HA starting VM", whose canonicals
    # mark "the VM ran again" for "Unable to restart". Markers are canonicals only.
    marker_rules = (SPLIT_NEW_FAILURE, SPLIT_VM_RAN)
    for family, spec in FAMILIES.items():
        if spec.split not in marker_rules:
            plan_family(family, no_markers)
    failures_by_zone = _failure_starts(families.get(fp.HOST_IS_DOWN, ()), resolver)

    def failures_near(b: _Bucket) -> Sequence[datetime]:
        """New failures that may concern the VM: those in its zone when the VM list knows it."""
        vm = vm_index.find(b.subject.vm, b.subject.instance)
        if vm is None or not vm.zoneid:
            return failures_by_zone[_ANY_ZONE]
        return failures_by_zone.get(vm.zoneid, failures_by_zone[_NO_ZONE])

    plan_family(fp.HA_STARTING_VM, failures_near)
    vm_ran_names = {b.subject.vm for b in families.get(fp.UNABLE_TO_RESTART, ())}
    ran_at: dict[str, list[datetime]] = defaultdict(list)
    for b in families.get(fp.HA_STARTING_VM, ()):
        if b.subject.vm in vm_ran_names:
            ran_at[b.subject.vm].extend(b.at(c) for c in b.cuts)
    for times in ran_at.values():
        times.sort()
    plan_family(fp.UNABLE_TO_RESTART, lambda b: ran_at.get(b.subject.vm, ()))

    groups = _merge_groups(live, policy)
    archive = [d for g in groups for d in g.duplicates]
    archive.sort()

    incidents = _ha_incidents(families, policy, resolver, vm_index, generated_at,
                              snapshot.vm_host_history)

    by_family: dict[str, int] = defaultdict(int)
    for family, buckets in families.items():
        by_family[family] += sum(map(len, map(_ALERTS, buckets)))
    untouched = {_UNKNOWN: len(no_time), _SUPPRESSED: 0}
    for (kind, family), count in classifier.untouched.items():
        untouched[kind] += count
        by_family[family] += count
    for a in no_time:
        by_family[family_of(a.name, a.description)] += 1

    summary = Summary(
        alerts_scanned=len(alerts),
        groups=len(groups),
        duplicates=len(archive),
        untouched_unknown=untouched[_UNKNOWN],
        untouched_suppressed=untouched[_SUPPRESSED],
        ha_incidents=len(incidents),
        duplicate_rounds=sum(i.duplicate_rounds for i in incidents),
        # Every VM restart incident with several "HA starting VM" (attributed to a host
        # failure or not, in the families planned or not): the VM may have run twice.
        vms_restarted_more_than_once=sum(
            len(b.multi) for b in families.get(fp.HA_STARTING_VM, ())
        ),
        ha_backlog=sum(len(i.backlog) for i in incidents),
        by_family=dict(sorted(by_family.items())),
    )
    return Plan(
        generated_at=generated_at,
        groups=groups,
        archive=tuple(archive),
        ha_incidents=incidents,
        summary=summary,
    )


def _failure_starts(
    buckets: Sequence[_Bucket], resolver: HostResolver
) -> dict[str, list[datetime]]:
    """When each host failure (incident of a "Host is down" bucket) began, per zone id, sorted.

    Each zone's list also holds the failures of unknown zone (they may be in it); key
    ``_ANY_ZONE`` holds every failure (for a VM of unknown zone) and ``_NO_ZONE`` only those
    of unknown zone (for a VM of a zone no known failure is in).
    """
    unknown: list[datetime] = []
    every: list[datetime] = []
    by_zone: dict[str, list[datetime]] = defaultdict(list)
    for b in buckets:
        host = resolver.hosts_by_id.get(resolver.resolve(b.subject) or "")
        starts = [b.at(c) for c in b.cuts]
        every += starts
        if host is not None and host.zoneid:
            by_zone[host.zoneid] += starts
        else:
            unknown += starts
    out = {zone: sorted(times + unknown) for zone, times in by_zone.items()}
    out[_ANY_ZONE] = sorted(every)
    out[_NO_ZONE] = sorted(unknown)
    return out


_ANY_ZONE = ""
_NO_ZONE = "\0no-zone"


def _merge_groups(buckets: Sequence[_Bucket], policy: Policy) -> tuple[MergeGroup, ...]:
    """One MergeGroup per incident with at least one duplicate, in the families planned."""
    groups: list[MergeGroup] = []
    append = groups.append
    sha1 = hashlib.sha1
    # One string object per distinct reason: a million-alert plan holds 100,000s of groups,
    # and a reason each would cost ~130 bytes a group.
    gap_reasons: dict[str, str] = {}
    texts: dict[str, str] = {}
    for b in buckets:
        if not policy.plans(b.family):
            continue
        multi = b.multi
        if not multi:
            continue
        family, name, obj = b.family, b.name, b.subject.object
        fingerprint = f"{name}|{family}|{obj}"
        salt = f"group|{fingerprint}|"
        gap_reason = gap_reasons.get(family)
        if gap_reason is None:
            gap_reason = gap_reasons[family] = "same fingerprint, " + default_reason(
                FAMILIES[family].split, policy.gap_for(family)
            )
        members, reasons = b.alerts, b.reasons
        for start, stop in multi:
            canonical = members[start].id
            why = reasons.get(start)
            if why:
                text = "same fingerprint, " + "; ".join(sorted(why))
                reason = texts.setdefault(text, text)
            else:
                reason = gap_reason
            append(
                MergeGroup(
                    sha1((salt + canonical).encode(), usedforsecurity=False).hexdigest()[:16],
                    family,
                    obj,
                    fingerprint,
                    name,
                    canonical,
                    tuple(map(_ID, members[start + 1 : stop])),
                    b.at(start),
                    b.at(stop - 1),
                    reason,
                )
            )
    groups.sort(key=_GROUP_ORDER)
    return tuple(groups)


_GROUP_ORDER = attrgetter("first_sent", "fingerprint", "canonical")


#: One incident of a bucket: (bucket, start, stop) positions in its alerts.
_Part = tuple[_Bucket, int, int]
_NO_PARTS: array[int] = array("q")


def _since(b: _Bucket, horizon: datetime | None) -> list[tuple[int, int]]:
    """The bucket's incidents starting at or after ``horizon`` (all when None)."""
    if horizon is None or b.at(0) >= horizon:
        return b.incidents()
    if b.at(-1) < horizon:
        return []
    cuts = b.cuts
    lo, hi = 0, len(cuts)
    while lo < hi:  # first incident whose canonical is at or after the horizon
        mid = (lo + hi) // 2
        if b.at(cuts[mid]) < horizon:
            lo = mid + 1
        else:
            hi = mid
    return b.incidents(lo)


def _ha_incidents(
    families: Mapping[str, Sequence[_Bucket]],
    policy: Policy,
    resolver: HostResolver,
    vms: VmIndex,
    now: datetime,
    vm_host_history: Mapping[str, Sequence[str]],
) -> tuple[HAIncident, ...]:
    """HA work per host failure: rounds, restarts per VM, duplicate rounds and backlog.

    CloudStack has no API for ``op_ha_work`` (§8.3), so it is reconstructed from alerts: each
    "Host is down, …" alert is one scheduling round (one HA row per HA-enabled VM of the host),
    each "HA starting VM" one restart. A host failure is one incident of the host's "Host is
    down" fingerprint (split as in incidents.split). Itemised: failures within
    ``policy.ha_horizon`` of now, and each host's latest failure while the host is not Up.

    "HA starting VM" names the VM, not the host, so restarts are attributed (the unit is one
    incident of the VM's fingerprint: its duplicate restarts are one HA event) by this rule:
    1. if the VM was on a host (its current host in the VM list, or a host the ledger saw it
       on: Snapshot.vm_host_history) with a failure whose window [first round, last round +
       ha_backlog_after] holds the restart, the latest such failure;
    2. else the failures whose window holds the restart, only those in the VM's zone when the
       snapshot knows it: if exactly one, that one. Several (a mass failure) or none leave the
       restart unattributed rather than guessing; it still counts in its merge group and in
       Summary.vms_restarted_more_than_once.
    "Unable to restart" names the host, so it goes to that host's failure in the window.
    """
    window = timedelta(seconds=policy.ha_backlog_after)
    horizon = None if policy.ha_horizon is None else now - timedelta(seconds=policy.ha_horizon)
    failures: list[_Part] = []
    starts: list[datetime] = []
    ends: list[datetime] = []
    keys: list[str] = []
    zones: list[str] = []
    for b in families.get(fp.HOST_IS_DOWN, ()):
        key = resolver.key(b.subject)
        host = resolver.hosts_by_id.get(key)
        parts = b.incidents()
        if horizon is not None:
            # Beyond the horizon only a host the snapshot shows failed keeps its latest failure.
            still_failed = host is not None and host.state != "Up"
            parts = [
                (start, stop) for n, (start, stop) in enumerate(parts)
                if b.at(stop - 1) + window >= horizon
                or (still_failed and n == len(parts) - 1)
            ]
        for start, stop in parts:
            failures.append((b, start, stop))
            starts.append(b.at(start))
            ends.append(b.at(stop - 1))
            keys.append(key)
            zones.append(host.zoneid if host else "")
    if not failures:
        return ()
    index = FailureIndex(starts, ends, keys, zones, window, [f[0].subject.object for f in failures])
    oldest = index.starts[0]

    # By position in index order: (bucket number, start, stop) of each attributed restart,
    # flat in an int64 array (a tuple each held 70 bytes, and a large history has 100,000s).
    restarts: dict[int, array[int]] = {}
    unable: list[list[_Part]] = [[] for _ in failures]
    starting = families.get(fp.HA_STARTING_VM, ())
    for number, b in enumerate(starting):
        vm = vms.find(b.subject.vm, b.subject.instance)
        zone = vm.zoneid if vm is not None else ""
        seen_on = {*vm_host_history.get(b.subject.instance, ())}
        if vm is not None and vm.hostid:
            seen_on.add(vm.hostid)
        for start, stop in _since(b, oldest):
            at = b.at(start)
            pos = max(
                (p for p in (index.of_host(h, at) for h in seen_on) if p is not None),
                default=None,
            )
            if pos is None:
                found = index.around(at, zone)
                if len(found) != 1:
                    continue
                pos = found[0]
            flat = restarts.get(pos)
            if flat is None:
                flat = restarts[pos] = array("q")
            flat.extend((number, start, stop))
    for b in families.get(fp.UNABLE_TO_RESTART, ()):
        key = resolver.key(b.subject)
        for start, stop in _since(b, oldest):
            pos = index.of_host(key, b.at(start))
            if pos is not None:
                unable[pos].append((b, start, stop))

    latest = {positions[-1] for positions in index.by_key.values()}
    # Equal VmRestarts are one object: a VM restarted once in each of many failures would
    # otherwise hold a 64-byte copy per failure (228,000 in a 1M-alert history).
    shared: dict[tuple[str, str, int, str], VmRestarts] = {}
    out = []
    for pos, n in enumerate(index.order):
        flat = restarts.pop(pos, _NO_PARTS)
        attributed = [(starting[flat[k]], flat[k + 1], flat[k + 2])
                      for k in range(0, len(flat), 3)]
        out.append(_ha_incident(failures[n], resolver.hosts_by_id.get(keys[n]), attributed,
                                unable[pos], is_latest=pos in latest, vms=vms, now=now,
                                window=window, shared=shared))
    out.sort(key=lambda i: (i.started, i.host, i.incident_id))
    return tuple(out)


def _ha_incident(
    failure: _Part,
    host: Host | None,
    restarts: Sequence[_Part],
    unable: Sequence[_Part],
    *,
    is_latest: bool,
    vms: VmIndex,
    now: datetime,
    window: timedelta,
    shared: dict[tuple[str, str, int, str], VmRestarts],
) -> HAIncident:
    """One HAIncident: the affected VMs, their restarts, the backlog and the alerts."""
    b, start, stop = failure
    failed = host is None or host.state != "Up"
    tallies: dict[tuple[str, str], list[Any]] = {}  # (name, instance) -> [restarts, vm]
    if is_latest and failed:
        # VMs still on the host count only for its latest failure while it is not Up.
        on_host = vms.on_host(host.id) if host else vms.on_host_named(b.subject.host)
        for vm in on_host:
            if vm.haenable:
                tallies[(vm.name, vm.instancename)] = [0, vm]
    ids = list(map(_ID, b.alerts[start:stop]))
    last = (b.at(stop - 1), b.alerts[stop - 1].id)
    for rb, rs, re in restarts:
        s = rb.subject
        tally = tallies.get((s.vm, s.instance))
        if tally is None:
            tallies[(s.vm, s.instance)] = [re - rs, vms.find(s.vm, s.instance)]
        else:
            tally[0] += re - rs
        ids += map(_ID, rb.alerts[rs:re])
        last = max(last, (rb.at(re - 1), rb.alerts[re - 1].id))
    for rb, rs, re in unable:
        s = rb.subject
        if not any(name == s.vm for name, _ in tallies):
            tallies[(s.vm, "")] = [0, vms.find(s.vm)]
        ids += map(_ID, rb.alerts[rs:re])
        last = max(last, (rb.at(re - 1), rb.alerts[re - 1].id))
    names = sorted(tallies)
    started = b.at(start)
    backlog = []
    if is_latest and failed and now - started >= window:
        # HA-enabled VMs of the still-failed host not running elsewhere by now; a VM the
        # snapshot does not know is not guessed about.
        for name in names:
            vm = tallies[name][1]
            if vm is not None and vm.haenable and not _running_elsewhere(vm, host, b):
                backlog.append(name)
    subject = b.subject
    ids.sort()
    return HAIncident(
        incident_id=_sha(f"ha|{subject.object}|{b.alerts[start].id}"),
        host=subject.host or f"id:{subject.host_id or subject.host_uuid}",
        host_id=(host.id if host else "") or subject.host_uuid or subject.host_id,
        zone=subject.zone,
        started=started,
        last_seen=last[0],
        rounds=stop - start,
        duplicate_rounds=stop - start - 1,
        vms=tuple(_vm_restarts(name, inst, tallies[(name, inst)][0],
                               _vm_id(tallies[(name, inst)][1]), shared)
                  for name, inst in names),
        backlog=tuple(vm_labels(backlog)),
        restarted_more_than_once=tuple(vm_labels([k for k in names if tallies[k][0] > 1])),
        alert_ids=tuple(ids),
        host_state=host.state if host else "",
    )


def _vm_restarts(
    vm: str, instance: str, restarts: int, vm_id: str,
    shared: dict[tuple[str, str, int, str], VmRestarts],
) -> VmRestarts:
    """A VmRestarts, the one already made if ``shared`` holds an equal one (it is frozen)."""
    key = (vm, instance, restarts, vm_id)
    found = shared.get(key)
    if found is None:
        found = shared[key] = VmRestarts(vm, instance, restarts, vm_id)
    return found


def _vm_id(vm: VirtualMachine | None) -> str:
    return vm.id if vm is not None else ""


def _running_elsewhere(vm: VirtualMachine, host: Host | None, b: _Bucket) -> bool:
    """Is the VM Running on another host than the failed one?"""
    if vm.state != "Running":
        return False
    if host is not None:
        return bool(vm.hostid) and vm.hostid != host.id
    return bool(vm.hostname) and vm.hostname != b.subject.host


__all__ = ["build_plan", "family_of"]
