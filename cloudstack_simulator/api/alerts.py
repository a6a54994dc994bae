"""listAlerts, archiveAlerts and deleteAlerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cloudstack_simulator.alerting import purge
from cloudstack_simulator.api.items import alert_item
from cloudstack_simulator.api.params import list_response, page_bounds, process
from cloudstack_simulator.api.request import ApiError, Call, invalid
from cloudstack_simulator.context import Context
from cloudstack_simulator.ordered import key_row, page_with_unstable_ties
from sidecar.model.constants import HTTP_INTERNAL_ERROR


def list_alerts(ctx: Context, call: Call) -> dict[str, Any]:
    """listAlerts: live alerts only, ``last_sent DESC`` with no tie-breaker."""
    p = process(ctx, call)
    start, limit = page_bounds(p)
    row = p.get("id")
    table = ctx.state.alerts
    view = table.select(
        row=row if row is not None else None,
        name=p.get("name"),
        type_=p.get("type"),
        keyword=p.get("keyword"),
    )
    total = len(view)
    stop = total if limit is None else start + limit
    if ctx.tie_order == "shuffle" and limit is not None:
        keys = page_with_unstable_ties(view, start, stop, ctx.next_salt())
    else:
        keys = view.slice(start, stop)
    items = [alert_item(ctx, key_row(k)) for k in keys]
    return list_response(call.command, "alert", total, items)


def _archive_or_delete(ctx: Context, call: Call, *, delete: bool) -> dict[str, Any]:
    """What archiveAlerts and deleteAlerts share: the filters, the pre-check, the updates."""
    with ctx.lock:
        p = process(ctx, call)
    ids: list[int] | None = p.get("ids")
    type_ = p.get("type")
    start: datetime | None = p.get("startdate")
    end: datetime | None = p.get("enddate")
    if ids is None and type_ is None and end is None:
        raise invalid("either ids, type, startdate or enddate must be specified")
    if start is not None and end is None:
        raise invalid("enddate must be specified with startdate parameter")
    table = ctx.state.alerts
    # The DAO's pre-check and its updates are separate steps (no lock between them), so two
    # concurrent archivers of one id can both succeed, as upstream.
    with ctx.lock:
        rows = table.rows_for_filters(
            ids, type_, start.timestamp() if start else None, end.timestamp() if end else None
        )
        ok = ids is None or len(rows) >= len(ids)
    if not ok:
        what = "delete" if delete else "archive"
        raise ApiError(
            HTTP_INTERNAL_ERROR,
            f"Unable to {what} Alerts, one or more parameters has invalid values",
        )
    with ctx.lock:
        for row in rows:
            if delete:
                purge(ctx, row)
            else:
                # UPDATE sets archived=1 whether or not a racing request already did.
                table.archive(row)
                ctx.stats.note_archived(table.uuid[row - 1])
    return {f"{call.short}response": {"success": True}}


def archive_alerts(ctx: Context, call: Call) -> dict[str, Any]:
    """archiveAlerts: all-or-nothing by pre-check."""
    return _archive_or_delete(ctx, call, delete=False)


def delete_alerts(ctx: Context, call: Call) -> dict[str, Any]:
    """deleteAlerts: like archiveAlerts, but rows are removed."""
    return _archive_or_delete(ctx, call, delete=True)
