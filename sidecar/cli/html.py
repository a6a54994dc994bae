"""``report --format html``: one self-contained page (inline CSS and SVG, no script, no URL)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, tzinfo
from html import escape

from sidecar.cli.render import (
    family_rows,
    largest_groups,
    recent_incidents,
    short_time,
    time_zone,
    total_rows,
    window_title,
    zone_label,
)
from sidecar.cli.svg import ARCHIVE, KEEP, Bucket, Lane, bars, timeline
from sidecar.model.plan import HAIncident, Plan
from sidecar.ops.report import AlertTimes

#: Incidents drawn as timelines (newest first); every one is in the JSON.
MAX_INCIDENTS = 10
#: Rows of the host and group tables.
MAX_ROWS = 50
#: Up to this span the history is bucketed by hour, beyond it by day.
HOURLY_SPAN = timedelta(days=14)

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1240px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px}
table{border-collapse:collapse;margin:4px 0}td,th{border:1px solid #ccc;padding:3px 8px}
th{background:#f3f3f3;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#666;font-size:12px}.key span{display:inline-block;width:10px;height:10px;
margin:0 4px 0 12px}.totals td:first-child{min-width:340px}svg{display:block}
.groups td:nth-child(5),.groups td:nth-child(6){white-space:nowrap}
"""


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], css: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="n">{c}</td>' if isinstance(c, int) else f"<td>{escape(str(c))}</td>"
            for c in row) + "</tr>"
        for row in rows
    )
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _key() -> str:
    return (f'<p class="note key"><span style="background:{KEEP}"></span>alerts kept'
            f'<span style="background:{ARCHIVE}"></span>copies that would be archived</p>')


def history_buckets(times: AlertTimes, archive: Iterable[str], zone: tzinfo
                    ) -> tuple[list[Bucket], str]:
    """Alerts and duplicates per hour, or per day when the history is long; says which."""
    sent = times.sent
    if not sent:
        return [], "hour"
    first, last = min(sent.values()), max(sent.values())
    daily = last - first > HOURLY_SPAN
    unit, fmt = ("day", "%Y-%m-%d") if daily else ("hour", "%Y-%m-%d %H:00")
    step = timedelta(days=1) if daily else timedelta(hours=1)

    def floor(at: datetime) -> datetime:
        local = at.astimezone(zone).replace(minute=0, second=0, microsecond=0)
        return local.replace(hour=0) if daily else local

    alerts = Counter(floor(at) for at in sent.values())
    duplicates = Counter(floor(sent[i]) for i in archive if i in sent)
    buckets, at = [], floor(first)
    while at <= floor(last):
        buckets.append(Bucket(at.strftime(fmt), alerts[at], duplicates[at]))
        # Wall-clock steps in the fixed zone of the report: no DST gaps in a fixed offset.
        at = floor(at + step)
    return buckets, unit


def incident_lanes(incident: HAIncident, times: AlertTimes, archive: set[str]) -> list[Lane]:
    """The host's "Host is down" rounds, then one lane per VM with its restarts."""
    rounds: list[tuple[datetime, bool]] = []
    per_vm: dict[str, list[tuple[datetime, bool]]] = {v.vm: [] for v in incident.vms}
    for alert_id in incident.alert_ids:
        at = times.sent.get(alert_id)
        if at is None:
            continue
        _, vm = times.kinds.get(alert_id, ("", ""))
        mark = (at, alert_id in archive)
        if vm:
            per_vm.setdefault(vm, []).append(mark)
        else:
            rounds.append(mark)
    lanes = [Lane(f"host {incident.host}: {incident.rounds} rounds", rounds)]
    restarts = {v.vm: v.restarts for v in incident.vms}
    lanes += [Lane(f"{vm}: {restarts.get(vm, len(marks))} restarts", marks)
              for vm, marks in sorted(per_vm.items())]
    return lanes


