"""De-duplication: split every bucket into incidents, and one MergeGroup per incident with copies.

The earliest alert of an incident (by sent, then id) is canonical and stays; the others are
duplicates to archive. Some rules split on *markers* taken from other families' canonicals,
so the families are split in order: host failures first, then "HA starting VM" (split on new
failures), then "Unable to restart" (split on restarts).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from operator import attrgetter

from sidecar.model.plan import MergeGroup, VmPlacement
from sidecar.reconcile import fingerprint as fp
from sidecar.reconcile.buckets import Bucket
from sidecar.reconcile.indexes import HostResolver, VmIndex
from sidecar.reconcile.policy import (
    FAMILIES,
    SPLIT_HISTORY,
    SPLIT_NEW_FAILURE,
    SPLIT_VM_RAN,
    Policy,
)
from sidecar.reconcile.split import default_reason, split

_ID = attrgetter("id")
_SENT = attrgetter("sent")
_ORDER = attrgetter("sent", "id")
_GROUP_ORDER = attrgetter("first_sent", "fingerprint", "canonical")

#: Keys of _failure_starts besides zone ids: every failure, and those of unknown zone.
_ANY_ZONE = ""
_NO_ZONE = "\0no-zone"
#: Key of _failure_starts_by_host for failures whose host the snapshot cannot name.
_UNKNOWN_HOST = "\0unknown-host"


def split_incidents(
    families: Mapping[str, Sequence[Bucket]],
    policy: Policy,
    resolver: HostResolver,
    vm_index: VmIndex,
    placements: Mapping[str, Sequence[VmPlacement]] | None = None,
) -> None:
    """Sort every bucket's alerts by (sent, id) and split it into incidents (Bucket.set_cuts).

    ``placements``: where the ledger saw each VM (instance name -> placements by ``since``).
    """
    history_max_gap = timedelta(seconds=policy.history_max_gap)
    restart_latency = timedelta(seconds=policy.restart_latency)
    detection = timedelta(seconds=policy.failure_detection)

    def plan_family(family: str, markers_of: Callable[[Bucket], Sequence[datetime]]) -> None:
        rule = FAMILIES[family].split
        gap = timedelta(seconds=policy.gap_for(family))
        lead = restart_latency if rule == SPLIT_NEW_FAILURE else timedelta(0)
        settle = detection if rule == SPLIT_NEW_FAILURE else timedelta(0)
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
                marker_settle=settle,
            )
            b.set_cuts(cuts)

    def no_markers(b: Bucket) -> Sequence[datetime]:
        return ()

    # Order matters: host failures mark new failures for "HA starting VM", whose canonicals
    # mark "the VM ran again" for "Unable to restart". Markers are canonicals only.
    marker_rules = (SPLIT_NEW_FAILURE, SPLIT_VM_RAN)
    for family, spec in FAMILIES.items():
        if spec.split not in marker_rules:
            plan_family(family, no_markers)
    host_failures = families.get(fp.HOST_IS_DOWN, ())
    failures_by_zone = _failure_starts(host_failures, resolver)
    failures_by_host = _failure_starts_by_host(host_failures, resolver)
    placed = placements or {}

    def failures_in_zone(b: Bucket) -> Sequence[datetime]:
        """Failures that may concern the VM: those in its zone when the VM list knows it."""
        vm = vm_index.find(b.subject.vm, b.subject.instance)
        if vm is None or not vm.zoneid:
            return failures_by_zone[_ANY_ZONE]
        return failures_by_zone.get(vm.zoneid, failures_by_zone[_NO_ZONE])

    def failures_near(b: Bucket) -> Sequence[datetime]:
        """New failures that may have killed the VM: of the hosts the ledger saw it on, and,
        before the ledger watched it, any in its zone (never guess where it ran)."""
        seen = placed.get(b.subject.instance) if b.subject.instance else None
        if not seen:
            return failures_in_zone(b)
        watched_from = seen[0].since
        # Before watching began the VM's host is unknown: every failure in its zone counts.
        markers = [m for m in failures_in_zone(b) if m - detection < watched_from]
        for host in {p.host_id for p in seen} | {_UNKNOWN_HOST}:
            placed_on = [p.since for p in seen if p.host_id == host]
            for start in failures_by_host.get(host, ()):
                died_by = start - detection  # the VM had to be on the host by then
                if died_by >= watched_from and (
                    host == _UNKNOWN_HOST or any(s <= died_by for s in placed_on)
                ):
                    markers.append(start)
        return sorted(markers)

    plan_family(fp.HA_STARTING_VM, failures_near)
    vm_ran_names = {b.subject.vm for b in families.get(fp.UNABLE_TO_RESTART, ())}
    ran_at: dict[str, list[datetime]] = defaultdict(list)
    for b in families.get(fp.HA_STARTING_VM, ()):
        if b.subject.vm in vm_ran_names:
            ran_at[b.subject.vm].extend(b.at(c) for c in b.cuts)
    for times in ran_at.values():
        times.sort()
    plan_family(fp.UNABLE_TO_RESTART, lambda b: ran_at.get(b.subject.vm, ()))


def _failure_starts(
    buckets: Sequence[Bucket], resolver: HostResolver
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


def _failure_starts_by_host(
    buckets: Sequence[Bucket], resolver: HostResolver
) -> dict[str, list[datetime]]:
    """When each host failure began, per API host id (``_UNKNOWN_HOST``: not resolvable)."""
    by_host: dict[str, list[datetime]] = defaultdict(list)
    for b in buckets:
        by_host[resolver.resolve(b.subject) or _UNKNOWN_HOST] += [b.at(c) for c in b.cuts]
    return by_host


def merge_groups(buckets: Sequence[Bucket], policy: Policy) -> tuple[MergeGroup, ...]:
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
        fingerprint = b.fingerprint
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


__all__ = ["merge_groups", "split_incidents"]
