"""Rendering a Plan: the JSON contract, CSV, markdown and tables (newest first, highlights)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

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


def test_tables_list_the_newest_first_and_keep_markup_in_data_literal() -> None:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_plan_tables(plan(), console)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert out.index("new-canon") < out.index("old-canon")
    incidents = out.split("HA incidents")[1]
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
    assert "1 more groups: use --format json or csv" in out
    assert "1 more incidents" in out


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