def _incident(incident: HAIncident, times: AlertTimes, archive: set[str], zone: tzinfo) -> str:
    lanes = incident_lanes(incident, times, archive)
    archived = sum(1 for lane in lanes for _, a in lane.marks if a)
    head = (f"{incident.host} ({incident.zone or 'zone ?'}) failed "
            f"{short_time(incident.started, zone)}: {incident.rounds} rounds "
            f"({incident.duplicate_rounds} duplicate), {len(incident.vms)} VMs, "
            f"{archived} copies would be archived"
            + (f", backlog: {', '.join(incident.backlog)}" if incident.backlog else ""))
    picture = timeline(incident.started, max(incident.last_seen, incident.started), lanes,
                       f"timeline of {incident.host}", short_time(incident.started, zone))
    return f"<h3>{escape(head)}</h3>{picture}"


def plan_html(plan: Plan, times: AlertTimes) -> str:
    """The whole report as one HTML document."""
    zone = time_zone(plan)
    label = zone_label(zone)
    archive = set(plan.archive)
    keys = dict(zip(("alerts_scanned", "groups", "duplicates", "untouched_unknown",
                     "untouched_suppressed", "ha_incidents", "ha_rounds", "duplicate_rounds",
                     "vms_restarted_more_than_once", "ha_backlog"), total_rows(plan),
                    strict=True))
    totals = "".join(f'<tr><td>{escape(text)}</td><td class="n" id="total-{key}">{value}</td>'
                     "</tr>" for key, (text, value) in keys.items())
    parts = [
        f"<h1>CloudStack duplicate alert report</h1>"
        f"<p>Plan of {escape(short_time(plan.generated_at, zone))}; times {escape(label)}. "
        "A dry run: nothing was archived.</p>",
        f'<h2>Totals</h2><table class="totals"><tbody>{totals}</tbody></table>',
        "<h2>Per family</h2>" + _table(
            ("family", "alerts", "groups", "duplicates"),
            ((f.family, f.alerts, f.groups, f.duplicates) for f in family_rows(plan))),
        "<h2>Hosts with most failures (whole history)</h2>" + _table(
            ("host", "zone", "failures", "rounds", "duplicate rounds", "last failure"),
            ((h.host, h.zone, h.failures, h.rounds, h.duplicate_rounds,
              short_time(h.last_failure, zone)) for h in plan.hosts[:MAX_ROWS])),
    ]
    if len(plan.hosts) > MAX_ROWS:
        parts.append(_note(f"{len(plan.hosts) - MAX_ROWS} more hosts: report --view hosts"))
    buckets, unit = history_buckets(times, archive, zone)
    parts.append(f"<h2>Alerts and duplicates per {unit} (whole history)</h2>")
    if unit == "day":
        parts.append(_note(f"The history spans more than {HOURLY_SPAN.days} days: bucketed by "
                           "day."))
    parts += [_key(), bars(buckets, f"alerts per {unit}") if buckets else _note("No alerts.")]
    incidents = recent_incidents(plan)
    parts.append(f"<h2>{escape(window_title(plan))}</h2>")
    if len(incidents) > MAX_INCIDENTS:
        parts.append(_note(f"The {MAX_INCIDENTS} most recent of {len(incidents)} incidents are "
                           "drawn; every one is in report --format json."))
    parts.append(_key())
    parts += [_incident(i, times, archive, zone) for i in incidents[:MAX_INCIDENTS]]
    if not incidents:
        parts.append(_note("No HA incidents."))
    groups = largest_groups(plan)
    parts.append("<h2>Largest duplicate groups (most copies first)</h2>" + _table(
        ("family", "object", "canonical", "count", "first sent", "last sent", "reason"),
        ((g.family, g.object, g.canonical, g.count, short_time(g.first_sent, zone),
          short_time(g.last_sent, zone), g.reason) for g in groups[:MAX_ROWS]), "groups"))
    if len(groups) > MAX_ROWS:
        parts.append(_note(f"{len(groups) - MAX_ROWS} more groups: report --format json or csv"))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>CloudStack duplicate alert report</title>"
            f"<style>{_CSS}</style></head><body>" + "\n".join(parts) + "</body></html>\n")

