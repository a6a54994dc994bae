"""Alert writes outside the API, the failures they are filed under, other admins' archives."""

from __future__ import annotations

from cloudstack_simulator.context import Context
from cloudstack_simulator.state import Host, Vm
from cloudstack_simulator.truth import FailureTruth


def send_alert(
    ctx: Context,
    name: str,
    where: Host | Vm,
    subject: str,
    body: str,
    failure: FailureTruth | None = None,
) -> str | None:
    """Send an alert now and file it in the truth under ``failure``; None if suppressed."""
    now = ctx.clock.time()
    row = ctx.state.send_alert(
        name, zone_id=where.zone_id, pod_id=where.pod_id, subject=subject, body=body, at=now
    )
    if row is None:
        return None
    uuid = ctx.state.alerts.uuid[row - 1]
    if failure is not None:
        ctx.truth.record(failure, uuid, subject, int(now))
    else:
        ctx.truth.other_ids.add(uuid)
    return uuid


def emit_alert(
    ctx: Context,
    name: str,
    subject: str,
    *,
    body: str | None = None,
    host: str | int | None = None,
) -> str:
    """An alert of no failure about ``host`` (default: the first host); '' if suppressed."""
    with ctx.lock:
        ref = ctx.state.host_by(host) if host is not None else None
        where = ref or next(iter(ctx.state.hosts.values()))
        uuid = send_alert(ctx, name, where, subject, body if body is not None else subject)
        return uuid or ""


def archive_out_of_band(ctx: Context, row: int) -> bool:
    """Archive a row as another admin would (not an API archive); True if it was live."""
    table = ctx.state.alerts
    if not table.archive(row):
        return False
    ctx.stats.note_archived(table.uuid[row - 1], out_of_band=True)
    return True


def purge(ctx: Context, row: int) -> bool:
    """Hard-delete a row and count it; False if it was already gone."""
    table = ctx.state.alerts
    if not table.delete(row):
        return False
    ctx.stats.note_deleted(table.uuid[row - 1])
    return True


def open_failure(ctx: Context, host: Host, kind: str, started: float) -> FailureTruth:
    """A new failure record of ``host`` in the truth, for the alerts it will produce."""
    return ctx.truth.new_failure(
        kind=kind,
        host=host.name,
        host_id=host.uuid,
        host_db_id=host.id,
        zone=ctx.state.zones[host.zone_id].name,
        started=started,
        profile=ctx.profile.name,
    )
