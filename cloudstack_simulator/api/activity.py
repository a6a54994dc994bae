"""What happened: listEvents, listAsyncJobs and queryAsyncJobResult."""

from __future__ import annotations

from typing import Any

from cloudstack_simulator.api.items import event_item, job_item
from cloudstack_simulator.api.params import (
    like_any,
    list_response,
    paged,
    process,
    same_text,
    visible_accounts,
)
from cloudstack_simulator.api.request import ApiError, Call
from cloudstack_simulator.context import Context
from sidecar.model.constants import HTTP_PARAM_ERROR


def list_events(ctx: Context, call: Call) -> dict[str, Any]:
    """listEvents: ``created DESC, id DESC``; system events need listall=true."""
    p = process(ctx, call)
    accounts = visible_accounts(call, p)
    events = [e for e in ctx.state.events if accounts is None or e.account in accounts]
    if "id" in p:
        events = [e for e in events if e.id == p["id"]]
    else:
        # 4.19+: ``archived = ?`` (default false) unless an id is asked for.
        archived = p.get("archived", False)
        events = [e for e in events if e.archived == archived]
    if "type" in p:
        events = [e for e in events if same_text(e.type, p["type"])]
    if "level" in p:
        events = [e for e in events if same_text(e.level, p["level"])]
    if "keyword" in p:
        events = [e for e in events if like_any(p["keyword"], e.type, e.description, e.level)]
    if "startdate" in p:
        since = p["startdate"].timestamp()
        events = [e for e in events if e.created >= since]
    if "enddate" in p:
        until = p["enddate"].timestamp()
        events = [e for e in events if e.created <= until]
    if "resourceid" in p:
        events = [e for e in events if e.resource_id == p["resourceid"]]
    if "resourcetype" in p:
        events = [e for e in events if same_text(e.resource_type, p["resourcetype"])]
    if "startid" in p:
        parent = next((e.uuid for e in ctx.state.events if e.id == p["startid"]), None)
        events = [e for e in events if e.id == p["startid"] or e.parent_id == parent]
    events.sort(key=lambda e: (e.created, e.id), reverse=True)
    total, page = paged(events, p)
    return list_response(call.command, "event", total, [event_item(ctx, e) for e in page])


def list_async_jobs(ctx: Context, call: Call) -> dict[str, Any]:
    """listAsyncJobs: list key ``asyncjobs`` (plural)."""
    p = process(ctx, call)
    accounts = visible_accounts(call, p)
    jobs = [j for j in ctx.state.jobs.values() if accounts is None or j.account in accounts]
    if "startdate" in p:
        since = p["startdate"].timestamp()
        jobs = [j for j in jobs if j.created >= since]
    if "keyword" in p:
        jobs = [j for j in jobs if like_any(p["keyword"], j.cmd)]
    jobs.sort(key=lambda j: j.id)
    total, page = paged(jobs, p)
    return list_response(call.command, "asyncjobs", total, [job_item(ctx, j) for j in page])


def query_async_job_result(ctx: Context, call: Call) -> dict[str, Any]:
    """queryAsyncJobResult of a known job."""
    p = process(ctx, call)
    job = ctx.state.jobs.get(p.get("jobid", 0))
    if job is None:
        raise ApiError(
            HTTP_PARAM_ERROR,
            f"Unable to execute API command {call.short} due to missing parameter jobid",
        )
    return {f"{call.short}response": job_item(ctx, job)}
