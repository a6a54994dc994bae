"""Lookups the reconciler builds once per plan: hosts by subject, VMs by name, host failures.

Only unique matches count: a name two hosts or two VMs share resolves to nothing (no guessing).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from operator import attrgetter

from sidecar.model.plan import HostStateChange
from sidecar.model.resources import FAILED_HOST_STATES, Host, VirtualMachine
from sidecar.reconcile.fingerprint import Subject


class HostResolver:
    """Map a subject's host (name, db id, uuid, zone) to the API host id (uuid) when certain.

    Old-form subjects name a host by db id and name, which the API never shows; the uuid is
    learned from (1) the subject itself, (2) new-form subjects of the same db id (they carry
    both), (3) the host list by name and zone, (4) the ledger's history by name. A name shared
    by hosts the zone cannot tell apart resolves to nothing: no guessing.
    """

    def __init__(
        self,
        hosts: Sequence[Host],
        history: Sequence[HostStateChange],
        subjects: Iterable[Subject],
    ) -> None:
        self.hosts_by_id: dict[str, Host] = {h.id: h for h in hosts}
        self._hosts_by_name: dict[str, list[Host]] = defaultdict(list)
        for h in sorted(hosts, key=lambda h: h.id):
            self._hosts_by_name[h.name].append(h)
        self._history_ids_by_name: dict[str, set[str]] = defaultdict(set)
        up: dict[str, list[datetime]] = defaultdict(list)
        first: dict[str, datetime] = {}
        states: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
        for change in history:
            states[change.host_id].append((change.at, change.state))
            self._history_ids_by_name[change.host_name].add(change.host_id)
            seen = first.get(change.host_id)
            if seen is None or change.at < seen:
                first[change.host_id] = change.at
            if change.state == "Up":
                up[change.host_id].append(change.at)
        self._up = {k: sorted(v) for k, v in up.items()}
        self._first = first
        self._states = {k: sorted(v) for k, v in states.items()}
        self._state_times = {k: [t for t, _ in v] for k, v in self._states.items()}
        uuids: dict[str, set[str]] = defaultdict(set)
        names: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for s in subjects:
            if s.host_id and s.host_uuid:
                uuids[s.host_id].add(s.host_uuid)
            if s.host_id and s.host:
                names[s.host_id].add((s.host, s.zone))
        self._uuid_by_db = {k: next(iter(v)) for k, v in uuids.items() if len(v) == 1}
        self._name_by_db = {k: next(iter(v)) for k, v in names.items() if len(v) == 1}
        self._cache: dict[str, str | None] = {}

    def resolve(self, s: Subject) -> str | None:
        """The API id of the subject's host, or None when it cannot be told for certain."""
        key = s.object
        if key in self._cache:
            return self._cache[key]
        found = self._resolve(s)
        self._cache[key] = found
        return found

    def _resolve(self, s: Subject) -> str | None:
        if s.host_uuid:
            return s.host_uuid
        if s.host_id and s.host_id in self._uuid_by_db:
            return self._uuid_by_db[s.host_id]
        name, zone = s.host, s.zone
        if not name and s.host_id in self._name_by_db:
            name, zone = self._name_by_db[s.host_id]
        if not name:
            return None
        candidates = [
            h for h in self._hosts_by_name.get(name, ())
            if not (zone and h.zonename and h.zonename != zone)
            and not (s.zone_uuid and h.zoneid and h.zoneid != s.zone_uuid)
        ]
        if len(candidates) == 1:
            return candidates[0].id
        if candidates:
            return None
        ids = self._history_ids_by_name.get(name, set())
        return next(iter(ids)) if len(ids) == 1 else None

    def key(self, s: Subject) -> str:
        """A host key for matching subjects: the uuid when known, else the db id, else name."""
        uuid = self.resolve(s)
        if uuid:
            return uuid
        if s.host_id:
            return f"db:{s.host_id}"
        return f"name:{s.host}|{s.zone}"

    def has_history(self, host: str) -> bool:
        return host in self._first

    def up_between(self, host: str, after: datetime, until: datetime) -> bool:
        """Did the ledger record the host going Up in (after, until]?"""
        ups = self._up.get(host)
        if not ups:
            return False
        i = bisect.bisect_right(ups, after)
        return i < len(ups) and ups[i] <= until

    def covers(self, host: str, at: datetime) -> bool:
        """Had the ledger seen the host failed by ``at`` (so a missing Up means none since)?

        Watching alone is not enough: a host recorded Up that fails and recovers between two
        polls leaves no transition at all, so only a recorded failed state at ``at`` proves
        that the host stayed failed.
        """
        times = self._state_times.get(host)
        if not times:
            return False
        i = bisect.bisect_right(times, at)
        return i > 0 and self._states[host][i - 1][1] in FAILED_HOST_STATES


