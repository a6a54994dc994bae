"""Write-ahead archive actions: intents, transitions and crash recovery."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from ledgerkit import (
    FakeClock,
    FakeCloud,
    apply_batch,
    make_alert,
    make_group,
    make_plan,
    resolve,
    start_archiving,
)

from sidecar.ledger import InvalidTransitionError, Ledger


def test_intents_are_written_once_with_the_full_alert_and_the_token(ledger: Ledger):
    run, token, items = start_archiving(ledger, 3)

    first = ledger.intend_archive(run, token, items)
    again = ledger.intend_archive(run, token, items)

    assert [r.alert_id for r in first] == ["d1", "d2", "d3"]
    assert [r.alert_id for r in again] == ["d1", "d2", "d3"]
    (rec, *_) = ledger.actions()
    assert len(ledger.actions()) == 3
    assert rec.key == "archive:d1"
    assert rec.state == "intended"
    assert (rec.group_id, rec.canonical, rec.token, rec.run_id) == ("g1", "c0", token, run)
    assert rec.reason == "same VM, same host, 3 s apart"
    assert rec.alert == items[0][1].api_item()
    assert rec.alert["sent"].endswith("+0530")  # as CloudStack sent it, not re-rendered


def test_the_state_machine_runs_intended_sent_done_and_skips_finished_actions(ledger: Ledger):
    run, token, items = start_archiving(ledger, 3)
    ledger.intend_archive(run, token, items)

    ledger.mark(token, ["d1", "d2", "d3"], "sent")
    ledger.mark(token, ["d1"], "done")
    ledger.mark(token, ["d2"], "already-gone")
    ledger.mark(token, ["d3"], "failed", error="530: internal error")

    states = {r.alert_id: (r.state, r.attempts, r.error) for r in ledger.actions()}
    assert states == {
        "d1": ("done", 1, ""),
        "d2": ("already-gone", 1, ""),
        "d3": ("failed", 1, "530: internal error"),
    }
    # A later run retries the failed one only; done and already-gone are never repeated.
    retry = ledger.intend_archive(run, token, items)
    assert [(r.alert_id, r.state) for r in retry] == [("d3", "intended")]
    ledger.mark(token, ["d3"], "sent")
    ledger.mark(token, ["d3"], "done")
    assert {r.alert_id: r.attempts for r in ledger.actions()} == {"d1": 1, "d2": 1, "d3": 2}
    assert ledger.unresolved_actions() == []
    assert ledger.verify() == []


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("intended", "done"),
        ("done", "sent"),
        ("done", "failed"),
        ("already-gone", "done"),
        ("failed", "done"),
    ],
)
def test_forbidden_transitions_raise_and_write_nothing(
    sqlite_ledger: Ledger, before: str, after: str
):
    ledger = sqlite_ledger
    run, token, items = start_archiving(ledger, 2)
    ledger.intend_archive(run, token, items)
    path = {
        "intended": [],
        "done": ["sent", "done"],
        "already-gone": ["already-gone"],
        "failed": ["failed"],
    }
    for state in path[before]:
        ledger.mark(token, ["d1"], state)
    snapshot = ledger.actions()

    with pytest.raises(InvalidTransitionError, match="d1"):
        ledger.mark(token, ["d1"], after)

    assert ledger.actions() == snapshot


def test_a_mark_with_one_forbidden_transition_writes_nothing_at_all(sqlite_ledger: Ledger):
    run, token, items = start_archiving(sqlite_ledger, 2)
    sqlite_ledger.intend_archive(run, token, items)
    sqlite_ledger.mark(token, ["d1"], "sent")
    sqlite_ledger.mark(token, ["d1"], "done")

    with pytest.raises(InvalidTransitionError, match="d1"):
        sqlite_ledger.mark(token, ["d2", "d1"], "sent")  # d2 alone would be fine

    assert {r.alert_id: r.state for r in sqlite_ledger.actions()} == {
        "d1": "done",
        "d2": "intended",
    }


def test_marking_unknown_alerts_or_states_is_refused(sqlite_ledger: Ledger):
    run, token, items = start_archiving(sqlite_ledger, 1)
    sqlite_ledger.intend_archive(run, token, items)

    with pytest.raises(InvalidTransitionError, match="no action recorded"):
        sqlite_ledger.mark(token, ["d1", "nope"], "sent")
    with pytest.raises(InvalidTransitionError, match="choose one of"):
        sqlite_ledger.mark(token, ["d1"], "intended")
    assert sqlite_ledger.actions()[0].state == "intended"


def test_a_repeated_terminal_mark_is_a_no_op(sqlite_ledger: Ledger, clock: FakeClock):
    run, token, items = start_archiving(sqlite_ledger, 1)
    sqlite_ledger.intend_archive(run, token, items)
    sqlite_ledger.mark(token, ["d1"], "sent")
    sqlite_ledger.mark(token, ["d1"], "done")
    before = sqlite_ledger.actions()
    clock.advance(5)

    sqlite_ledger.mark(token, ["d1"], "done")

    assert sqlite_ledger.actions() == before


def test_the_canonical_alert_is_never_intended(sqlite_ledger: Ledger):
    run, token, _ = start_archiving(sqlite_ledger, 1)
    group = make_group("g1", "c0", ["d1"])

    with pytest.raises(ValueError, match="canonical"):
        sqlite_ledger.intend_archive(
            run, token, [(group, make_alert("d1")), (group, make_alert("c0"))]
        )

    assert sqlite_ledger.actions() == []


def test_bulk_intents_and_marks_cross_chunk_boundaries(ledger: Ledger):
    run, token, items = start_archiving(ledger, 1234)

    records = ledger.intend_archive(run, token, items)
    ids = [r.alert_id for r in records]
    ledger.mark(token, ids, "sent")
    ledger.mark(token, ids[:1000], "done")

    assert len(records) == 1234
    assert len(ledger.actions(states=["done"])) == 1000
    assert {r.alert_id for r in ledger.unresolved_actions()} == set(ids[1000:])
    assert len(ledger.intend_archive(run, token, items)) == 234


def test_a_run_that_dies_at_any_step_leaves_intents_the_next_run_resolves_exactly_once(
    open_ledger: Callable[..., Ledger], clock: FakeClock
):
    first = open_ledger("sidecar-a")
    run = first.start_run("cleanup", "apply")
    # One group per step at which the first run dies.
    steps = {
        "intended": ["i1", "i2"],  # decided, never sent
        "sent": ["s1", "s2"],  # sent, the POST never left
        "archived": ["a1", "a2"],  # the POST landed, its outcome was never recorded
        "half": ["h1", "h2", "h3", "h4"],  # a 530 mid-batch: only part of it landed
    }
    groups = {step: make_group(f"g-{step}", f"c-{step}", ids) for step, ids in steps.items()}
    items = [(groups[s], make_alert(i)) for s, ids in steps.items() for i in ids]
    all_ids = [i for ids in steps.values() for i in ids]
    cloud = FakeCloud([*all_ids, *(g.canonical for g in groups.values())])
    first.record_plan(run, make_plan(list(groups.values())))
    token = first.acquire_lease(120)
    assert token is not None
    first.intend_archive(run, token, items)
    first.mark(token, [i for s in ("sent", "archived", "half") for i in steps[s]], "sent")
    cloud.archive(steps["archived"] + steps["half"][:2])
    first.close()  # the process is gone: no release, no finish_run

    second = open_ledger("sidecar-b")
    unresolved = {r.alert_id: r.state for r in second.unresolved_actions()}
    assert unresolved == {i: ("intended" if i[0] == "i" else "sent") for i in all_ids}
    assert second.acquire_lease(120) is None  # the dead leader's lease has not expired yet
    clock.advance(121)
    token2 = second.acquire_lease(120)
    assert token2 == token + 1
    run2 = second.start_run("cleanup", "apply")
    resolve(second, token2, cloud)
    apply_batch(second, run2, token2, cloud, [it for it in items if cloud.is_live(it[1].id)])

    assert cloud.archived == dict.fromkeys(all_ids, 1)  # nothing repeated, nothing forgotten
    assert {g.canonical for g in groups.values()} <= cloud.live
    assert {r.state for r in second.actions()} == {"done"}
    assert second.unresolved_actions() == []
    assert second.verify() == []


def test_an_intent_for_an_alert_someone_else_archived_resolves_as_already_gone(
    sqlite_ledger: Ledger,
):
    run, token, items = start_archiving(sqlite_ledger, 2)
    cloud = FakeCloud(["c0", "d1", "d2"])
    sqlite_ledger.intend_archive(run, token, items)
    cloud.archive(["d1"])  # an operator archived it in the UI meanwhile

    resolve(sqlite_ledger, token, cloud)
    apply_batch(sqlite_ledger, run, token, cloud, items)

    assert {r.alert_id: r.state for r in sqlite_ledger.actions()} == {
        "d1": "already-gone",
        "d2": "done",
    }


def test_failed_actions_are_retried_with_the_current_group(sqlite_ledger: Ledger, clock: FakeClock):
    run, token, items = start_archiving(sqlite_ledger, 1)
    sqlite_ledger.intend_archive(run, token, items)
    sqlite_ledger.mark(token, ["d1"], "sent")
    sqlite_ledger.mark(token, ["d1"], "failed", error="503")
    clock.advance(timedelta(minutes=1).total_seconds())
    regrouped = make_group("g7", "c0", ["d1"])
    sqlite_ledger.record_plan(run, make_plan([regrouped]))

    (record,) = sqlite_ledger.intend_archive(run, token, [(regrouped, make_alert("d1"))])

    assert (record.state, record.group_id) == ("intended", "g7")
    assert sqlite_ledger.actions()[0].group_id == "g7"
    assert sqlite_ledger.unresolved_actions()[0].alert_id == "d1"


def test_intents_record_their_merge_group_as_record_plan_would(ledger: Ledger):
    run = ledger.start_run("cleanup", "apply")
    token = ledger.acquire_lease(120)
    assert token is not None
    planned = make_group("g-plan", "c0", ["d1", "d2", "d3"])
    ledger.record_plan(run, make_plan([planned]))
    group = make_group("g-intent", "c9", ["e1", "e2", "e3"])
    items = [(group, make_alert(d)) for d in group.duplicates]

    prepared = ledger.prepare_intents(run, token, items[:2], record_groups=True)
    assert [d.decision_id for d in ledger.decisions()] == ["g-plan"]  # preparing writes nothing
    assert ledger.write_intents(prepared) == ["e1", "e2"]
    # The rest of the group in a later batch: the decision is merged, not duplicated.
    assert ledger.write_intents(ledger.prepare_intents(run, token, items[2:],
                                                       record_groups=True)) == ["e3"]

    by_id = {d.decision_id: d for d in ledger.decisions()}
    via_plan, via_intents = by_id["g-plan"], by_id["g-intent"]
    assert via_intents.members == ("e1", "e2", "e3")
    assert via_intents.data == group.to_json()
    assert via_plan.data == planned.to_json()
    for field in ("kind", "subject", "fingerprint", "reason", "run_id", "first_run_id"):
        assert getattr(via_intents, field) == getattr(via_plan, field), field
    copies = {a.alert_id: a.alert for a in ledger.actions()}
    assert copies == {d: make_alert(d).api_item() for d in group.duplicates}
    ledger.mark(token, group.duplicates, "sent")
    ledger.mark(token, group.duplicates, "done")
    assert ledger.verify() == []
