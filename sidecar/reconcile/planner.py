"""``build_plan``: from a Snapshot to a deterministic Plan (pure: no I/O, no clock reads).

Pipeline: classify every alert into fingerprint buckets ``(alert name, family, object)``
(buckets); split each bucket into incidents and make a merge group of each incident with
duplicates (dedup); reconstruct HA work per host failure for the report (ha); count.

Written for 1M alerts in a few seconds: one dict hit per alert, each distinct subject text
parsed once, sorting and gap checks in comprehensions, no object per alert or per incident
unless it has duplicates. A caller planning a large history pauses the cyclic GC around it
(``sidecar.support.gcpause``): that is the caller's business, not the pure layer's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container, Sequence
from datetime import datetime
from operator import attrgetter

from sidecar.model.plan import Plan, Snapshot, Summary, VmPlacement
from sidecar.model.resources import Alert
from sidecar.reconcile import fingerprint as fp
from sidecar.reconcile.buckets import (
    UNTOUCHED_SUPPRESSED,
    UNTOUCHED_UNKNOWN,
    Bucket,
    classify,
    family_of,
)
from sidecar.reconcile.dedup import merge_groups, split_incidents
from sidecar.reconcile.ha import ha_incidents
from sidecar.reconcile.history import host_failures
from sidecar.reconcile.indexes import HostResolver, VmIndex
from sidecar.reconcile.policy import Policy

_DEFAULT_POLICY = Policy()

_ID = attrgetter("id")
_ALERTS = attrgetter("alerts")
_SINCE = attrgetter("since")


def build_plan(
    snapshot: Snapshot, policy: Policy = _DEFAULT_POLICY, *, vm_index: VmIndex | None = None
) -> Plan:
    """Plan the de-duplication of ``snapshot``'s alerts under ``policy`` (deterministic).

    ``vm_index`` is an index built earlier over ``snapshot.vms`` (the same object): a caller
    planning again and again over an unchanged VM inventory saves rebuilding it. An index
    of another sequence is ignored.
    """
    if vm_index is None or vm_index.source is not snapshot.vms:
        vm_index = VmIndex(snapshot.vms)
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


def _placements_by_vm(
    placements: Sequence[VmPlacement], wanted: Container[str]
) -> dict[str, list[VmPlacement]]:
    """The placements of the ``wanted`` VMs (by instance name), each in time order.

    Only VMs HA restarted need them: a service cycle plans with tens of thousands of
    placements, and a list each would churn the collector every cycle.
    """
    by_vm: dict[str, list[VmPlacement]] = defaultdict(list)
    for p in placements:
        if p.vm not in wanted:
            continue
        by_vm[p.vm].append(p)
    for seen in by_vm.values():
        seen.sort(key=_SINCE)
    return by_vm


def _unique(alerts: Sequence[Alert]) -> Sequence[Alert]:
    """Alerts with each id once (listing pages can repeat rows); a deterministic pick."""
    if len(set(map(_ID, alerts))) == len(alerts):
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


def _plan(alerts: Sequence[Alert], snapshot: Snapshot, policy: Policy, vm_index: VmIndex) -> Plan:
    generated_at: datetime = policy.now or snapshot.taken_at
    classifier, no_time = classify(alerts, vm_index)
    live = list(classifier.buckets.values())
    families: dict[str, list[Bucket]] = defaultdict(list)
    for b in live:
        families[b.family].append(b)

    resolver = HostResolver(snapshot.hosts, snapshot.host_history, (b.subject for b in live))
    restarted = {b.subject.instance for b in families.get(fp.HA_STARTING_VM, ())}
    placements = _placements_by_vm(snapshot.vm_placements, restarted)
    split_incidents(families, policy, resolver, vm_index, placements)
    groups = merge_groups(live, policy)
    archive = [d for g in groups for d in g.duplicates]
    archive.sort()

    vm_hosts: dict[str, set[str]] = defaultdict(set)
    for vm, hosts in snapshot.vm_host_history.items():
        if vm in restarted:
            vm_hosts[vm].update(hosts)
    for vm, seen in placements.items():
        vm_hosts[vm].update(p.host_id for p in seen)
    incidents = ha_incidents(families, policy, resolver, vm_index, generated_at, vm_hosts)
    failed_hosts = host_failures(families, resolver)

    by_family: dict[str, int] = defaultdict(int)
    for family, buckets in families.items():
        by_family[family] += sum(map(len, map(_ALERTS, buckets)))
    untouched = {UNTOUCHED_UNKNOWN: len(no_time), UNTOUCHED_SUPPRESSED: 0}
    for (kind, family), count in classifier.untouched.items():
        untouched[kind] += count
        by_family[family] += count
    for a in no_time:
        by_family[family_of(a.name, a.description)] += 1

    summary = Summary(
        alerts_scanned=len(alerts),
        groups=len(groups),
        duplicates=len(archive),
        untouched_unknown=untouched[UNTOUCHED_UNKNOWN],
        untouched_suppressed=untouched[UNTOUCHED_SUPPRESSED],
        ha_incidents=sum(h.failures for h in failed_hosts),
        duplicate_rounds=sum(h.duplicate_rounds for h in failed_hosts),
        # Every VM restart incident with several "HA starting VM" (attributed to a host
        # failure or not, in the families planned or not): the VM may have run twice.
        vms_restarted_more_than_once=sum(
            len(b.multi) for b in families.get(fp.HA_STARTING_VM, ())
        ),
        ha_backlog=sum(len(i.backlog) for i in incidents),
        by_family=dict(sorted(by_family.items())),
        ha_rounds=sum(h.rounds for h in failed_hosts),
        ha_incidents_listed=len(incidents),
        ha_window=policy.ha_horizon,
    )
    return Plan(
        generated_at=generated_at,
        groups=groups,
        archive=tuple(archive),
        ha_incidents=incidents,
        summary=summary,
        hosts=failed_hosts,
    )


__all__ = ["build_plan"]
