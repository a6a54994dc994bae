"""The duplicate rule of CloudStack's HA queue: which pending HA rows a merge cancels.

Fixed, so results are comparable (issue 16; the fix's own definition, apache/cloudstack#10624):
group pending HA rows by (instance_id, host_id). In a group of two or more, if any row is
active (taken, or past Investigating), keep the active row with the lowest id and cancel every
cancellable row; else keep the row with the highest ``tried`` (a retry carries the history),
ties by the lowest id, and cancel the others. Other work types, a group of one row, and active
rows are never touched.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from sidecar.model.hawork import HaWorkGroup, HaWorkRow, HaWorkView, HostQueue

_KEEP_ACTIVE = "a worker already holds row {keep}: the untaken copies would restart the VM again"
_KEEP_TRIED = ("row {keep} carries the most retries (tried={tried}); the others are copies "
               "queued for the same failure")


def duplicate_groups(rows: Iterable[HaWorkRow]) -> tuple[HaWorkGroup, ...]:
    """Every group of duplicate pending HA rows with something to cancel, by lowest row id."""
    groups: dict[tuple[int, int | None], list[HaWorkRow]] = defaultdict(list)
    for row in rows:
        if row.pending:
            groups[(row.instance_id, row.host_id)].append(row)
    out = []
    for (instance_id, host_id), members in groups.items():
        if len(members) < 2:
            continue
        members.sort(key=lambda r: r.id)
        active = [r for r in members if r.active]
        if active:
            keep = active[0]
            reason = _KEEP_ACTIVE.format(keep=keep.id)
        else:
            keep = min(members, key=lambda r: (-(r.tried or 0), r.id))
            reason = _KEEP_TRIED.format(keep=keep.id, tried=keep.tried or 0)
        cancel = tuple(r.id for r in members if r is not keep and r.cancellable)
        if cancel:
            vm = next((r.vm for r in members if r.vm), "")
            out.append(HaWorkGroup(instance_id, vm, host_id, keep.id, cancel, reason))
    out.sort(key=lambda g: g.keep)
    return tuple(out)


def ha_work_view(rows: Sequence[HaWorkRow], read_at: datetime) -> HaWorkView:
    """The queue at ``read_at`` (pending = waiting for a worker, running = held by one) and
    the duplicates a merge would cancel."""
    pending = [r for r in rows if r.pending]
    waiting = [r for r in pending if r.taken is None and r.mgmt_server_id is None]
    running = [r for r in pending if r not in waiting]
    hosts: dict[int | None, list[HaWorkRow]] = defaultdict(list)
    for r in pending:
        hosts[r.host_id].append(r)
    by_host = []
    for host_id, members in sorted(hosts.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        held = [r for r in members if r in running]
        queued = [r for r in members if r not in running]
        by_host.append(HostQueue(host_id, next((r.host for r in members if r.host), ""),
                                 len(queued), len(held), _oldest(queued, read_at)))
    groups = duplicate_groups(pending)
    return HaWorkView(
        read_at=read_at,
        pending=len(waiting),
        running=len(running),
        oldest_pending_seconds=_oldest(waiting, read_at),
        by_host=tuple(by_host),
        duplicates=groups,
        cancel=tuple(sorted(i for g in groups for i in g.cancel)),
        rows={r.id: r for r in pending},
    )


def _oldest(rows: Sequence[HaWorkRow], now: datetime) -> float | None:
    """Seconds since the oldest row was queued (``created``), or None without one."""
    created = [r.created for r in rows if r.created is not None]
    return round((now - min(created)).total_seconds(), 1) if created else None


__all__ = ["duplicate_groups", "ha_work_view"]
