"""Split rules: where one fingerprint's alerts (sorted by time) break into incidents.

Every rule here depends only on the snapshot's hosts, VMs and host-state history, on time
gaps, and on the *canonical* alerts of fingerprints. Archiving a plan's duplicates removes none
of those, so planning again after applying a plan finds nothing more to archive (idempotence).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import datetime, timedelta

from sidecar.reconcile.indexes import HostResolver
from sidecar.reconcile.policy import (
    SPLIT_GAP,
    SPLIT_HISTORY,
    SPLIT_NEW_FAILURE,
    SPLIT_VM_RAN,
)

#: Why consecutive alerts of one fingerprint were merged (shown in MergeGroup.reason).
MERGED_BY_HISTORY = "the host-state history shows no recovery between them"
MERGED_BY_GAP = "each within {gap:g} s of the previous one (gap window, no recovery seen)"
MERGED_BY_VM_RAN = "no restart of the VM between them and each within {gap:g} s of the previous"
MERGED_BY_NEW_FAILURE = (
    "no new host failure between them and each within {gap:g} s of the previous"
)


def split(
    times: Sequence[datetime],
    rule: str,
    gap: timedelta,
    *,
    host: str | None = None,
    resolver: HostResolver | None = None,
    history_max_gap: timedelta = timedelta(days=1),
    markers: Sequence[datetime] = (),
    marker_lead: timedelta = timedelta(0),
    marker_settle: timedelta = timedelta(0),
) -> tuple[list[int], dict[int, set[str]]]:
    """Split one fingerprint's alerts (their ``times``, sorted) into incidents.

    Returns the start position of every incident (the first is 0) and, for incidents merged
    by another rule than the family's default, why (start position -> reasons; see
    default_reason). Each rule decides per neighbour pair:

    - SPLIT_GAP: two incidents iff the alerts are more than ``gap`` apart.
    - SPLIT_HISTORY: a recorded ``Up`` of the host between the two alerts always splits (the
      host recovered, so the next alert is a new failure). Without one, if the ledger was
      already watching the host at the earlier alert, they are one incident (the host stayed
      failed, so later rounds are the defect's duplicates) unless further apart than
      ``history_max_gap``; if it was not watching, the gap window decides.
    - SPLIT_NEW_FAILURE ("HA starting VM"): a new host failure (``markers``: the first
      "Host is down" of each host failure that may concern the VM) reported at least
      ``marker_settle`` after the incident's first restart and at least ``marker_lead``
      before a later restart makes that restart a new incident (it answers another failure,
      e.g. the VM's new host failed too); else the gap window decides. ``marker_settle``:
      the VM was placed on the failed host at the earliest at that first restart, and
      CloudStack reports a host down no sooner than its detection time after it died.
      ``marker_lead``: HA must schedule, investigate, fence and boot the VM before it can
      send "HA starting VM", so a failure seconds before a restart did not cause it (an
      unrelated host failing while parallel workers restart one VM twice).
    - SPLIT_VM_RAN ("Unable to restart"): a successful restart of the VM (``markers``: the
      first "HA starting VM" of each of its restart incidents) since the incident began
      makes a later failure to restart a new incident (the VM ran again); else the gap
      window decides.

    Markers and history are canonicals and snapshot data: archiving duplicates removes none.
    """
    n = len(times)
    # Hot path: one comprehension over the neighbour gaps. When every pair is further apart
    # than the gap window, no rule but a covering history can merge anything.
    cuts = [0]
    cuts += [k for k in range(1, n) if times[k] - times[k - 1] > gap]
    watched = (rule == SPLIT_HISTORY and host is not None and resolver is not None
               and resolver.has_history(host))
    if len(cuts) == n and not watched:
        return cuts, {}
    if rule == SPLIT_GAP or (rule == SPLIT_HISTORY and not watched) or (
        rule in (SPLIT_VM_RAN, SPLIT_NEW_FAILURE) and not markers
    ):
        return cuts, {}
    if rule in (SPLIT_VM_RAN, SPLIT_NEW_FAILURE):
        return _split_by_markers(times, cuts, markers, marker_lead, marker_settle), {}
    assert resolver is not None and host is not None
    # max(): a covered pair must never merge what an uncovered one would split, or planning
    # again after archiving (canonicals only) could merge differently (idempotence).
    covered_gap = max(history_max_gap, gap)
    by_gap = MERGED_BY_GAP.format(gap=gap.total_seconds())
    cuts = [0]
    reasons: dict[int, set[str]] = {0: set()}
    for k in range(1, n):
        before, after = times[k - 1], times[k]
        dt = after - before
        if resolver.up_between(host, before, after):
            new, why = True, ""
        elif resolver.covers(host, before):
            new, why = dt > covered_gap, MERGED_BY_HISTORY
        else:
            new, why = dt > gap, by_gap
        if new:
            cuts.append(k)
            reasons[k] = set()
        else:
            reasons[cuts[-1]].add(why)
    return cuts, reasons


def _split_by_markers(
    times: Sequence[datetime],
    cuts: list[int],
    markers: Sequence[datetime],
    lead: timedelta,
    settle: timedelta = timedelta(0),
) -> list[int]:
    """Further split the gap-window incidents (``cuts``) where a marker falls after an
    incident's first alert (at least ``settle`` after it, when given) and at least ``lead``
    before a later alert of it.

    Any marker since the incident began counts, not only since the previous alert: a failure
    that began between a restart and its parallel copies can still cause a later restart once
    ``lead`` has passed. Only incidents of two or more alerts need a look.
    """
    n = len(times)
    extra = []
    for start, stop in zip(cuts, [*cuts[1:], n], strict=True):
        if stop - start < 2:
            continue
        nxt = _next_marker(markers, times[start], lead, settle)
        for k in range(start + 1, stop):
            if nxt is not None and nxt <= times[k]:
                extra.append(k)
                nxt = _next_marker(markers, times[k], lead, settle)
    return sorted(cuts + extra) if extra else cuts


def _next_marker(
    markers: Sequence[datetime], first: datetime, lead: timedelta, settle: timedelta
) -> datetime | None:
    """When the first marker that may follow an incident starting at ``first`` takes effect."""
    if settle:
        i = bisect.bisect_left(markers, first + settle)
    else:
        i = bisect.bisect_right(markers, first)
    return markers[i] + lead if i < len(markers) else None


def default_reason(rule: str, gap_seconds: float) -> str:
    """Why the alerts of an incident merged when split() gave no reason of its own."""
    if rule == SPLIT_VM_RAN:
        return MERGED_BY_VM_RAN.format(gap=gap_seconds)
    if rule == SPLIT_NEW_FAILURE:
        return MERGED_BY_NEW_FAILURE.format(gap=gap_seconds)
    return MERGED_BY_GAP.format(gap=gap_seconds)


__all__ = [
    "MERGED_BY_GAP",
    "MERGED_BY_HISTORY",
    "MERGED_BY_NEW_FAILURE",
    "MERGED_BY_VM_RAN",
    "default_reason",
    "split",
]
