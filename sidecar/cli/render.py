"""Render a Plan for people (rich tables, markdown) and for scripts (JSON, CSV)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sidecar.model.plan import PLAN_SCHEMA_VERSION, HAIncident, MergeGroup, Plan, iso

FORMATS = ("table", "json", "csv", "markdown")


def recent_groups(plan: Plan) -> list[MergeGroup]:
    """Groups newest first (by last duplicate sent): what operators look at first."""
    return sorted(plan.groups, key=lambda g: (g.last_sent, g.group_id), reverse=True)


def recent_incidents(plan: Plan) -> list[HAIncident]:
    """HA incidents newest first."""
    return sorted(plan.ha_incidents, key=lambda i: (i.started, i.incident_id), reverse=True)


def plan_json(plan: Plan) -> str:
    """The Plan's JSON contract, stable key order (see ``write_plan_json``)."""
    out = io.StringIO()
    write_plan_json(plan, out)
    return out.getvalue()


#: Items written per ``write`` call when streaming long lists.
_CHUNK = 5000


def _chunks(items: Iterable[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_plan_json(plan: Plan, out: IO[str]) -> None:
    """Write the Plan's JSON contract (``Plan.to_json``) to ``out``, piece by piece.

    One line per group and incident: readable, and encoded by json's C encoder (``indent``
    would switch to the pure-Python one, seconds for a 100k-alert plan). Streamed, because a
    million-alert plan is ~150 MB of JSON and several times that as Python objects.
    """
    dumps = json.dumps

    def objects(key: str, items: Iterable[dict[str, Any]]) -> None:
        out.write(f",\n{dumps(key)}: ")
        opened = False
        for chunk in _chunks(dumps(i) for i in items):
            out.write(("[\n  " if not opened else ",\n  ") + ",\n  ".join(chunk))
            opened = True
        out.write("\n]" if opened else "[]")

    out.write("{" + f'{dumps("schema")}: {dumps(PLAN_SCHEMA_VERSION)}')
    out.write(f',\n{dumps("generated_at")}: {dumps(iso(plan.generated_at))}')
    objects("groups", (g.to_json() for g in plan.groups))
    out.write(f',\n{dumps("archive")}: ')
    opened = False
    for chunk in _chunks(dumps(i) for i in plan.archive):
        out.write(("[" if not opened else ", ") + ", ".join(chunk))
        opened = True
    out.write("]" if opened else "[]")
    objects("ha_incidents", (i.to_json() for i in plan.ha_incidents))
    out.write(f',\n{dumps("summary")}: {dumps(plan.summary.to_json())}')
    objects("hosts", (h.to_json() for h in plan.hosts))
    out.write("}")


def plan_csv(plan: Plan) -> str:
    """One row per alert to archive, plus one per canonical, for spreadsheets."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["group_id", "family", "object", "alert_id", "role", "canonical", "first_sent",
         "last_sent", "count", "reason"]
    )
    for g in plan.groups:
        first, last = iso(g.first_sent), iso(g.last_sent)
        writer.writerow([g.group_id, g.family, g.object, g.canonical, "canonical", g.canonical,
                         first, last, g.count, g.reason])
        for dup in g.duplicates:
            writer.writerow([g.group_id, g.family, g.object, dup, "duplicate", g.canonical,
                             first, last, g.count, g.reason])
    return out.getvalue()


HOST_COLUMNS = ("host", "host_id", "zone", "failures", "rounds", "duplicate_rounds",
                "last_failure")


def hosts_csv(plan: Plan) -> str:
    """One row per failed host of the whole history (``report --view hosts``)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HOST_COLUMNS)
    for h in plan.hosts:
        writer.writerow([h.host, h.host_id, h.zone, h.failures, h.rounds, h.duplicate_rounds,
                         iso(h.last_failure)])
    return out.getvalue()


def window_title(plan: Plan) -> str:
    """What the itemised HA incidents cover, and how many host failures fall outside."""
    s = plan.summary
    if s.ha_window is None:
        return "HA incidents (whole history, newest first)"
    days = s.ha_window / 86400
    span = f"{days:g} days" if days >= 1 else f"{s.ha_window / 3600:g} hours"
    outside = max(0, s.ha_incidents - s.ha_incidents_listed)
    return (f"HA incidents of the last {span} and of hosts still down (newest first; "
            f"{outside} older host failures are in the per-host view)")


def _md_row(cells: Iterable[object]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def plan_markdown(plan: Plan) -> str:
    """A markdown report for tickets and change records."""
    s = plan.summary
    lines = [
        f"# CloudStack duplicate alert report ({iso(plan.generated_at)})",
        "",
        f"- alerts scanned: {s.alerts_scanned}",
        f"- duplicate groups: {s.groups}, duplicates to archive: {s.duplicates}",
        f"- left alone: {s.untouched_unknown} unknown-format, "
        f"{s.untouched_suppressed} suppressed-type (capacity etc.)",
        f"- whole history: {s.ha_incidents} host failures (HA incidents), {s.ha_rounds} HA "
        f"rounds of which {s.duplicate_rounds} duplicate, {s.vms_restarted_more_than_once} "
        "VMs restarted more than once",
        f"- HA backlog now: {s.ha_backlog}",
        "",
        "## Duplicate groups",
        "",
        _md_row(["family", "object", "canonical", "count", "first sent", "last sent"]),
        _md_row(["---"] * 6),
    ]
    for g in recent_groups(plan):
        lines.append(_md_row([g.family, g.object, g.canonical, g.count, iso(g.first_sent),
                              iso(g.last_sent)]))
    lines += [
        "",
        "## Hosts with most failures (whole history)",
        "",
        _md_row(["host", "zone", "failures", "rounds", "duplicate rounds", "last failure"]),
        _md_row(["---"] * 6),
    ]
    for h in plan.hosts:
        lines.append(_md_row([h.host, h.zone, h.failures, h.rounds, h.duplicate_rounds,
                              iso(h.last_failure)]))
    lines += [
        "",
        f"## {window_title(plan)}",
        "",
        _md_row(["host", "started", "rounds", "duplicate rounds", "VMs", "restarted > 1",
                 "backlog"]),
        _md_row(["---"] * 7),
    ]
    for i in recent_incidents(plan):
        lines.append(_md_row([i.host, iso(i.started), i.rounds, i.duplicate_rounds, len(i.vms),
                              ", ".join(i.restarted_more_than_once) or "-",
                              ", ".join(i.backlog) or "-"]))
    return "\n".join(lines) + "\n"


def print_plan_tables(plan: Plan, console: Console, *, max_rows: int = 50) -> None:
    """Duplicate groups, HA incidents (newest first) and totals as rich tables."""
    groups = Table(title="Duplicate alert groups (newest first)", title_justify="left")
    for col in ("family", "object", "canonical", "count", "first sent", "last sent"):
        groups.add_column(col, overflow="fold")
    for g in recent_groups(plan)[:max_rows]:
        groups.add_row(g.family, escape(g.object), g.canonical, str(g.count),
                       iso(g.first_sent) or "", iso(g.last_sent) or "")
    if len(plan.groups) > max_rows:
        groups.caption = f"{len(plan.groups) - max_rows} more groups: use --format json or csv"
    console.print(groups)

    hosts = Table(title="Hosts with most failures (whole history)", title_justify="left")
    for col in ("host", "zone", "failures", "rounds", "dup. rounds", "last failure"):
        hosts.add_column(col, overflow="fold")
    for h in plan.hosts[:max_rows]:
        hosts.add_row(escape(h.host), escape(h.zone), str(h.failures), str(h.rounds),
                      str(h.duplicate_rounds), iso(h.last_failure) or "")
    if len(plan.hosts) > max_rows:
        hosts.caption = f"{len(plan.hosts) - max_rows} more hosts: use --view hosts"
    console.print(hosts)

    incidents = Table(title=window_title(plan), title_justify="left")
    for col in ("host", "started", "rounds", "dup. rounds", "restarts per VM", "backlog"):
        incidents.add_column(col, overflow="fold")
    for i in recent_incidents(plan)[:max_rows]:
        twice = set(i.restarted_more_than_once)
        # VMs restarted more than once (the defect ran them twice) stand out.
        restarts = ", ".join(
            f"[bold red]{escape(v.vm)}×{v.restarts}[/]" if v.vm in twice or v.restarts > 1
            else f"{escape(v.vm)}×{v.restarts}"
            for v in i.vms
        )
        incidents.add_row(escape(i.host), iso(i.started) or "", str(i.rounds),
                          str(i.duplicate_rounds), restarts or "-",
                          escape(", ".join(i.backlog)) or "-")
    if len(plan.ha_incidents) > max_rows:
        incidents.caption = f"{len(plan.ha_incidents) - max_rows} more incidents: use --format json"
    console.print(incidents)

    s = plan.summary
    totals = Table(title="Totals", title_justify="left", show_header=False)
    totals.add_column("what")
    totals.add_column("count", justify="right")
    for label, value in (
        ("alerts scanned", s.alerts_scanned),
        ("duplicate groups", s.groups),
        ("duplicates to archive", s.duplicates),
        ("unknown format (left alone)", s.untouched_unknown),
        ("suppressed types (left alone)", s.untouched_suppressed),
        ("host failures / HA incidents (whole history)", s.ha_incidents),
        ("HA rounds (whole history)", s.ha_rounds),
        ("duplicate HA rounds (whole history)", s.duplicate_rounds),
        ("VMs restarted more than once (whole history)", s.vms_restarted_more_than_once),
        ("HA backlog (VMs not yet running elsewhere)", s.ha_backlog),
    ):
        totals.add_row(label, str(value))
    console.print(totals)


def render_plan(plan: Plan, fmt: str, console: Console) -> None:
    """Write the plan in ``fmt`` to the console (plain text for machine formats)."""
    if fmt == "json":
        write_plan_json(plan, console.file)
        console.file.write("\n")
    elif fmt == "csv":
        console.file.write(plan_csv(plan))
    elif fmt == "markdown":
        console.file.write(plan_markdown(plan))
    else:
        print_plan_tables(plan, console)


VIEWS = ("all", "hosts")


def render_hosts(plan: Plan, fmt: str, console: Console) -> None:
    """Only the per-host view of the whole history, in ``fmt`` (``report --view hosts``)."""
    if fmt == "json":
        console.file.write(json.dumps([h.to_json() for h in plan.hosts], indent=1) + "\n")
    elif fmt == "csv":
        console.file.write(hosts_csv(plan))
    else:
        table = Table(title="Hosts with most failures (whole history)", title_justify="left")
        for col in ("host", "host id", "zone", "failures", "rounds", "dup. rounds",
                    "last failure"):
            table.add_column(col, overflow="fold")
        rows = [[h.host, h.host_id, h.zone, str(h.failures), str(h.rounds),
                 str(h.duplicate_rounds), iso(h.last_failure) or ""] for h in plan.hosts]
        if fmt == "markdown":
            lines = [_md_row(c.header for c in table.columns), _md_row(["---"] * 7)]
            console.file.write("\n".join([*lines, *map(_md_row, rows)]) + "\n")
            return
        for row in rows:
            table.add_row(*map(escape, row))
        console.print(table)
