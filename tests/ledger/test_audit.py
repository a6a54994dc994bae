"""Audit: ``verify`` names each broken invariant of the ledger, on every backend."""

from __future__ import annotations

from ledgerkit import make_alert, make_group, make_plan, start_archiving
from sqlalchemy import update

from sidecar.ledger import Ledger
from sidecar.ledger.schema import ACTIONS, DECISIONS


def test_verify_reports_each_broken_invariant(ledger: Ledger):
    run, token, items = start_archiving(ledger, 3)
    ledger.intend_archive(run, token, items)
    ledger.mark(token, ["d1", "d2", "d3"], "sent")
    ledger.mark(token, ["d1", "d2"], "done")
    assert [p for p in ledger.verify() if "unresolved" not in p] == []
    # An action whose group was never recorded.
    orphan_group = make_group("g-lost", "c9", ["d9"])
    ledger.intend_archive(run, token, [(orphan_group, make_alert("d9"))])
    ledger.mark(token, ["d9"], "already-gone")
    # A later decision made d2 (archived) the canonical of another group.
    ledger.record_plan(run, make_plan([make_group("g2", "d2", ["x1"])]))
    # A state outside the machine, and an action on its own group's canonical.
    with ledger.engine.begin() as conn:
        conn.execute(update(ACTIONS).where(ACTIONS.c.alert_id == "d1").values(state="lost"))
        conn.execute(update(ACTIONS).where(ACTIONS.c.alert_id == "d3").values(canonical="d3"))

    problems = ledger.verify()

    assert any("d9" in p and "no decision" in p and "g-lost" in p for p in problems)
    assert any("canonical alert d2" in p and "g2" in p for p in problems)
    assert any("d3" in p and "unresolved" in p for p in problems)
    assert any("d3" in p and "canonical of its group" in p for p in problems)
    assert any("d1" in p and "unknown state 'lost'" in p for p in problems)
    assert len(problems) == 5


def test_verify_summarises_long_lists_of_violations(sqlite_ledger: Ledger):
    ledger = sqlite_ledger
    run, token, items = start_archiving(ledger, 25)
    ledger.intend_archive(run, token, items)
    with ledger.engine.begin() as conn:
        conn.execute(DECISIONS.delete())

    problems = ledger.verify()

    no_decision = [p for p in problems if "no decision" in p]
    assert len(no_decision) == 10
    assert "... and 15 more actions without a decision" in problems
    assert "... and 15 more unresolved actions" in problems
