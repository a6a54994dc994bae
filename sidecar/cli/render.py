"""Render a Plan for people (rich tables, markdown) and for scripts (JSON, CSV)."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import partial
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
    lines += ["", "## Hosts with most failures (whole history)", "", *hosts_markdown(plan)]
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


def time_zone(plan: Plan) -> tzinfo:
    """The zone dates are shown in: the plan's own clock (the server's), else UTC."""
    return plan.generated_at.tzinfo or UTC


def zone_label(zone: tzinfo) -> str:
    """``UTC`` or ``UTC+05:30``: stated once per report, so each date can be short."""
    offset = datetime(2000, 1, 1, tzinfo=zone).utcoffset() or timedelta(0)
    if not offset:
        return "UTC"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def short_time(value: datetime | None, zone: tzinfo) -> str:
    """``2025-05-06 09:46`` in ``zone`` (seconds stay in JSON and CSV)."""
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M") if value else ""


def largest_groups(plan: Plan) -> list[MergeGroup]:
    """Groups with the most copies first, then the newest: where the flood was."""
    return sorted(plan.groups, key=lambda g: (g.count, g.last_sent, g.group_id), reverse=True)


@dataclass(frozen=True, slots=True)
class FamilyRow:
    """One family's alerts scanned, duplicate groups and duplicates to archive."""

    family: str
    alerts: int
    groups: int
    duplicates: int


def family_rows(plan: Plan) -> list[FamilyRow]:
    """Per family, most duplicates (then alerts) first."""
    groups: Counter[str] = Counter()
    duplicates: Counter[str] = Counter()
    for g in plan.groups:
        groups[g.family] += 1
        duplicates[g.family] += len(g.duplicates)
    names = set(plan.summary.by_family) | set(groups)
    rows = [FamilyRow(f, plan.summary.by_family.get(f, 0), groups[f], duplicates[f])
            for f in names]
    return sorted(rows, key=lambda r: (-r.duplicates, -r.alerts, r.family))


def total_rows(plan: Plan) -> list[tuple[str, int]]:
    """The totals, labelled, in the order operators read them."""
    s = plan.summary
    return [
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
    ]


#: Restarts listed per incident row; the rest are counted (every VM is in JSON and HTML).
_VMS_SHOWN = 6
#: The full lists, for a caption under a capped table.
FULL_FORMATS = "--format json|csv|html"


def _more(shown: int, total: int, what: str, where: str = FULL_FORMATS) -> str | None:
    return f"{total - shown} more {what} (of {total}): {where}" if total > shown else None


def _restarts(incident: HAIncident) -> str:
    """``vm×n`` per VM, twice-restarted ones first and in bold red, capped at a few."""
    twice = set(incident.restarted_more_than_once)
    vms = sorted(incident.vms, key=lambda v: (v.vm not in twice and v.restarts <= 1, v.vm))
    cells = [
        # VMs restarted more than once (the defect ran them twice) stand out.
        f"[bold red]{_cell(v.vm, 30)}×{v.restarts}[/]" if v.vm in twice or v.restarts > 1
        else f"{_cell(v.vm, 30)}×{v.restarts}"
        for v in vms[:_VMS_SHOWN]
    ]
    if len(vms) > _VMS_SHOWN:
        cells.append(f"+{len(vms) - _VMS_SHOWN} more")
    return ", ".join(cells)


def _table(title: str, caption: str | None = None, **options: Any) -> Table:
    return Table(title=escape(title), caption=caption, title_justify="left",
                 caption_justify="left", **options)


def _date_column(table: Table, header: str) -> None:
    # A date never wraps: the zone is stated once in the totals' title.
    table.add_column(header, no_wrap=True, min_width=16)


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters with an ellipsis (JSON, CSV and HTML keep it whole)."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _cell(text: str, width: int) -> str:
    # Clipped before rich sees it, so a long subject wraps over a few lines at most.
    return escape(clip(text, width))


