"""``report --format html``: one self-contained page, rendered for real in headless Chromium."""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from chromiumkit import chromium, dump_dom, screenshot, seeded_report
from test_render import plan
from wiringkit import cli_env, ledger_url, run_cli, served, sim_with_history

from sidecar.cli.html import plan_html
from sidecar.model.plan import VmRestarts
from sidecar.ops.report import AlertTimes

needs_chromium = pytest.mark.skipif(
    chromium() is None, reason="chromium is not installed (Debian package chromium; .ci/run "
    "installs it)")


class _Totals(HTMLParser):
    """The totals cells (``id="total-…"``) of a DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.totals: dict[str, int] = {}
        self._key: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        ident = dict(attrs).get("id") or ""
        self._key = ident.removeprefix("total-") if ident.startswith("total-") else None

    def handle_data(self, data: str) -> None:
        if self._key and data.strip():
            self.totals[self._key] = int(data)
            self._key = None


def urls(page: str) -> list[str]:
    """Everything in the page a browser could fetch: schemes, src/href, CSS url(), @import."""
    found = re.findall(r"[a-z][a-z0-9+.-]*://[^\s\"'<>)]*", page, re.IGNORECASE)
    found += re.findall(r"(?:src|href|xlink:href)\s*=\s*[\"']?([^\"'\s>]+)", page, re.I)
    found += re.findall(r"url\(\s*([^)]*)\)|@import", page, re.I)
    return [u for u in found if not u.startswith("data:")]


@needs_chromium
def test_the_html_report_renders_in_chromium_with_its_totals_and_no_console_errors(
    tmp_path: Path,
) -> None:
    totals, page = seeded_report(tmp_path / "report.html", tmp_path / "ledger.sqlite3")
    html = page.read_text()
    assert urls('<link href="https://cdn.example/a.css"><p style="b:url(x.png)">')  # it can fail
    assert urls(html) == []  # nothing for Chromium to request
    assert "<script" not in html

    png = tmp_path / "report.png"
    shot = screenshot(page, png, tmp_path / "profile-shot")
    assert shot.returncode == 0, shot.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 30_000

    dom = dump_dom(page, tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr
    for bad in ("Uncaught", "ERROR:CONSOLE", "net::ERR"):
        assert bad not in dom.stderr
    parser = _Totals()
    parser.feed(dom.stdout)
    shown = parser.totals
    assert totals["alerts_scanned"] > 1000 and totals["duplicates"] > 0
    for key in ("alerts_scanned", "duplicates", "ha_incidents", "duplicate_rounds"):
        assert shown[key] == totals[key], key
    assert dom.stdout.count("<svg") >= 2  # the history and at least one incident timeline
    assert "copies would be archived" in dom.stdout


def test_report_format_html_writes_one_page_and_exits_3_when_duplicates_are_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = sim_with_history(1500)
    with served(sim) as endpoint:
        result = run_cli(["report", "--format", "html"],
                         cli_env(sim, endpoint, ledger_url(tmp_path)), monkeypatch)
    assert result.code == 3, result.err
    assert result.out.startswith("<!DOCTYPE html>") and result.out.count("</html>") == 1
    assert "Alerts and duplicates per" in result.out and result.err == ""


def test_every_piece_of_data_in_the_page_is_escaped() -> None:
    base = plan()
    evil = "<script>alert(1)</script>"
    incident = replace(base.ha_incidents[1], host=f"kvm-{evil}", vms=(VmRestarts(evil, "i", 2),),
                       alert_ids=("x1", "x2"))
    group = replace(base.groups[1], object=f"vm={evil}", reason=evil)
    page = plan_html(
        replace(base, ha_incidents=(incident,), groups=(base.groups[0], group)),
        AlertTimes({"x1": base.generated_at, "x2": base.generated_at},
                   {"x1": ("host_is_down", ""), "x2": ("ha_starting_vm", evil)}),
    )
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert urls(page) == []


def test_a_long_history_is_bucketed_by_day_and_a_short_one_by_hour() -> None:
    base = plan()
    day = {"a": base.groups[0].first_sent, "b": base.groups[1].first_sent}
    hour = {"a": base.generated_at, "b": base.generated_at}
    assert "per day" in plan_html(base, AlertTimes(day, {}))
    assert "bucketed by day" in plan_html(base, AlertTimes(day, {}))
    assert "per hour" in plan_html(base, AlertTimes(hour, {}))
