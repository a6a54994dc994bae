"""``cloudstack-sidecar ledger show|export|verify|migrate`` through typer's CliRunner."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
import typer
from ledgerkit import FakeClock, make_alert, make_group, make_host, make_incident, make_plan
from typer.testing import CliRunner

from sidecar.cli.ledger import parse_since, register
from sidecar.ledger import Ledger, utcnow
from sidecar.support.errors import LedgerUnavailable, UserError

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root."""

    register(app)
    return app


def _invoke(*args: str):
    return runner.invoke(_app(), ["ledger", *args])


def _populate(url: str) -> None:
    """Two runs (one 3 days old), a group with two archived duplicates, hosts, alerts."""
    clock = FakeClock(utcnow() - timedelta(days=3))
    ledger = Ledger(url, holder="sidecar-a", clock=clock)
    old_run = ledger.start_run("report", "dry-run")
    ledger.finish_run(old_run, "ok", {"groups": 0})
    ledger.observe_hosts([make_host("h1", "Up", name="kvm-01")], clock())
    clock.advance(timedelta(days=3).total_seconds())
    run = ledger.start_run("cleanup", "apply", endpoint="https://ms1/client/api")
    group = make_group("g-77", "c0", ["d1", "d2"])
    ledger.record_plan(run, make_plan([group], [make_incident("inc-5", ["c0", "d1", "d2"])]))
    ledger.observe_hosts([make_host("h1", "Down", "Fenced", name="kvm-01")], clock())
    ledger.observe_alerts([make_alert(i) for i in ("c0", "d1", "d2")], {}, clock())
    token = ledger.acquire_lease(120)
    assert token is not None
    ledger.intend_archive(run, token, [(group, make_alert("d1")), (group, make_alert("d2"))])
    ledger.mark(token, ["d1", "d2"], "sent")
    ledger.mark(token, ["d1", "d2"], "done")
    ledger.finish_run(run, "ok", {"archived": 2})
    ledger.close()


def test_show_prints_every_kind_as_tables(sqlite_url: str):
    _populate(sqlite_url)

    result = _invoke("show", "--ledger-url", sqlite_url)

    assert result.exit_code == 0, result.output
    for title in ("Runs", "Archive actions", "Merge groups", "HA incidents", "Host state"):
        assert title in result.output
    for text in ("g-77", "inc-5", "kvm-01", "Fenced", "cleanup", "done", "Lease: sidecar-a"):
        assert text in result.output


def test_show_filters_by_kind_and_age_as_json(sqlite_url: str):
    _populate(sqlite_url)

    result = _invoke(
        "show",
        "--kind",
        "run",
        "--kind",
        "host",
        "--since",
        "2d",
        "-f",
        "json",
        "--ledger-url",
        sqlite_url,
    )

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"lease", "runs", "host_transitions"}
    assert [r["kind"] for r in data["runs"]] == ["cleanup"]  # the 3-day-old report is filtered
    assert [h["state"] for h in data["host_transitions"]] == ["Down"]
    assert data["runs"][0]["started_at"].endswith("+00:00")
    assert data["lease"]["holder"] == "sidecar-a"


def test_show_refuses_unknown_kinds_formats_and_durations(sqlite_url: str):
    _populate(sqlite_url)

    for args, text in (
        (["--kind", "nope"], "unknown kind"),
        (["--format", "xml"], "unknown format"),
        (["--since", "yesterday"], "neither a duration"),
    ):
        result = _invoke("show", *args, "--ledger-url", sqlite_url)
        assert isinstance(result.exception, UserError)
        assert text in str(result.exception)


def test_parse_since_takes_durations_and_iso_dates():
    now = utcnow()

    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("1.5d", now) == now - timedelta(days=1.5)
    assert parse_since("1w", now) == now - timedelta(weeks=1)
    assert parse_since("2026-01-31", now) == datetime(2026, 1, 31, tzinfo=UTC)  # naive is UTC
    assert parse_since("2026-01-31T12:00:00+02:00", now) == datetime(2026, 1, 31, 10, tzinfo=UTC)
    assert parse_since(None, now) is None