def print_plan_tables(plan: Plan, console: Console, *, max_rows: int = 50) -> None:
    """Totals, per family, per host, the largest groups, then the HA incidents, as rich tables."""
    zone = time_zone(plan)
    when = partial(short_time, zone=zone)
    totals = _table(f"Totals (plan of {when(plan.generated_at)}, times {zone_label(zone)})",
                    show_header=False)
    totals.add_column("what")
    totals.add_column("count", justify="right")
    for label, value in total_rows(plan):
        totals.add_row(label, str(value))
    console.print(totals)

    families = _table("Per family")
    for col in ("family", "alerts", "groups", "duplicates"):
        families.add_column(col, justify="left" if col == "family" else "right")
    for f in family_rows(plan):
        families.add_row(escape(f.family), str(f.alerts), str(f.groups), str(f.duplicates))
    console.print(families)

    console.print(hosts_table(plan, max_rows=max_rows))

    # Below 100 columns the canonical's id gives way to the object (it is in every full format).
    canonical = console.width >= 100
    groups = _table("Largest duplicate groups (most copies first)",
                    _more(max_rows, len(plan.groups), "groups"))
    for col in ("family", "object", *(("canonical",) if canonical else ()), "count"):
        groups.add_column(col, justify="right" if col == "count" else "left")
    _date_column(groups, "first sent")
    _date_column(groups, "last sent")
    for g in largest_groups(plan)[:max_rows]:
        ids = (_cell(g.canonical, 12),) if canonical else ()
        groups.add_row(_cell(g.family, 14), _cell(g.object, 60), *ids, str(g.count),
                       when(g.first_sent), when(g.last_sent))
    console.print(groups)

    incidents = _table(window_title(plan),
                       _more(max_rows, len(plan.ha_incidents), "incidents", "--format json|html"))
    for col in ("host", "started", "rounds", "dup. rounds", "restarts per VM", "backlog"):
        if col == "started":
            _date_column(incidents, col)
        else:
            incidents.add_column(col, justify="right" if "rounds" in col else "left")
    for i in recent_incidents(plan)[:max_rows]:
        incidents.add_row(_cell(i.host, 30), when(i.started), str(i.rounds),
                          str(i.duplicate_rounds), _restarts(i) or "-",
                          _cell(", ".join(i.backlog), 40) or "-")
    console.print(incidents)


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
    elif fmt == "markdown":
        console.file.write("\n".join(hosts_markdown(plan, with_id=True)) + "\n")
    else:
        console.print(hosts_table(plan, max_rows=None, with_id=True))


def hosts_markdown(plan: Plan, *, with_id: bool = False) -> list[str]:
    """The per-host view as markdown table lines (header, separator, a row per host)."""
    header = ["host", *(("host id",) if with_id else ()), "zone", "failures", "rounds",
              "duplicate rounds", "last failure"]
    rows = [[h.host, *((h.host_id,) if with_id else ()), h.zone, h.failures, h.rounds,
             h.duplicate_rounds, iso(h.last_failure)] for h in plan.hosts]
    return [_md_row(header), _md_row(["---"] * len(header)), *map(_md_row, rows)]


def hosts_table(plan: Plan, *, max_rows: int | None, with_id: bool = False) -> Table:
    """The per-host view as a rich table: the first ``max_rows`` hosts (None: every one)."""
    when = partial(short_time, zone=time_zone(plan))
    shown = plan.hosts if max_rows is None else plan.hosts[:max_rows]
    table = _table("Hosts with most failures (whole history)",
                   _more(len(shown), len(plan.hosts), "hosts", "--view hosts"))
    for col in ("host", *(("host id",) if with_id else ()), "zone"):
        table.add_column(col)
    for col in ("failures", "rounds", "dup. rounds"):
        table.add_column(col, justify="right")
    _date_column(table, "last failure")
    for h in shown:
        table.add_row(_cell(h.host, 40), *((_cell(h.host_id, 36),) if with_id else ()),
                      _cell(h.zone, 20), str(h.failures), str(h.rounds),
                      str(h.duplicate_rounds), when(h.last_failure))
    return table
