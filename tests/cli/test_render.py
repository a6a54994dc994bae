"""Rendering a Plan: the JSON contract, CSV, markdown and tables (totals first, highlights)."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from rich.console import Console

from sidecar.cli.render import plan_csv, plan_json, plan_markdown, print_plan_tables, render_plan
from sidecar.model.plan import HAIncident, MergeGroup, Plan, Summary, VmRestarts

T0 = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)


def group(gid: str, when: datetime, obj: str = "host=kvm-01") -> MergeGroup:
    return MergeGroup(
        group_id=gid, family="host_is_down", object=obj, fingerprint=f"fp-{gid}",
        alert_name="ALERT.COMPUTE.HOST", canonical=f"{gid}-canon",
        duplicates=(f"{gid}-d1", f"{gid}-d2"), first_sent=when,
        last_sent=when + timedelta(seconds=9), reason="same fingerprint | within 600 s",
    )


def plan() -> Plan:
    old, new = group("old", T0), group("new", T0 + timedelta(days=30), obj="vm=[bold]web[/]")
    incidents = (
        HAIncident(
            incident_id="i-old", host="kvm-01", host_id="h1", zone="zone-a", started=T0,
            last_seen=T0, rounds=1, duplicate_rounds=0,
            vms=(VmRestarts("app-1", "i-2-1-VM", 1),), backlog=(),
            restarted_more_than_once=(),
        ),
        HAIncident(
            incident_id="i-new", host="kvm-02", host_id="h2", zone="zone-a",
            started=T0 + timedelta(days=30), last_seen=T0 + timedelta(days=30), rounds=3,
            duplicate_rounds=2,
            vms=(VmRestarts("db-3", "i-2-3-VM", 3), VmRestarts("web-4", "i-2-4-VM", 1)),
            backlog=("cache-5",), restarted_more_than_once=("db-3",),
        ),
    )
    archive = tuple(sorted(d for g in (old, new) for d in g.duplicates))
    return Plan(T0 + timedelta(days=31), (old, new), archive, incidents,
                Summary(alerts_scanned=10, groups=2, duplicates=4, ha_incidents=2))


def test_json_is_the_plan_contract_and_round_trips() -> None:
    text = plan_json(plan())
    data = json.loads(text)
    assert data == plan().to_json()
    assert list(data) == list(plan().to_json())  # key order kept
    assert Plan.from_json(data) == plan()
    assert text.count("\n") >= len(data["groups"]) + len(data["ha_incidents"])  # a line each


def test_csv_has_a_row_for_every_canonical_and_duplicate() -> None:
    rows = list(csv.DictReader(io.StringIO(plan_csv(plan()))))
    assert [(r["alert_id"], r["role"]) for r in rows if r["group_id"] == "old"] == [
        ("old-canon", "canonical"), ("old-d1", "duplicate"), ("old-d2", "duplicate"),
    ]
    assert {r["count"] for r in rows} == {"3"}


def test_markdown_lists_the_newest_group_first_and_escapes_pipes() -> None:
    text = plan_markdown(plan())
    assert text.index("new-canon") < text.index("old-canon")
    assert text.index("| kvm-02 |") < text.index("| kvm-01 |")
    assert "same fingerprint | within" not in text  # reasons are not in the table
    assert "db-3" in text and "cache-5" in text


def test_tables_list_equally_large_groups_newest_first_and_keep_markup_in_data_literal() -> None:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_plan_tables(plan(), console)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert out.index("new-canon") < out.index("old-canon")
    incidents = out.split("HA incidents (whole history, newest first)")[1]
    assert incidents.index("kvm-02") < incidents.index("kvm-01")
    assert "vm=[bold]web[/]" in out  # an alert's text is shown, never interpreted
    assert "db-3×3" in out and "cache-5" in out


def test_vms_restarted_more_than_once_stand_out_on_a_terminal() -> None:
    console = Console(file=io.StringIO(), width=200, force_terminal=True,
                      color_system="standard")
    print_plan_tables(plan(), console)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[1;31mdb-3×3" in out  # bold red
    assert "\x1b[1;31mweb-4" not in out


def test_tables_are_capped_with_a_caption_pointing_to_the_full_formats() -> None:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_plan_tables(plan(), console, max_rows=1)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "new-canon" in out and "old-canon" not in out
    assert "1 more groups (of 2): --format json|csv|html" in out
    assert "1 more incidents (of 2)" in out


def many_groups(n: int = 80) -> Plan:
    """The test plan with ``n`` more groups of long objects, the oldest the largest."""
    long = "host=kvm-{i:02d}.a-rather-long-domain-name.example.org host_id={i} zone=zone-a pod=p1"
    extra = [group(f"g{i:03d}", T0 + timedelta(hours=i), obj=long.format(i=i)) for i in range(n)]
    extra[0] = replace(extra[0], duplicates=tuple(f"big-d{k}" for k in range(9)))
    base = plan()
    return replace(base, groups=base.groups + tuple(extra))


@pytest.mark.parametrize("width", [80, 120])
def test_tables_put_totals_first_and_never_split_a_date_or_a_long_object(width: int) -> None:
    console = Console(width=width, record=True, file=io.StringIO())
    print_plan_tables(many_groups(), console, max_rows=20)
    out = console.export_text()
    lines = out.splitlines()
    assert max(map(len, lines)) <= width  # nothing cropped or overflowing
    order = ["Totals (plan of 2025-06-01 10:00, times UTC)", "Per family",
             "Hosts with most failures", "Largest duplicate groups",
             "HA incidents (whole history, newest first)"]
    assert [out.index(title) for title in order] == sorted(out.index(t) for t in order)
    groups = out.split("Largest duplicate groups")[1].split("HA incidents (")[0]
    rows = [line for line in groups.splitlines() if re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", line)]
    assert len(rows) == 20 and "│    10 │ 2025-05-01 10:00" in rows[0]  # the largest first
    # Every date is whole on its line: no "2025-05-0" / "1 10:00" split, no ISO tail.
    assert not re.search(r"\d{4}-\d\d-\d\d\s*(│|$)", out, re.MULTILINE)
    assert "T10:00" not in out and "Z\n" not in out
    continuation = [line for line in groups.splitlines()
                    if line.startswith("│") and not re.search(r"\d{4}-", line)]
    assert len(continuation) <= 3 * len(rows)  # an object wraps over four lines at most
    assert "62 more groups (of 82): --format json|csv|html" in " ".join(out.split())


def test_the_per_family_table_counts_alerts_groups_and_duplicates() -> None:
    base = many_groups(3)  # 5 groups: 4 of 2 duplicates, one of 9
    counted = replace(base, summary=replace(base.summary, by_family={"host_is_down": 40,
                                                                     "ha_starting_vm": 7}))
    console = Console(width=120, record=True, file=io.StringIO())
    print_plan_tables(counted, console)
    families = console.export_text().split("Per family")[1].split("Hosts with")[0]
    assert re.search(r"host_is_down\s+│\s+40\s+│\s+5\s+│\s+17\s+│", families)
    assert re.search(r"ha_starting_vm\s+│\s+7\s+│\s+0\s+│\s+0\s+│", families)


def test_dates_are_shown_in_the_plans_zone_and_the_title_says_which() -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    shifted = replace(plan(), generated_at=plan().generated_at.astimezone(india))
    console = Console(width=120, record=True, file=io.StringIO())
    print_plan_tables(shifted, console)
    out = console.export_text()
    assert "times UTC+05:30" in out
    assert "2025-05-31 15:30" in out  # kvm-02's failure, 10:00 UTC


def test_render_plan_writes_machine_formats_without_console_markup() -> None:
    console = Console(file=io.StringIO(), width=40, force_terminal=True)
    render_plan(plan(), "json", console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert json.loads(text)["archive"] == list(plan().archive)


def test_streamed_json_is_the_same_text_whatever_the_chunk_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sidecar.cli.render as render

    whole = plan_json(plan())
    for size in (1, 2, 3):
        monkeypatch.setattr(render, "_CHUNK", size)
        assert plan_json(plan()) == whole
    empty = Plan(T0, (), (), (), Summary())
    assert json.loads(plan_json(empty)) == empty.to_json()


def test_vm_names_hosts_zones_and_subjects_with_brackets_are_shown_literally() -> None:
    from sidecar.cli.demo import _alert_table
    from sidecar.model.plan import HostFailures
    from sidecar.model.resources import Alert

    base = plan()
    odd = replace(base.ha_incidents[1], host="kvm-[b]02", backlog=("[i]cache[/i]",),
                  vms=(VmRestarts("[red]db[/red]", "i-2-3-VM", 3),),
                  restarted_more_than_once=("[red]db[/red]",))
    hosts = (HostFailures("kvm-[b]02", "h2", "[zone a]", 1, 3, 2, T0),)
    console = Console(width=200, record=True, file=io.StringIO())
    print_plan_tables(replace(base, ha_incidents=(odd,), hosts=hosts), console)
    subject = "HA starting VM: [bold]web[/bold] (i-2-9-VM)"
    console.print(_alert_table("alerts", [Alert("a1", 8, "ALERT.USERVM", subject, T0)]))
    out = console.export_text()
    for text in ("kvm-[b]02", "[i]cache[/i]", "[red]db[/red]×3", "[zone a]", subject):
        assert text in out
