"""Host transitions, alert sightings and their retention, on every backend."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from ledgerkit import T0, make_alert, make_group, make_host, make_plan

from sidecar.ledger import Ledger


def test_naive_datetimes_are_refused_before_anything_is_written(sqlite_ledger: Ledger):
    with pytest.raises(ValueError, match="timezone-aware"):
        sqlite_ledger.observe_hosts([make_host("h1", "Up")], datetime(2026, 3, 1, 12, 0))

    assert sqlite_ledger.host_history() == []


def test_host_observations_record_only_state_changes(ledger: Ledger):
    t = [T0 + timedelta(minutes=i) for i in range(6)]
    first = ledger.observe_hosts([make_host("h1", "Up"), make_host("h2", "Up")], t[0])
    again = ledger.observe_hosts([make_host("h1", "Up"), make_host("h2", "Up")], t[1])
    flip = ledger.observe_hosts([make_host("h1", "Disconnected"), make_host("h2", "Up")], t[2])
    down = ledger.observe_hosts([make_host("h1", "Down", "Fencing")], t[3])
    fenced = ledger.observe_hosts([make_host("h1", "Down", "Fenced")], t[4])
    up = ledger.observe_hosts([make_host("h1", "Up")], t[5])

    assert [c.host_id for c in first] == ["h1", "h2"]  # the first sighting is a transition
    assert again == []
    assert [(c.state, c.hastate) for c in flip] == [("Disconnected", "Available")]
    assert [(c.state, c.hastate) for c in down + fenced + up] == [
        ("Down", "Fencing"),
        ("Down", "Fenced"),
        ("Up", "Available"),
    ]
    history = ledger.host_history()
    assert [(c.host_id, c.state, c.at) for c in history] == [
        ("h1", "Up", t[0]),
        ("h2", "Up", t[0]),
        ("h1", "Disconnected", t[2]),
        ("h1", "Down", t[3]),
        ("h1", "Down", t[4]),
        ("h1", "Up", t[5]),
    ]
    assert [c.state for c in ledger.host_history(since=t[3])] == ["Down", "Down", "Up"]
    rows = ledger.host_transitions(limit=1)
    assert (rows[0]["previous_state"], rows[0]["state"]) == ("Down", "Up")


def test_two_sidecars_observing_the_same_hosts_record_each_transition_once(open_ledger):
    a = open_ledger("sidecar-a")
    b = open_ledger("sidecar-b")

    assert len(a.observe_hosts([make_host("h1", "Up")], T0)) == 1
    assert b.observe_hosts([make_host("h1", "Up")], T0 + timedelta(seconds=1)) == []
    assert len(b.observe_hosts([make_host("h1", "Down")], T0 + timedelta(seconds=2))) == 1
    assert a.observe_hosts([make_host("h1", "Down")], T0 + timedelta(seconds=3)) == []

    assert [c.state for c in a.host_history()] == ["Up", "Down"]


def test_alerts_are_recorded_the_first_time_they_are_seen(ledger: Ledger):
    alerts = [make_alert(f"a{i:04d}", sent=T0 + timedelta(seconds=i)) for i in range(1200)]

    assert ledger.observe_alerts(alerts[:700], {"a0001": "fp-1"}, T0) == 700
    assert ledger.observe_alerts(alerts, {}, T0 + timedelta(minutes=1)) == 500
    assert ledger.observe_alerts(alerts, {}, T0 + timedelta(minutes=2)) == 0

    assert ledger.seen_alert_ids(["a0001", "a1199", "zzz"]) == {"a0001", "a1199"}
    newest = T0.replace(microsecond=0) + timedelta(seconds=1199)
    assert ledger.newest_seen_alert() == ("a1199", newest)
    first = {s.alert_id: s for s in ledger.alert_sightings()}
    assert first["a0001"].fingerprint == "fp-1"
    assert first["a0001"].first_seen == T0
    assert first["a0900"].first_seen == T0 + timedelta(minutes=1)
    assert first["a0001"].name == "ALERT.USERVM"
    assert first["a0001"].subject == "HA starting VM i-2-10-VM"


def test_newest_seen_alert_is_none_for_an_empty_ledger(sqlite_ledger: Ledger):
    assert sqlite_ledger.newest_seen_alert() is None
    assert sqlite_ledger.seen_alert_ids(["a1"]) == set()


def test_pruning_drops_old_observations_and_keeps_actions_and_decisions(ledger: Ledger):
    old, new = T0 - timedelta(days=100), T0
    ledger.observe_hosts([make_host("h1", "Up")], old)
    ledger.observe_hosts([make_host("h1", "Down")], new)
    ledger.observe_alerts([make_alert("a-old")], {}, old)
    ledger.observe_alerts([make_alert("a-new")], {}, new)
    run = ledger.start_run("cleanup", "apply")
    group = make_group("g1", "c1", ["d1"])
    ledger.record_plan(run, make_plan([group]))
    token = ledger.acquire_lease(60)
    assert token is not None
    ledger.intend_archive(run, token, [(group, make_alert("d1"))])

    assert ledger.prune_observations(T0 - timedelta(days=90)) == 2

    assert [c.state for c in ledger.host_history()] == ["Down"]
    assert ledger.seen_alert_ids(["a-old", "a-new"]) == {"a-new"}
    assert len(ledger.actions()) == 1
    assert len(ledger.decisions()) == 1
    # The last known state survives pruning: Down again is no transition.
    assert ledger.observe_hosts([make_host("h1", "Down")], new + timedelta(minutes=1)) == []