class VmIndex:
    """Snapshot VMs by instance name, name and host (unique matches only for lookups).

    Building one over a large inventory is the costliest part of a quiet service cycle, so a
    caller whose VM list did not change may hand the same index to ``build_plan`` again: it
    is used only for the very sequence it was built from (``source``), which must then not
    change (pass a tuple). A kept index costs the cyclic GC little: one container per host,
    not one per VM (names map to their only VM, or to None when several share them); a caller
    indexing a large inventory pauses the collector around it (``sidecar.support.gcpause``).
    """

    def __init__(self, vms: Sequence[VirtualMachine]) -> None:
        self.source = vms
        self.empty = not vms
        by_inst: dict[str, VirtualMachine | None] = {}
        by_name: dict[str, VirtualMachine | None] = {}
        by_host: dict[str, list[VirtualMachine]] = defaultdict(list)
        by_host_name: dict[str, list[VirtualMachine]] = defaultdict(list)
        for vm in sorted(vms, key=_VM_ID):
            if vm.instancename:
                by_inst[vm.instancename] = None if vm.instancename in by_inst else vm
            by_name[vm.name] = None if vm.name in by_name else vm
            if vm.hostid:
                by_host[vm.hostid].append(vm)
            if vm.hostname:
                by_host_name[vm.hostname].append(vm)
        self._by_inst = by_inst
        self._by_name = by_name
        self._by_host = dict(by_host)
        self._by_host_name = dict(by_host_name)

    def find(self, name: str, instance: str = "") -> VirtualMachine | None:
        """The VM with this instance name (or, without one, this name), if exactly one."""
        if self.empty:
            return None
        if instance:
            found = self._by_inst.get(instance)
            if found is not None and (not name or found.name == name):
                return found
            return None
        return self._by_name.get(name)

    def name_is_ambiguous(self, name: str) -> bool:
        return name in self._by_name and self._by_name[name] is None

    def on_host(self, host_id: str) -> list[VirtualMachine]:
        """VMs the snapshot records on the host with this API id."""
        return self._by_host.get(host_id, [])

    def on_host_named(self, name: str) -> list[VirtualMachine]:
        """VMs the snapshot records on a host of this name (when the host is unresolved)."""
        return self._by_host_name.get(name, []) if name else []


_VM_ID = attrgetter("id")


class FailureIndex:
    """Host failures (incidents of "Host is down") ordered by start, for time attribution.

    A failure's window is [first round, last round + ``window``]: HA restarts follow the
    rounds that scheduled them, within about ha_backlog_after.
    """

    def __init__(
        self,
        starts: Sequence[datetime],
        ends: Sequence[datetime],
        keys: Sequence[str],
        zones: Sequence[str],
        window: timedelta,
        names: Sequence[str],
    ) -> None:
        # ``names`` (the failures' object strings) break ties, so that the order, and with it
        # every attribution, never depends on the order alerts were listed in.
        order = sorted(range(len(starts)), key=lambda n: (starts[n], keys[n], names[n]))
        self.order = order
        self.starts = [starts[n] for n in order]
        self.ends = [ends[n] + window for n in order]
        self.zones = [zones[n] for n in order]
        self.longest = max((e - s for s, e in zip(self.starts, self.ends, strict=True)),
                           default=timedelta(0))
        running: list[datetime] = []
        for end in self.ends:
            running.append(end if not running or end > running[-1] else running[-1])
        self.max_end = running  # latest window end among failures 0..j
        self.by_key: dict[str, list[int]] = defaultdict(list)
        for pos, n in enumerate(order):
            self.by_key[keys[n]].append(pos)

    def around(self, at: datetime, zone: str = "") -> list[int]:
        """Positions of the failures whose window holds ``at`` (up to two: enough to decide).

        Only failures in ``zone`` when both sides know their zone.
        """
        j = bisect.bisect_right(self.starts, at) - 1
        if j < 0 or self.max_end[j] < at:
            return []
        found = []
        if self.ends[j] >= at and (not zone or not self.zones[j] or self.zones[j] == zone):
            found.append(j)
        if j == 0 or self.max_end[j - 1] < at:
            return found  # fast path: no earlier failure is still open at ``at``
        floor = at - self.longest
        for k in range(j - 1, -1, -1):
            if self.starts[k] < floor:
                break
            if self.ends[k] >= at and (not zone or not self.zones[k] or self.zones[k] == zone):
                found.append(k)
                if len(found) > 1:
                    break
        return found

    def of_host(self, key: str, at: datetime) -> int | None:
        """The latest failure of host ``key`` whose window holds ``at``."""
        best = None
        for pos in self.by_key.get(key, ()):
            if self.starts[pos] <= at <= self.ends[pos]:
                best = pos
        return best


__all__ = ["FailureIndex", "HostResolver", "VmIndex"]
