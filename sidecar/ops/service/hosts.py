"""Hosts for each cycle: cheap listings, and the ledger's host states read only after a change."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sidecar.cloudstack.client import CloudStackClient
from sidecar.ledger import Ledger
from sidecar.model.plan import HostStateChange
from sidecar.model.resources import FAILED_HOST_STATES, Host

#: Host-state history the planner gets each cycle (splits of host incidents).
HOST_HISTORY = timedelta(days=7)

#: Seconds between full host listings. Other cycles ask for ``details=min``: CloudStack then
#: skips capacity, statistics and events and drops the zone, pod and cluster names (40 % fewer
#: bytes, and far less work on the management server); of those the sidecar needs only the
#: zone name (the planner tells hosts of one name apart by zone), taken from the last full
#: listing by zone id, like the pod name (kept so that ``Host`` objects stay the same).
HOST_DETAILS_REFRESH = 3600.0

#: listHosts keys that change at every agent ping and that ``Host`` does not keep.
_VOLATILE_HOST_KEYS = frozenset({"lastpinged"}) - {f.name for f in dataclasses.fields(Host)}

#: (id, time) of the ledger's newest host observation: see ``HostStates._newest_observation``.
_Mark = tuple[int, datetime | None]


def failed_host_ids(hosts: Iterable[Host]) -> set[str]:
    """Ids of the hosts in a failed state (HA for their VMs under way or pending)."""
    return {h.id for h in hosts if h.state in FAILED_HOST_STATES}


class HostLister:
    """listHosts for each cycle, with zone and pod names kept from the last full listing."""

    def __init__(self) -> None:
        #: Zone and pod names by id from the last full host listing.
        self.zone_names: dict[str, str] = {}
        self.pod_names: dict[str, str] = {}
        #: When (monotonic) the last full listing was made.
        self._names_listed_at = -math.inf
        #: Last cycle's listHosts rows and their Host objects, by host id.
        self._rows: dict[str, tuple[dict[str, Any], Host]] = {}

    async def fetch(self, cs: CloudStackClient) -> list[Host]:
        """Hypervisor hosts (type Routing): ``details=min`` while the zone and pod names are
        known and recent, with each host's ``zonename`` and ``podname`` filled in from them
        (the same ``Host`` objects as a full listing gives)."""
        query = {"type": "Routing"}
        if self.zone_names and time.monotonic() - self._names_listed_at < HOST_DETAILS_REFRESH:
            rows = await cs.list_all("listHosts", "host", {**query, "details": "min"})
            named = ((self.zone_names, "zoneid", "zonename"), (self.pod_names, "podid", "podname"))
            if all(
                {str(r.get(key) or "") for r in rows} <= names.keys() | {""}
                for names, key, _ in named
            ):
                for r in rows:
                    for names, key, name in named:
                        place = str(r.get(key) or "")
                        if place:
                            r.setdefault(name, names[place])
                return self._hosts_of(rows)
            # A zone or pod we have not seen: a full listing names it.
        rows = await cs.list_all("listHosts", "host", query)
        hosts = self._hosts_of(rows)
        self.zone_names = {h.zoneid: h.zonename for h in hosts if h.zoneid}
        self.pod_names = {h.podid: h.podname for h in hosts if h.podid}
        self._names_listed_at = time.monotonic()
        return hosts

    def _hosts_of(self, rows: list[dict[str, Any]]) -> list[Host]:
        """``Host`` objects of listHosts rows; a row equal to last cycle's keeps its object.

        The kept rows and hosts are the old ones, so that a quiet cycle leaves no new
        long-lived objects behind (they would bring the GC's full collections closer).
        """
        before, kept = self._rows, {}
        hosts: list[Host] = []
        for row in rows:
            for key in _VOLATILE_HOST_KEYS:
                row.pop(key, None)
            host_id = str(row.get("id") or "")
            last = before.get(host_id)
            if last is None or last[0] != row:
                last = (row, Host.from_api(row))
            kept[host_id] = last
            hosts.append(last[1])
        self._rows = kept
        return hosts


class HostStates:
    """The hosts' states recorded in the ledger, and their recent transitions, kept in memory.

    Both are good while the ledger's newest host observation (the mark) stays the same.
    """

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        #: The mark at the last look (``None``: unknown).
        self._mark: _Mark | None = None
        #: Each host's last recorded (state, HA state) at that mark.
        self._states: dict[str, tuple[str, str]] = {}
        #: Recent transitions as (mark, since, transitions).
        self._history: tuple[_Mark, datetime, list[HostStateChange]] | None = None

    def _newest_observation(self) -> _Mark:
        """(id, time) of the ledger's newest host observation, (0, None) without any.

        Every change of a host's recorded state adds an observation, so while this stays the
        same, so do the ledger's host tables (the time tells a new row from a pruned one
        whose id SQLite gave out again).
        """
        newest = self._ledger.host_transitions(limit=1)
        return (int(newest[-1]["id"]), newest[-1]["observed_at"]) if newest else (0, None)

    def observe(self, hosts: list[Host], now: datetime) -> list[HostStateChange]:
        """Record the hosts' state changes in the ledger (as ``Ledger.observe_hosts``); returns
        them.

        Skips the ledger's host tables when every host is in the state the ledger held for it
        at the last look and no host observation was added since, by us or another sidecar.
        """
        mark = self._newest_observation()
        if mark != self._mark:
            self._states, self._history = {}, None
        states = {h.id: (h.state, h.hostha.hastate) for h in hosts if h.id}
        if mark == self._mark and states.items() <= self._states.items():
            return []
        changes = self._ledger.observe_hosts(hosts, now)
        # The ledger now holds what we saw. Our own rows moved the mark on; when it moved by
        # exactly their number, nobody else wrote in between.
        self._states = states
        self._mark = mark
        if changes:
            after = self._newest_observation()
            self._mark = after if after[0] == mark[0] + len(changes) else None
        return changes

    def history(self, since: datetime) -> list[HostStateChange]:
        """Host transitions since ``since``, read again only after new observations."""
        cached = self._history
        if cached is not None and cached[0] == self._mark and since >= cached[1]:
            return [c for c in cached[2] if c.at >= since]
        history = self._ledger.host_history(since=since)
        self._history = None if self._mark is None else (self._mark, since, history)
        return history

    def forget_history(self) -> None:
        """Read the transitions again next time (pruning may have removed some)."""
        self._history = None
