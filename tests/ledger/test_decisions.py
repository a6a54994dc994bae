"""Decisions: merge groups and HA incidents upserted across runs, on every backend."""

from __future__ import annotations

from ledgerkit import make_group, make_incident, make_plan

from sidecar.ledger import HA, MERGE, Ledger


def test_decisions_are_upserted_and_keep_members_that_were_archived(ledger: Ledger):
    run1 = ledger.start_run("service", "apply")
    group = make_group("g1", "c1", ["d1", "d2"])
    ledger.record_plan(run1, make_plan([group], [make_incident("i1", ["c1", "d1", "d2"])]))
    run2 = ledger.start_run("service", "apply")
    # Next cycle: d1 and d2 were archived, so CloudStack lists only the canonical and d3.
    later = make_group("g1", "c1", ["d3"])
    ledger.record_plan(run2, make_plan([later], [make_incident("i1", ["c1", "d3"], rounds=3)]))

    (merge,) = ledger.decisions(kind=MERGE)
    assert merge.decision_id == "g1"
    assert merge.members == ("d1", "d2", "d3")
    assert merge.canonical == "c1"
    assert (merge.first_run_id, merge.run_id) == (run1, run2)
    assert merge.data["count"] == 4
    assert merge.data["duplicates"] == ["d1", "d2", "d3"]
    (incident,) = ledger.decisions(kind=HA)
    assert incident.members == ("c1", "d1", "d2", "d3")
    assert incident.data["rounds"] == 3
    assert incident.data["vms"][0]["vm"] == "vm-a"
    assert len(ledger.decisions()) == 2
