"""``report``: the dry run. Exactly the injected duplicates, in every format, changing nothing."""

from __future__ import annotations

import asyncio
import csv
import io
from collections import Counter
from pathlib import Path

import pytest
from wiringkit import cli_env, context, ledger_url, run_cli, served, sim_with_history

from cloudstack_simulator import Simulator
from sidecar.ops.report import gather_plan


@pytest.fixture
def sim() -> Simulator:
    return sim_with_history(1500)


def test_report_json_is_the_plan_contract_with_exactly_the_injected_duplicates(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with served(sim) as endpoint:
        result = run_cli(["report", "--format", "json"],
                         cli_env(sim, endpoint, ledger_url(tmp_path)), monkeypatch)
    assert result.code == 3, result.err  # duplicates found
    plan = result.json()
    assert list(plan) == ["schema", "generated_at", "groups", "archive", "ha_incidents",
                          "summary", "hosts"]
    assert set(plan["archive"]) == sim.truth.duplicate_ids
    assert sorted(d for g in plan["groups"] for d in g["duplicates"]) == plan["archive"]
    assert not {g["canonical"] for g in plan["groups"]} & set(plan["archive"])
    assert plan["summary"]["duplicates"] == len(plan["archive"])
    [incident] = [i for i in plan["ha_incidents"] if i["host"] == sim.truth.failures[-1].host]
    assert incident["duplicate_rounds"] == sim.truth.failures[-1].duplicate_rounds
    assert result.err == ""


def test_report_makes_only_read_calls(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with served(sim) as endpoint:
        result = run_cli(["report"], cli_env(sim, endpoint, ledger_url(tmp_path)), monkeypatch)
    assert result.code == 3, result.err
    commands = {r.command for r in sim.stats.requests}
    assert commands <= {"listCapabilities", "listAlerts", "listHosts", "listVirtualMachines",
                        "listConfigurations"}
    assert {r.method for r in sim.stats.requests} == {"GET"}
    assert not sim.stats.archive_count


def test_report_exits_0_when_there_is_nothing_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = sim_with_history(0, scenario=None)
    with served(sim) as endpoint:
        result = run_cli(["report", "--format", "json"],
                         cli_env(sim, endpoint, ledger_url(tmp_path)), monkeypatch)
    assert result.code == 0, result.err
    assert result.json()["archive"] == []


def test_report_tables_show_the_totals_first_then_the_largest_groups(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = None
    with served(sim) as endpoint:
        env = cli_env(sim, endpoint, ledger_url(tmp_path))
        table = run_cli(["report"], env, monkeypatch)
        plan = run_cli(["report", "--format", "json"], env, monkeypatch).json()
    assert table.code == 3
    out = table.out
    titles = ["Totals (plan of ", "duplicates to archive", "duplicate HA rounds (whole history)",
              "Per family", "Hosts with most failures (whole history)",
              "Largest duplicate groups (most copies first)", "HA incidents of the last 7 days"]
    assert [out.index(t) for t in titles] == sorted(out.index(t) for t in titles)
    largest = max(g["count"] for g in plan["groups"])
    groups = out.split("Largest duplicate groups")[1]
    first_row = next(line for line in groups.splitlines() if line.startswith("│"))
    assert f"│ {largest:>5} │" in first_row
    assert f"{len(plan['groups']) - 50} more groups" in out
    assert "\x1b[" not in out


def test_report_csv_and_markdown_carry_every_group(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with served(sim) as endpoint:
        env = cli_env(sim, endpoint, ledger_url(tmp_path))
        as_csv = run_cli(["report", "--format", "csv"], env, monkeypatch)
        as_md = run_cli(["report", "--format", "markdown"], env, monkeypatch)
    rows = list(csv.DictReader(io.StringIO(as_csv.out)))
    assert {r["alert_id"] for r in rows if r["role"] == "duplicate"} == sim.truth.duplicate_ids
    groups = {r["group_id"] for r in rows}
    assert as_md.out.startswith("# CloudStack duplicate alert report")
    section = as_md.out.split("## Duplicate groups")[1].split("## Hosts with most failures")[0]
    table = [line for line in section.splitlines() if line.startswith("| ")]
    assert len(table) == 2 + len(groups)  # header, separator, one row per group


def test_report_family_filter_plans_only_that_family(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with served(sim) as endpoint:
        result = run_cli(["report", "--format", "json", "--family", "ha-starting-vm"],
                         cli_env(sim, endpoint, ledger_url(tmp_path)), monkeypatch)
    assert {g["family"] for g in result.json()["groups"]} == {"ha_starting_vm"}


def test_report_rejects_an_unknown_format_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_cli(["report", "--format", "yaml"], {}, monkeypatch)
    assert result.code == 2
    assert result.err == ("error: unknown format 'yaml': choose one of table, json, csv, "
                          "markdown, html\n")


def test_the_summary_counts_host_failures_and_duplicate_rounds_of_the_whole_history(
    tmp_path: Path,
) -> None:
    # Months of history: most failures lie outside the itemised 7-day window.
    sim = Simulator(profile="4.19.2", seed=7, hosts=40, vms_per_host=4)
    sim.seed_history(alerts=5000, duplicate_ratio=0.3)
    live = {r["id"] for r in sim.alerts_as_api()
            if r["description"].startswith("Host is down, ")}
    rounds = [sum(1 for i in f.alert_ids if i in live) for f in sim.truth.failures]
    failures = sum(1 for r in rounds if r)
    with served(sim) as endpoint:
        plan, _ = asyncio.run(gather_plan(context(sim, endpoint, ledger_url(tmp_path))))
    s = plan.summary
    assert failures > 500 and s.ha_incidents_listed < failures  # the window hides most
    assert (s.ha_incidents, s.ha_rounds, s.duplicate_rounds) == (
        failures, sum(rounds), sum(rounds) - failures)
    assert sum(h.failures for h in plan.hosts) == failures
    per_host = {h.host: h.failures for h in plan.hosts}
    assert per_host == dict(Counter(f.host for f, r in zip(sim.truth.failures, rounds,
                                                          strict=True) if r))


def test_report_view_hosts_shows_each_failed_host_in_every_format(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with served(sim) as endpoint:
        env = cli_env(sim, endpoint, ledger_url(tmp_path))
        plan = run_cli(["report", "--format", "json"], env, monkeypatch).json()
        views = {fmt: run_cli(["report", "--view", "hosts", "--format", fmt], env, monkeypatch)
                 for fmt in ("json", "csv", "markdown", "table")}
        bad = run_cli(["report", "--view", "vms"], env, monkeypatch)
    hosts = plan["hosts"]
    assert hosts and sum(h["failures"] for h in hosts) == plan["summary"]["ha_incidents"]
    assert views["json"].json() == hosts
    rows = list(csv.DictReader(io.StringIO(views["csv"].out)))
    assert [(r["host"], int(r["failures"]), int(r["duplicate_rounds"])) for r in rows] == [
        (h["host"], h["failures"], h["duplicate_rounds"]) for h in hosts]
    assert views["markdown"].out.count("\n| ") == 1 + len(hosts)  # separator + one row each
    assert all(h["host"] in views["table"].out for h in hosts)
    assert bad.code == 2 and "unknown view 'vms'" in bad.err


def test_on_a_busy_clouds_history_the_summary_equals_the_simulators_ha_truth(
    tmp_path: Path,
) -> None:
    # Racks failing at once, failures interleaved with other hosts' restarts, months long.
    sim = Simulator(profile="4.19.2", seed=11, hosts=200, vms_per_host=5)
    sim.seed_history(alerts=8000, failures_per_hour=2.0)
    facts = sim.truth.ha_facts()
    with served(sim) as endpoint:
        plan, _ = asyncio.run(gather_plan(context(sim, endpoint, ledger_url(tmp_path))))
    s = plan.summary
    assert facts.failures > 100 and s.ha_incidents_listed < facts.failures
    assert (s.ha_incidents, s.ha_rounds, s.duplicate_rounds) == (
        facts.failures, facts.rounds, facts.duplicate_rounds)
