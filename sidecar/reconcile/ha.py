"""HA work per host failure, reconstructed from alerts: rounds, restarts per VM, backlog.

Runs on buckets already split into incidents (dedup.split_incidents); see ha_incidents.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any

from sidecar.model.plan import HAIncident, VmRestarts
from sidecar.model.resources import Host, VirtualMachine
from sidecar.reconcile import fingerprint as fp
from sidecar.reconcile.buckets import Bucket
from sidecar.reconcile.indexes import FailureIndex, HostResolver, VmIndex
from sidecar.reconcile.policy import Policy

_ID = attrgetter("id")


def _sha(text: str) -> str:
    """A short stable id for ``text`` (not a security hash)."""
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:16]


#: One incident of a bucket: (bucket, start, stop) positions in its alerts.
_Part = tuple[Bucket, int, int]
_NO_PARTS: array[int] = array("q")


def _since(b: Bucket, horizon: datetime | None) -> list[tuple[int, int]]:
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


def ha_incidents(
    families: Mapping[str, Sequence[Bucket]],
    policy: Policy,
    resolver: HostResolver,
    vms: VmIndex,
    now: datetime,
    vm_host_history: Mapping[str, Collection[str]],
) -> tuple[HAIncident, ...]:
    """HA work per host failure: rounds, restarts per VM, duplicate rounds and backlog.

    CloudStack has no API for ``op_ha_work`` (§8.3), so it is reconstructed from alerts: each
    "Host is down, …" alert is one scheduling round (one HA row per HA-enabled VM of the host),
    each "HA starting VM" one restart. A host failure is one incident of the host's "Host is
    down" fingerprint (split as in split.split). Itemised: failures within
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


def _running_elsewhere(vm: VirtualMachine, host: Host | None, b: Bucket) -> bool:
    """Is the VM Running on another host than the failed one?"""
    if vm.state != "Running":
        return False
    if host is not None:
        return bool(vm.hostid) and vm.hostid != host.id
    return bool(vm.hostname) and vm.hostname != b.subject.host


def vm_labels(names: Sequence[tuple[str, str]]) -> list[str]:
    """VM names for reports; a name shared by two VMs gets its instance name appended."""
    counts: dict[str, int] = defaultdict(int)
    for name, _ in names:
        counts[name] += 1
    return [f"{n} ({i})" if counts[n] > 1 and i else n for n, i in names]


__all__ = ["ha_incidents", "vm_labels"]
