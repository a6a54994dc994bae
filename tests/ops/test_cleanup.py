"""``cleanup``: archives exactly the injected duplicates, once, resumably, in bounded passes."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from wiringkit import (
    cli_env,
    ledger_url,
    run_cli,
    served,
    sim_with_history,
    spawn_cli,
)

from cloudstack_simulator import Simulator
from sidecar.cli.options import parse_families, parse_when
from sidecar.ledger import Ledger
from sidecar.model.plan import MergeGroup, Plan, Summary
from sidecar.model.resources import parse_cs_date
from sidecar.ops.cleanup import restrict
from sidecar.support.errors import UserError

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def archived_by_us(sim: Simulator) -> Counter[str]:
    """Archive UPDATEs per alert made through the API by the sidecar (not by "other admins")."""
    stats = sim.stats
    return Counter(
        {u: n for u, n in stats.archive_count.items() if u not in stats.archived_out_of_band}
    )


def action_states(url: str) -> dict[str, str]:
    with Ledger(url, holder="auditor", migrate=False, create=False) as ledger:
        return {a.alert_id: a.state for a in ledger.actions()}


def when(text: str) -> datetime:
    parsed = parse_cs_date(text)
    assert parsed is not None
    return parsed


def archive_requests(sim: Simulator) -> list[dict[str, str]]:
    return [r.params for r in sim.stats.requests if r.command == "archiveAlerts"]


# -- the acceptance run on a 100,000-alert history ---------------------------------------------


def _hold_nth_archive_answer(
    monkeypatch: pytest.MonkeyPatch, n: int
) -> tuple[threading.Event, threading.Event]:
    """Hold the answer of the n-th archiveAlerts call after the server has archived its ids.

    ``reached`` is set then; the test kills the client, then sets ``release``.
    """
    import cloudstack_simulator.server as server

    real = server.dispatch
    reached, release = threading.Event(), threading.Event()
    lock = threading.Lock()
    seen = 0

    def dispatch(sim: Simulator, call: Any) -> Any:
        nonlocal seen
        payload = real(sim, call)
        if call.command == "archiveAlerts":
            with lock:
                seen += 1
                hit = seen == n
            if hit:
                reached.set()
                release.wait(60)
        return payload

    monkeypatch.setattr(server, "dispatch", dispatch)
    return reached, release


@pytest.mark.slow
def test_report_and_a_killed_then_rerun_cleanup_archive_exactly_the_injected_duplicates_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = sim_with_history(100_000)
    truth = sim.truth.duplicate_ids
    assert len(truth) > 20_000
    url = ledger_url(tmp_path)
    batch = 2000
    reached, release = _hold_nth_archive_answer(monkeypatch, 4)
    with served(sim) as endpoint:
        env = cli_env(sim, endpoint, url, archive_batch_size=batch)

        report = run_cli(["report", "--format", "json"], env, monkeypatch)
        assert report.code == 3, report.err
        plan = report.json()
        assert set(plan["archive"]) == truth
        assert sorted(d for g in plan["groups"] for d in g["duplicates"]) == plan["archive"]
        assert sim.stats.calls["archiveAlerts"] == 0  # the report changed nothing

        # kill -9 while the 4th batch is archived on the server but not yet acknowledged.
        proc = spawn_cli(["cleanup", "--apply", "--no-limit"], env)
        try:
            assert reached.wait(120), "the cleanup never sent its 4th archive batch"
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        finally:
            release.set()
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == -signal.SIGKILL
        assert len(archived_by_us(sim)) == 4 * batch
        states = Counter(action_states(url).values())
        assert (states["done"], states["sent"]) == (3 * batch, batch)

        rerun = run_cli(["cleanup", "--apply", "--no-limit", "--format", "json"], env,
                        monkeypatch)
        assert rerun.code == 0, rerun.err
        totals = rerun.json()["totals"]
        assert totals["resolved"] == batch  # the unacknowledged batch, settled by the listing
        assert totals["archived"] == len(truth) - 4 * batch
        archived = archived_by_us(sim)
        assert set(archived) == truth
        assert set(archived.values()) == {1}

        calls = sim.stats.calls["archiveAlerts"]
        again = run_cli(["cleanup", "--apply", "--no-limit", "--format", "json"], env,
                        monkeypatch)
        assert again.code == 0, again.err
        assert again.json()["totals"]["archived"] == 0
        assert sim.stats.calls["archiveAlerts"] == calls

    assert not truth & {a["id"] for a in sim.alerts_as_api()}
    assert set(action_states(url).values()) == {"done"}
    assert all(set(p) >= {"ids"} and not {"type", "startdate", "enddate"} & set(p)
               for p in archive_requests(sim))
    verify = run_cli(["ledger", "verify"], {"SIDECAR_LEDGER_URL": url}, monkeypatch)
    assert verify.code == 0, verify.out + verify.err


# -- the same on small histories: every path of the command ------------------------------------


@pytest.fixture
def small() -> Simulator:
    """1,500 alerts of history plus a crashed host (about 400 duplicates)."""
    return sim_with_history(1500)


def test_cleanup_without_apply_is_a_dry_run_that_shows_the_plan_and_a_summary(
    small: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with served(small) as endpoint:
        result = run_cli(["cleanup"], cli_env(small, endpoint, ledger_url(tmp_path)),
                         monkeypatch)
    assert result.code == 0, result.err
    assert "Largest duplicate groups" in result.out
    assert "Cleanup summary (dry run)" in result.out
    assert f"duplicates found {len(small.truth.duplicate_ids)}" in " ".join(
        result.out.replace("│", " ").split()
    )
    assert small.stats.calls["archiveAlerts"] == 0
    assert "\x1b[" not in result.out + result.err  # no colours without a terminal
    assert "listing alert pages:" in result.err  # plain progress lines, not bars


def test_cleanup_apply_archives_the_duplicates_in_posted_id_batches_and_a_rerun_does_nothing(
    small: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = ledger_url(tmp_path)
    truth = small.truth.duplicate_ids
    with served(small) as endpoint:
        env = cli_env(small, endpoint, url, archive_batch_size=150)
        first = run_cli(["cleanup", "--apply"], env, monkeypatch)
        assert first.code == 0, first.err
        calls = small.stats.calls["archiveAlerts"]
        second = run_cli(["cleanup", "--apply", "--format", "json"], env, monkeypatch)
        assert second.code == 0, second.err
        assert small.stats.calls["archiveAlerts"] == calls
    assert "Cleanup summary" in first.out
    assert set(archived_by_us(small)) == truth
    assert set(archived_by_us(small).values()) == {1}
    requests = archive_requests(small)
    assert len(requests) == -(-len(truth) // 150)
    assert all(r["ids"].count(",") < 150 for r in requests)
    assert {r.method for r in small.stats.requests if r.command == "archiveAlerts"} == {"POST"}
    assert not any({"type", "startdate", "enddate"} & set(r) for r in requests)
    assert second.json()["totals"]["archived"] == 0
    assert second.json()["complete"] is True


def test_max_actions_caps_a_run_and_the_next_run_finishes_the_work(
    small: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = ledger_url(tmp_path)
    truth = small.truth.duplicate_ids
    with served(small) as endpoint:
        env = cli_env(small, endpoint, url)
        capped = run_cli(["cleanup", "--apply", "--max-actions", "25", "--format", "json"], env,
                         monkeypatch)
        assert capped.code == 0, capped.err
        assert capped.json()["totals"]["archived"] == 25
        assert capped.json()["totals"]["capped"] == len(truth) - 25
        assert len(archived_by_us(small)) == 25
        rest = run_cli(["cleanup", "--apply", "--no-limit", "--format", "json"], env, monkeypatch)
        assert rest.code == 0, rest.err
    assert rest.json()["totals"]["archived"] == len(truth) - 25
    assert set(archived_by_us(small)) == truth


def test_family_limits_the_cleanup_to_that_family(
    small: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with served(small) as endpoint:
        env = cli_env(small, endpoint, ledger_url(tmp_path))
        report = run_cli(["report", "--format", "json"], env, monkeypatch)
        wanted = {d for g in report.json()["groups"] if g["family"] == "host_is_down"
                  for d in g["duplicates"]}
        result = run_cli(["cleanup", "--apply", "--family", "host-is-down"], env, monkeypatch)
    assert result.code == 0, result.err
    assert wanted and set(archived_by_us(small)) == wanted


def test_since_and_until_archive_only_duplicates_sent_inside_the_window(
    small: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = {a["id"]: a["sent"] for a in small.alerts_as_api()}
    with served(small) as endpoint:
        env = cli_env(small, endpoint, ledger_url(tmp_path))
        plan = run_cli(["report", "--format", "json"], env, monkeypatch).json()
        times = sorted(when(sent[d]) for d in plan["archive"])
        since, until = times[len(times) // 4], times[len(times) // 2]
        result = run_cli(["cleanup", "--apply", "--since", since.isoformat(),
                          "--until", until.isoformat()], env, monkeypatch)
    assert result.code == 0, result.err
    archived = set(archived_by_us(small))
    expected = {d for d in plan["archive"] if since <= when(sent[d]) <= until}
    assert archived == expected
    canonicals = {g["canonical"] for g in plan["groups"]}
    assert not archived & canonicals


def test_ids_archived_or_deleted_by_others_meanwhile_are_recorded_already_gone(
    small: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = ledger_url(tmp_path)
    # Before each of the first batches another admin archives one id (530 for the batch) or
    # deletes one (431 naming it).
    other = small.faults.add("archived_by_other", times=2, k=1)
    deleted = small.faults.add("delete_alerts", times=2, k=1)
    with served(small) as endpoint:
        result = run_cli(["cleanup", "--apply", "--format", "json"],
                         cli_env(small, endpoint, url, archive_batch_size=100), monkeypatch)
    assert result.code == 0, result.err
    gone = set(other.affected) | set(deleted.affected)
    assert len(gone) == 4
    states = action_states(url)
    assert {states[g] for g in gone} == {"already-gone"}
    totals = result.json()["totals"]
    assert totals["already_gone"] == 4
    truth = small.truth.duplicate_ids
    assert set(archived_by_us(small)) == truth - gone
    assert set(archived_by_us(small).values()) == {1}
    assert {s for a, s in states.items() if a not in gone} == {"done"}


def test_alerts_arriving_while_paging_lead_to_another_pass_that_converges(
    small: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # New HA alerts (copies of a fresh failure) land while the first listing pages.
    small.faults.add("insert_alerts", times=1, n=3, min_page=2, name="ALERT.COMPUTE.HOST",
                     subject="Host down, 42")
    with served(small) as endpoint:
        result = run_cli(["cleanup", "--apply", "--format", "json"],
                         cli_env(small, endpoint, ledger_url(tmp_path)), monkeypatch)
    assert result.code == 0, result.err
    assert result.json()["totals"]["passes"] >= 2
    live = {a["id"] for a in small.alerts_as_api()}
    assert not small.truth.duplicate_ids & live
    host_42 = [a for a in small.alerts_as_api() if a["description"] == "Host down, 42"]
    assert len(host_42) == 1  # the two later copies were archived in the second pass


def test_cleanup_refuses_to_act_while_another_live_sidecar_holds_the_lease(
    small: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = ledger_url(tmp_path)
    with Ledger(url, holder="ms2.example:4242") as other:
        assert other.acquire_lease(600) is not None
    with served(small) as endpoint:
        result = run_cli(["cleanup", "--apply"], cli_env(small, endpoint, url), monkeypatch)
    assert result.code == 2
    assert result.err.startswith("error: another sidecar holds the ledger lease")
    assert len(result.err.strip().splitlines()) == 1
    assert small.stats.calls["archiveAlerts"] == 0


def test_restrict_keeps_only_duplicates_sent_inside_the_window_never_the_canonical() -> None:
    group = MergeGroup(
        group_id="g1", family="host_is_down", object="host=kvm-01", fingerprint="f",
        alert_name="ALERT.COMPUTE.HOST", canonical="c", duplicates=("d1", "d2", "d3"),
        first_sent=T0, last_sent=T0 + timedelta(minutes=3), reason="r",
    )
    outside = dataclass_copy(group, group_id="g2", canonical="c2", duplicates=("e1",))
    plan = Plan(T0, (group, outside), ("d1", "d2", "d3", "e1"), (),
                Summary(groups=2, duplicates=4))
    sent = {"c": T0, "d1": T0 + timedelta(minutes=1), "d2": T0 + timedelta(minutes=2),
            "d3": T0 + timedelta(minutes=3), "e1": T0 - timedelta(days=1), "c2": T0}
    # The window starts after the canonical: its group keeps only d2 (d1 is before, d3 after).
    kept = restrict(plan, since=T0 + timedelta(seconds=90), until=T0 + timedelta(seconds=150),
                    sent=sent)
    assert kept.archive == ("d2",)
    assert [(g.group_id, g.canonical, g.duplicates) for g in kept.groups] == [("g1", "c", ("d2",))]
    assert (kept.summary.groups, kept.summary.duplicates) == (1, 1)
    assert restrict(plan, since=None, until=None, sent=sent) is plan
    assert restrict(plan, since=T0 + timedelta(days=1), until=None, sent=sent).archive == ()


def dataclass_copy(group: MergeGroup, **changes: Any) -> MergeGroup:
    import dataclasses

    return dataclasses.replace(group, **changes)


def test_families_are_accepted_with_dashes_or_underscores_and_unknown_ones_named() -> None:
    assert parse_families(["host-is-down", "ha_starting_vm,host-down"]) == frozenset(
        {"host_is_down", "ha_starting_vm", "host_down"}
    )
    assert parse_families([]) is None
    with pytest.raises(UserError, match=r"unknown family bogus: choose from .*host-is-down"):
        parse_families(["bogus"])


def test_dates_need_a_time_zone() -> None:
    assert parse_when("2025-01-31T00:00:00+00:00", "--since") == datetime(2025, 1, 31, tzinfo=UTC)
    assert parse_when("2025-01-31T05:30:00+0530", "--since") == datetime(2025, 1, 31, tzinfo=UTC)
    with pytest.raises(UserError, match="--until '2025-01-31' is not a date and time with a"):
        parse_when("2025-01-31", "--until")


def test_bad_flags_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"SIDECAR_LEDGER_URL": ledger_url(tmp_path)}
    for args, text in (
        (["cleanup", "--max-actions", "0"], "error: --max-actions must be at least 1"),
        (["cleanup", "--format", "xml"], "error: unknown format 'xml'"),
        (["cleanup", "--since", "2025-02-01T00:00:00Z", "--until", "2025-01-01T00:00:00Z"],
         "error: --since is after --until"),
    ):
        result = run_cli(args, env, monkeypatch)
        assert result.code == 2
        assert result.err.startswith(text) and result.err.count("\n") == 1
