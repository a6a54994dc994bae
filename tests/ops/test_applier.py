"""The Applier: write-ahead archiving in batches, and every way a batch can go wrong."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from wiringkit import context, ledger_url, served, sim_with_history

from cloudstack_simulator import Simulator
from sidecar.cloudstack.client import CloudStackClient
from sidecar.cloudstack.listing import list_alerts_by_name, server_now
from sidecar.ledger import Ledger, claim_lease
from sidecar.model.plan import Plan, Snapshot
from sidecar.model.resources import Alert
from sidecar.ops.applier import Applier, ApplyOutcome, ids_named_in
from sidecar.reconcile import build_plan


@pytest.fixture
def sim() -> Simulator:
    return sim_with_history(600)


Work = Callable[[CloudStackClient, Ledger, Applier, Plan, dict[str, Alert]], Awaitable[Any]]


def with_applier(sim: Simulator, url: str, work: Work, *, batch_size: int = 50,
                 **kwargs: Any) -> Any:
    """Plan from a fresh listing, then ``work(cs, ledger, applier, plan, alerts)``."""

    async def main(endpoint: str) -> Any:
        ctx = context(sim, endpoint, url)
        with Ledger(url, holder="test-sidecar:1") as ledger:
            async with ctx.client() as cs:
                listing = await list_alerts_by_name(cs)
                plan = build_plan(Snapshot(taken_at=server_now(cs), alerts=listing.alerts))
                token = claim_lease(ledger, 300)
                assert token is not None
                run_id = ledger.start_run("test", "apply")
                ledger.record_plan(run_id, plan)
                applier = Applier(cs, ledger, run_id=run_id, token=token,
                                  batch_size=batch_size, **kwargs)
                return await work(cs, ledger, applier, plan, {a.id: a for a in listing.alerts})

    with served(sim) as endpoint:
        return asyncio.run(main(endpoint))


def states(url: str) -> dict[str, str]:
    with Ledger(url, holder="auditor", migrate=False, create=False) as ledger:
        return {a.alert_id: a.state for a in ledger.actions()}


async def apply_all(cs: Any, ledger: Ledger, applier: Applier, plan: Plan,
                    alerts: dict[str, Alert]) -> ApplyOutcome:
    return await applier.apply(plan, alerts)


def test_a_plan_is_archived_in_batches_each_written_ahead_and_marked_done(
    sim: Simulator, tmp_path: Path
) -> None:
    url = ledger_url(tmp_path)
    outcome = with_applier(sim, url, apply_all, batch_size=40)
    truth = sim.truth.duplicate_ids
    assert set(outcome.archived) == truth
    assert outcome.api_calls == math.ceil(len(truth) / 40)
    assert set(states(url).values()) == {"done"} and set(states(url)) == truth
    assert set(sim.stats.archive_count.values()) == {1}


def test_a_530_batch_is_bisected_to_the_alert_someone_else_archived(
    sim: Simulator, tmp_path: Path
) -> None:
    url = ledger_url(tmp_path)
    other = sim.faults.add("archived_by_other", times=1, k=1)
    outcome = with_applier(sim, url, apply_all, batch_size=64)
    [gone] = other.affected
    assert outcome.already_gone == [gone]
    assert set(outcome.archived) == sim.truth.duplicate_ids - {gone}
    assert states(url)[gone] == "already-gone"
    batches = math.ceil(len(sim.truth.duplicate_ids) / 64)
    # The voided batch costs one call per halving level (two halves each), not one per id.
    assert outcome.api_calls <= batches + 2 * math.ceil(math.log2(64))
    assert set(sim.stats.archive_count.values()) == {1}


def test_a_431_naming_a_deleted_alert_records_it_gone_and_archives_the_rest(
    sim: Simulator, tmp_path: Path
) -> None:
    url = ledger_url(tmp_path)
    deleted = sim.faults.add("delete_alerts", times=1, k=1)
    outcome = with_applier(sim, url, apply_all, batch_size=1000)
    [gone] = deleted.affected
    assert outcome.already_gone == [gone]
    assert outcome.api_calls == 2  # the 431, then the batch without the deleted id
    assert set(outcome.archived) == sim.truth.duplicate_ids - {gone}
    assert states(url)[gone] == "already-gone"


@pytest.mark.parametrize("kind", ["reset", "truncated"])
def test_an_unanswered_or_cut_batch_stays_sent_and_is_settled_done_from_the_next_listing(
    sim: Simulator, tmp_path: Path, kind: str
) -> None:
    url = ledger_url(tmp_path)
    # The server archives the batch, then resets the connection (the answer never comes), or
    # the answer is cut short on its way: the outcome is unknown either way.
    options = {"after": True} if kind == "reset" else {}
    sim.faults.add(kind, command="archiveAlerts", times=1, **options)

    async def work(cs: Any, ledger: Ledger, applier: Applier, plan: Plan,
                   alerts: dict[str, Alert]) -> Any:
        first = await applier.apply(plan, alerts)
        calls = sim.stats.calls["archiveAlerts"]
        listing = await list_alerts_by_name(cs)
        assert listing.consistent
        resolved = await applier.resolve(plan, listing.ids)
        return first, calls, resolved

    first, calls, resolved = with_applier(sim, url, work, batch_size=30)
    assert first.error and len(first.unsettled) == 30
    if kind == "reset":
        assert not first.archived  # no answer at all: stopped at the first batch
    else:
        # The server answered, the answer broke on its way: the next batches went on.
        assert "cut short" in first.error
        assert set(first.archived) == sim.truth.duplicate_ids - set(first.unsettled)
    assert sorted(resolved.done) == sorted(first.unsettled)
    assert sim.stats.calls["archiveAlerts"] == calls  # settled without sending again
    assert {states(url)[a] for a in first.unsettled} == {"done"}


def test_intents_left_by_a_dead_run_are_settled_by_asking_cloudstack(
    sim: Simulator, tmp_path: Path
) -> None:
    url = ledger_url(tmp_path)

    async def work(cs: Any, ledger: Ledger, applier: Applier, plan: Plan,
                   alerts: dict[str, Alert]) -> Any:
        groups = plan.group_of()
        a, b, c, d = plan.archive[:4]
        ledger.intend_archive(applier.run_id, applier.token,
                              [(groups[i], alerts[i]) for i in (a, b, c, d)])
        ledger.mark(applier.token, [d], "sent")
        sim.archive_out_of_band([a])  # another admin archived a meanwhile
        sim.archive_out_of_band([d])  # our POST of d landed before the run died
        # A fresh plan lists neither a nor d; b is still a duplicate; c is live but no
        # longer planned.
        fresh = Plan(plan.generated_at, plan.groups,
                     tuple(x for x in plan.archive if x not in (a, c, d)),
                     plan.ha_incidents, plan.summary)
        sim.stats.reset()
        return (a, b, c, d), await applier.resolve(fresh)

    (a, b, c, d), resolved = with_applier(sim, url, work)
    assert resolved.already_gone == [a]
    assert resolved.done == [d]
    assert resolved.still_pending == [b]
    assert resolved.superseded == [c]
    assert states(url) == {a: "already-gone", b: "intended", c: "failed", d: "done"}
    # b was never sent and is planned again: the apply pass sends it without asking first.
    assert sim.stats.calls["listAlerts"] == 3


def test_the_applier_stops_between_batches_when_asked_or_when_the_lease_is_lost(
    sim: Simulator, tmp_path: Path
) -> None:
    stop_after = {"n": 0}

    def should_stop() -> bool:
        stop_after["n"] += 1
        return stop_after["n"] > 2

    stopped = with_applier(sim, ledger_url(tmp_path, "a.sqlite3"), apply_all, batch_size=20,
                           should_stop=should_stop)
    assert stopped.stopped and len(stopped.archived) == 40

    renewals = iter([1, 1, None])
    lost = with_applier(sim_with_history(600), ledger_url(tmp_path, "b.sqlite3"), apply_all,
                        batch_size=20, renew_lease=lambda: next(renewals))
    assert lost.lost_lease and len(lost.archived) == 40


def test_ids_named_in_an_error_text_are_found_exactly() -> None:
    text = ("Invalid parameter ids value=7c0ffee0-0000-4000-8000-000000000002 due to incorrect "
            "long value format, or entity does not exist")
    ids = ["7c0ffee0-0000-4000-8000-000000000001", "7c0ffee0-0000-4000-8000-000000000002"]
    assert ids_named_in(text, ids) == [ids[1]]
    assert ids_named_in("Unable to archive Alerts", ids) == []


def test_every_ledger_call_of_a_pass_comes_from_one_thread(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite drops a connection's page cache whenever another connection has written: one
    # thread (and so one pooled connection) keeps it warm. Row building may run elsewhere.
    callers: dict[str, set[int]] = {}
    for name in ("mark", "write_intents", "acquire_lease", "prepare_intents"):
        original = getattr(Ledger, name)

        def spy(self: Ledger, *args: Any, _name: str = name, _original: Any = original,
                **kwargs: Any) -> Any:
            callers.setdefault(_name, set()).add(threading.get_ident())
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Ledger, name, spy)

    outcome = with_applier(sim, ledger_url(tmp_path), apply_all, batch_size=10,
                           renew_lease=None)
    assert outcome.archived and outcome.api_calls > 2
    writers = callers["mark"] | callers["write_intents"]
    assert len(writers) == 1
    assert threading.get_ident() not in writers  # never the event loop's thread
    assert callers["prepare_intents"].isdisjoint(writers)