def test_export_jsonl_streams_every_row_of_every_table(sqlite_url: str):
    _populate(sqlite_url)

    result = _invoke("export", "--format", "jsonl", "--ledger-url", sqlite_url)

    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    kinds = [r["record"] for r in records]
    assert kinds.count("runs") == 2
    assert kinds.count("actions") == 2
    assert kinds.count("decisions") == 2
    assert kinds.count("host_observations") == 2
    assert kinds.count("alert_observations") == 3
    assert kinds.count("leases") == 1
    action = next(r for r in records if r["record"] == "actions")
    assert action["alert"]["id"] == "d1"
    assert action["state"] == "done"


def test_export_csv_has_one_header_and_json_cells(sqlite_url: str):
    _populate(sqlite_url)

    result = _invoke("export", "--format", "csv", "--ledger-url", sqlite_url)

    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == 13  # 2 runs, 2 decisions, 2 actions, 1+2 host rows, 3 alerts, lease
    action = next(r for r in rows if r["record"] == "actions")
    assert json.loads(action["alert"])["id"] == "d1"
    run = next(r for r in rows if r["record"] == "runs" and r["kind"] == "cleanup")
    assert json.loads(run["counts"]) == {"archived": 2}
    assert run["alert"] == ""


def test_export_pages_through_more_rows_than_a_page(db: str):
    ledger = Ledger(db, holder="sidecar-a")
    ledger.observe_alerts([make_alert(f"a{i:05d}") for i in range(2500)], {}, utcnow())
    ledger.close()

    result = _invoke("export", "--ledger-url", db)

    assert result.exit_code == 0, result.output
    ids = [json.loads(line)["alert_id"] for line in result.output.splitlines()]
    assert ids == [f"a{i:05d}" for i in range(2500)]


def test_verify_passes_on_a_consistent_ledger_and_fails_on_a_broken_one(sqlite_url: str):
    _populate(sqlite_url)

    ok = _invoke("verify", "--ledger-url", sqlite_url)
    ledger = Ledger(sqlite_url, holder="sidecar-a")
    token = ledger.acquire_lease(120)
    assert token is not None
    ledger.intend_archive(1, token, [(make_group("g-x", "c9", ["d9"]), make_alert("d9"))])
    ledger.close()
    broken = _invoke("verify", "--ledger-url", sqlite_url)

    assert ok.exit_code == 0, ok.output
    assert "ledger OK: 2 runs, 2 actions, 2 decisions" in ok.output
    assert broken.exit_code == 1
    assert "2 problem(s)" in broken.output
    assert "d9 has no decision" in broken.output
    assert "d9 is unresolved" in broken.output


def test_migrate_creates_then_reports_up_to_date(sqlite_url: str):
    first = _invoke("migrate", "--ledger-url", sqlite_url)
    second = _invoke("migrate", "--ledger-url", sqlite_url)

    assert first.exit_code == 0, first.output
    assert "migrated from empty to revision 0004" in first.output
    assert "is up to date (schema revision 0004)" in second.output


def test_commands_use_the_settings_when_no_url_is_given(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
):
    _populate(sqlite_url)
    monkeypatch.setenv("SIDECAR_LEDGER_URL", sqlite_url)

    result = _invoke("verify")

    assert result.exit_code == 0, result.output
    assert "2 actions" in result.output


def test_reading_a_ledger_that_does_not_exist_is_one_line(tmp_path):
    result = _invoke("show", "--ledger-url", f"sqlite:///{tmp_path / 'missing.sqlite3'}")

    assert isinstance(result.exception, LedgerUnavailable)
    assert "there is no ledger" in str(result.exception)
    assert not (tmp_path / "missing.sqlite3").exists()
