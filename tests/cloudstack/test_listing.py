"""Listing for the reconciler: complete despite tied page edges, and cheap when nothing is new."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from wiringkit import context, served

from cloudstack_simulator import Simulator
from sidecar.cloudstack.client import CloudStackClient
from sidecar.cloudstack.listing import (
    ELIGIBLE_NAMES,
    PageEdges,
    list_alerts_by_name,
    list_alerts_of_name,
    list_new_alerts,
    server_now,
    tied_edges,
)


def burst(sim: Simulator, n: int, per_second: int, name: str = "ALERT.USERVM") -> list[str]:
    """``n`` HA alerts, ``per_second`` of them in each second (ties on ``sent``)."""
    ids = []
    for i in range(n):
        ids.append(sim.emit_alert(name, f"HA starting VM: vm-{i} (i-2-{i}-VM)"))
        if i % per_second == per_second - 1:
            sim.clock.advance(1)
    return ids


def with_client(sim: Simulator, tmp_path: Path, work: Any) -> Any:
    async def main(endpoint: str) -> Any:
        ctx = context(sim, endpoint, f"sqlite:///{tmp_path / 'unused.sqlite3'}")
        async with ctx.client() as cs:
            return await work(cs)

    with served(sim) as endpoint:
        return asyncio.run(main(endpoint))


def test_a_listing_holds_every_row_although_tied_rows_swap_across_page_edges(
    tmp_path: Path,
) -> None:
    sim = Simulator(hosts=2, vms_per_host=1, tie_order="shuffle")
    ids = burst(sim, 1203, per_second=3)  # page edges 500 and 1000 cut groups of 3
    alerts, complete, count, pages = with_client(
        sim, tmp_path, lambda cs: list_alerts_of_name(cs, "ALERT.USERVM")
    )
    assert complete and count == 1203
    assert {a.id for a in alerts} == set(ids)
    assert len(alerts) == len(ids)
    assert pages >= 3


def test_a_listing_whose_rows_change_while_paging_is_not_called_complete(
    tmp_path: Path,
) -> None:
    sim = Simulator(hosts=2, vms_per_host=1, tie_order="stable")
    burst(sim, 1100, per_second=1)
    sim.faults.add("insert_alerts", times=1, n=2, min_page=2, name="ALERT.USERVM",
                   subject="HA starting VM: late (i-2-999-VM)")
    listing = with_client(sim, tmp_path, lambda cs: list_alerts_by_name(cs, ["ALERT.USERVM"]))
    assert not listing.consistent
    assert listing.counts == {"ALERT.USERVM": 1102}


def test_tied_edges_are_where_a_page_ends_and_the_next_begins_in_the_same_second() -> None:
    def rows(*sents: str) -> PageEdges:
        return PageEdges.of([{"id": f"{s}-{i}", "sent": s} for i, s in enumerate(sents)])

    pages = {1: rows("10", "09", "08"), 2: rows("08", "07", "06"), 3: rows("05", "04")}
    assert tied_edges(pages) == [1]
    assert tied_edges({1: rows("3", "2"), 2: rows("1")}) == []


def test_new_alerts_cost_one_small_page_per_name_when_nothing_is_new(tmp_path: Path) -> None:
    sim = Simulator(hosts=2, vms_per_host=1)
    burst(sim, 250, per_second=1)
    seen: set[str] = set()

    async def poll(cs: CloudStackClient, marks: dict[str, datetime] | None) -> Any:
        return await list_new_alerts(cs, ELIGIBLE_NAMES, known=lambda ids: seen & set(ids),
                                     not_before=None, watermarks=marks)

    first = with_client(sim, tmp_path, lambda cs: poll(cs, None))
    assert len(first["ALERT.USERVM"]) == 250  # nothing known yet: every page
    seen.update(a.id for a in first["ALERT.USERVM"])
    marks = {"ALERT.USERVM": max(a.sent for a in first["ALERT.USERVM"])}

    sim.stats.reset()
    again = with_client(sim, tmp_path, lambda cs: poll(cs, marks))
    assert sim.stats.calls["listAlerts"] == len(ELIGIBLE_NAMES)
    assert again["ALERT.USERVM"]  # the first page, all known

    # Older alerts nobody has seen (the ledger was pruned) do not make it page deeper.
    seen.clear()
    sim.stats.reset()
    with_client(sim, tmp_path, lambda cs: poll(cs, marks))
    assert sim.stats.calls["listAlerts"] == len(ELIGIBLE_NAMES)

    # A burst of new alerts is read down to the watermark, across pages.
    seen.update(a.id for a in first["ALERT.USERVM"])
    new = set(burst(sim, 150, per_second=2))
    sim.stats.reset()
    got = with_client(sim, tmp_path, lambda cs: poll(cs, marks))
    assert new <= {a.id for a in got["ALERT.USERVM"]}
    assert sim.stats.calls["listAlerts"] == len(ELIGIBLE_NAMES) + 1  # 2 pages of 100


def test_new_alerts_stop_at_the_memory_horizon_on_the_first_poll(tmp_path: Path) -> None:
    sim = Simulator(hosts=2, vms_per_host=1)
    burst(sim, 300, per_second=1)
    sim.clock.advance(3 * 86400)
    recent = set(burst(sim, 20, per_second=1))
    horizon = sim.now() - timedelta(hours=24)
    got = with_client(sim, tmp_path, lambda cs: list_new_alerts(
        cs, ["ALERT.USERVM"], known=lambda ids: set(), not_before=horizon))
    assert recent <= {a.id for a in got["ALERT.USERVM"]}
    assert sim.stats.calls["listAlerts"] == 1  # the first page already reaches old alerts


def test_server_now_is_our_clock_corrected_by_the_server_date_header() -> None:
    client: Any = SimpleNamespace(clock_skew=-3600.0)
    now = datetime.now(UTC)
    assert abs((server_now(client) - (now - timedelta(hours=1))).total_seconds()) < 5
    client.clock_skew = None
    assert abs((server_now(client) - now).total_seconds()) < 5


def test_a_tie_window_covers_the_whole_tied_group_in_one_aligned_page():
    from sidecar.cloudstack.listing import tie_groups, window_of

    def rows(sents: list[str]) -> PageEdges:
        return PageEdges.of([{"id": f"{s}-{i}", "sent": s} for i, s in enumerate(sents)])

    # Page 1 ends with 3 rows sent at T, page 2 starts with 2 more: positions 7..11 (size 10).
    pages = {1: rows(["A"] * 7 + ["T"] * 3), 2: rows(["T"] * 2 + ["B"] * 8)}
    (group,) = tie_groups(pages, 10)
    number, width = window_of(group.start, group.stop)  # type: ignore[misc]
    first = (number - 1) * width
    assert first <= 7 and first + width >= 12  # holds positions 7..11
    assert width < 10


def test_page_edges_keep_the_runs_of_one_second_at_both_ends_of_a_page() -> None:
    rows = [{"id": str(i), "sent": s} for i, s in enumerate(["9", "9", "8", "7", "7", "7"])]
    assert PageEdges.of(rows) == PageEdges(rows=6, first="9", head=2, last="7", tail=3)
    same = [{"id": str(i), "sent": "5"} for i in range(4)]
    assert PageEdges.of(same) == PageEdges(rows=4, first="5", head=4, last="5", tail=4)
    assert PageEdges.of([]) == PageEdges(rows=0)


def test_a_tie_group_wider_than_a_page_spans_every_page_it_covers_and_has_no_window() -> None:
    from sidecar.cloudstack.listing import tie_groups, window_of

    def rows(sents: list[str]) -> PageEdges:
        return PageEdges.of([{"id": f"{s}-{i}", "sent": s} for i, s in enumerate(sents)])

    pages = {1: rows(["A"] * 498 + ["T"] * 2), 2: rows(["T"] * 500),
             3: rows(["T"] * 3 + ["X"] * 492 + ["B"] * 5), 4: rows(["B"] * 2 + ["C"] * 8)}
    first, second = tie_groups(pages, 500)
    assert (first.sent, first.start, first.stop, first.pages) == ("T", 498, 1003, (1, 2, 3))
    assert (second.sent, second.start, second.stop, second.pages) == ("B", 1495, 1502, (3, 4))
    assert window_of(first.start, first.stop) is None  # 505 rows: only whole pages again
    number, width = window_of(second.start, second.stop)  # type: ignore[misc]
    assert (number - 1) * width <= 1495 and number * width >= 1502 and width <= 500


def test_a_listing_asks_again_only_for_the_tied_groups_it_holds_too_few_rows_of(
    tmp_path: Path,
) -> None:
    sim = Simulator(hosts=2, vms_per_host=1, tie_order="shuffle")
    burst(sim, 1203, per_second=3)  # two page edges cut a group of 3
    alerts, complete, count, fetched = with_client(
        sim, tmp_path, lambda cs: list_alerts_of_name(cs, "ALERT.USERVM")
    )
    assert complete and len(alerts) == count == 1203
    assert fetched <= 3 + 2  # 3 pages, then at most one small window per short group
